"""A received message as handlers see it, whatever the transport, and how to copy one.

Handlers get a `Delivery`: the body as sent, its headers and the ids it was published
with. The transport's own message object stays inside the runtime, which alone
acknowledges, parks or re-publishes it (`runtime.messaging.consumer`).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from runtime.messaging.publisher import Outgoing

REFUSED_REASON_HEADER = "x-lianban-refused-reason"
SOURCE_QUEUE_HEADER = "x-lianban-source-queue"
REFUSED_AT_HEADER = "x-lianban-refused-at"
REPLAYED_HEADER = "x-lianban-replayed"  # how often an operator sent it back from a parking lot

# Set by RabbitMQ on redelivery and dead-lettering; a copy published afresh drops them.
BROKER_HEADERS = ("x-delivery-count", "x-death", "x-first-death-", "x-last-death-")


@dataclass(frozen=True)
class Delivery:
    """One received message. `transport_message` is the runtime's own handle on it."""

    body: bytes
    headers: Mapping[str, Any]
    message_id: str
    correlation_id: str
    routing_key: str = ""
    transport_message: Any = field(default=None, repr=False, compare=False)

    @classmethod
    def of(cls, message: Any) -> Delivery:
        """A kombu message as a Delivery. py-amqp hands over a `str` body when the message
        names an encoding: the bytes as sent are what signatures cover."""
        body = message.body
        properties = message.properties
        return cls(
            body=body.encode() if isinstance(body, str) else bytes(body),
            headers=dict(message.headers or {}),
            message_id=str(properties.get("message_id", "")),
            correlation_id=str(properties.get("correlation_id", "")),
            routing_key=str((message.delivery_info or {}).get("routing_key", "")),
            transport_message=message,
        )

    @property
    def attempt(self) -> int:
        """1 for the first delivery of this message, more after the broker redelivered it."""
        return 1 + int(self.headers.get("x-delivery-count", 0))

    def fresh_headers(self, drop: Iterable[str] = ()) -> dict[str, Any]:
        """The message's own headers, without the broker's (and without `drop`)."""
        dropped = set(drop)
        return {
            key: value
            for key, value in self.headers.items()
            if not key.startswith(BROKER_HEADERS) and key not in dropped
        }

    def copy_to(self, exchange: str, routing_key: str, headers: dict[str, Any]) -> Outgoing:
        """This message, to publish again elsewhere: same body and ids, new headers."""
        return Outgoing(
            exchange=exchange,
            routing_key=routing_key,
            body=self.body,
            message_id=self.message_id,
            correlation_id=self.correlation_id,
            headers=headers,
        )
