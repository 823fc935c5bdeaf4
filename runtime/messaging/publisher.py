"""A publisher that reports a message sent only once the broker has confirmed it.

Batches are pipelined: every message of a batch is published before any confirm is
awaited, and the broker's cumulative acks settle them together — one round trip per
batch instead of one per message (py-amqp's own confirm mode waits after each publish).
Messages are published `mandatory`: one that no queue would take comes back and counts
as not confirmed, so nothing is dropped silently by a missing binding.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from types import TracebackType
from typing import Any

import amqp
from kombu import Connection, Exchange, Producer

from contracts.errors import PublishFailed
from runtime.messaging.broker import Broker

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
        self._channel: Any = None
        self._next_tag = 1
        self._unconfirmed: set[int] = set()
        self._acked: dict[int, bool] = {}
        self._returned: set[str] = set()

    def publish(self, message: Outgoing) -> None:
        """Publish one message and wait for its confirm; raises PublishFailed otherwise."""
        self.publish_many([message])

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        """Publish a batch; returns once all are confirmed, or raises PublishFailed saying
        which were. A message not confirmed may still have reached the broker: callers
        publish it again and consumers deduplicate by message id."""
        if not messages:
            return
        publish = self._publish_in_memory if self._broker.is_memory else self._publish_pipelined
        try:
            publish(messages)
        except PublishFailed as failure:
            self.close()  # the channel is in an unknown state: start afresh
            if any(failure.confirmed):
                raise
            # Nothing confirmed: most often a connection the broker dropped while idle
            # (a restart), noticed only now. One more try, on a new connection.
            publish(messages)

    def _publish_in_memory(self, messages: Sequence[Outgoing]) -> None:
        producer = Producer(self._ensure_connection().default_channel)
        for position, message in enumerate(messages):
            try:
                producer.publish(
                    message.body,
                    exchange=Exchange(message.exchange),
                    routing_key=message.routing_key,
                    headers=message.headers,
                    declare=[],
                    **_properties(message),
                )
            except Exception as error:
                confirmed = [index < position for index in range(len(messages))]
                raise PublishFailed(repr(error), confirmed) from error

    def _publish_pipelined(self, messages: Sequence[Outgoing]) -> None:
        tags: list[int] = []
        try:
            channel = self._ensure_channel()
            self._returned.clear()
            for message in messages:
                channel.basic_publish(
                    amqp.Message(
                        message.body, application_headers=message.headers, **_properties(message)
                    ),
                    exchange=message.exchange,
                    routing_key=message.routing_key,
                    mandatory=True,
                )
                tags.append(self._next_tag)
                self._unconfirmed.add(self._next_tag)
                self._next_tag += 1
            self._await_confirms(set(tags))
            failure = None
        except Exception as error:
            failure = error
        confirmed = [
            self._acked.pop(tag, False) and message.message_id not in self._returned
            for tag, message in zip(tags, messages, strict=False)
        ]
        confirmed += [False] * (len(messages) - len(tags))
        if failure is not None or not all(confirmed):
            reason = repr(failure) if failure else self._refusal_reason(messages, confirmed)
            raise PublishFailed(reason, confirmed) from failure

    def _await_confirms(self, tags: set[int]) -> None:
        assert self._connection is not None
        deadline = time.monotonic() + self._broker.confirm_timeout
        while tags & self._unconfirmed:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError(f"no confirm within {self._broker.confirm_timeout} s")
            try:
                self._connection.drain_events(timeout=remaining)
            except TimeoutError:
                continue

    def _refusal_reason(self, messages: Sequence[Outgoing], confirmed: list[bool]) -> str:
        refused = [m for m, ok in zip(messages, confirmed, strict=True) if not ok]
        unroutable = [m for m in refused if m.message_id in self._returned]
        if unroutable:
            first = unroutable[0]
            return f"unroutable: no queue for {first.exchange} / {first.routing_key}"
        return f"broker refused (nack) {len(refused)} message(s)"

    def _settle(self, delivery_tag: int, multiple: bool, acked: bool) -> None:
        settled = (
            [tag for tag in self._unconfirmed if tag <= delivery_tag]
            if multiple
            else [delivery_tag]
        )
        for tag in settled:
            self._unconfirmed.discard(tag)
            self._acked[tag] = acked

    def _on_return(self, error: Exception, exchange: str, routing_key: str, message: Any) -> None:
        self._returned.add(str(message.properties.get("message_id", "")))

    def _ensure_connection(self) -> Connection:
        if self._connection is None:
            self._connection = self._broker.connect()
        return self._connection

    def _ensure_channel(self) -> Any:
        if self._channel is None:
            channel = self._ensure_connection().channel()
            channel.confirm_select()
            channel.events["basic_ack"].add(lambda tag, multiple: self._settle(tag, multiple, True))
            channel.events["basic_nack"].add(
                lambda tag, multiple: self._settle(tag, multiple, False)
            )
            channel.events["basic_return"].add(self._on_return)
            self._channel = channel
            self._next_tag = 1
        return self._channel

    def close(self) -> None:
        if self._connection is not None:
            self._connection.release()
        self._connection = None
        self._channel = None
        self._unconfirmed.clear()
        self._acked.clear()

    def __enter__(self) -> Publisher:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


def _properties(message: Outgoing) -> dict[str, Any]:
    """Persistent JSON, with the ids consumers deduplicate and correlate by."""
    return {
        "content_type": CONTENT_TYPE,
        "content_encoding": "utf-8",
        "delivery_mode": 2,
        "message_id": message.message_id,
        "correlation_id": message.correlation_id,
    }
