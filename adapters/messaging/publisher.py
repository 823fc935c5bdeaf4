"""A publisher that returns only once the broker has confirmed the message."""

from __future__ import annotations

from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

from kombu import Connection, Exchange, Producer

from adapters.messaging.broker import Broker

CONTENT_TYPE = "application/json"


@dataclass(frozen=True)
class Outgoing:
    """One message ready to publish: where to, its body, and the ids consumers rely on."""

    exchange: str
    routing_key: str
    body: bytes
    message_id: str
    correlation_id: str
    headers: dict[str, Any] = field(default_factory=dict)


class Publisher:
    """Publishes persistent messages with publisher confirms on a connection of its own."""

    def __init__(self, broker: Broker) -> None:
        self._broker = broker
        self._connection: Connection | None = None
        self._producer: Producer | None = None

    def publish(self, message: Outgoing) -> None:
        """Publish and wait for the broker's confirm; raises if it does not come in time."""
        producer = self._ensure_producer()
        try:
            self._publish(producer, message)
        except Exception:
            # A failed publish leaves the channel in an unknown state: start afresh next time.
            self.close()
            raise

    def _publish(self, producer: Producer, message: Outgoing) -> None:
        producer.publish(
            message.body,
            exchange=Exchange(message.exchange),
            routing_key=message.routing_key,
            content_type=CONTENT_TYPE,
            content_encoding="utf-8",
            delivery_mode=2,
            message_id=message.message_id,
            correlation_id=message.correlation_id,
            headers=message.headers,
            declare=[],
            confirm_timeout=self._broker.confirm_timeout,
        )

    def close(self) -> None:
        if self._connection is not None:
            self._connection.release()
        self._connection = None
        self._producer = None

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def _ensure_producer(self) -> Producer:
        if self._producer is None:
            self._connection = self._broker.connect()
            self._producer = Producer(self._connection.default_channel)
        return self._producer
