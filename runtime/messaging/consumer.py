"""A consumer loop that owns one connection, survives the broker going away, and never
spins on a message it cannot handle.

What the handler's outcome means for the message:

    returns ................ the handler settled it (ack) or will settle it later
    raises MessageRefused ......... never to be processed: parked with the reason, then acked
    raises TransientError .. a dependency is down: the message is held (not requeued, so
                             its delivery count does not grow) and retried with backoff;
                             later deliveries wait behind it, in order
    raises anything else ... a bug or a poison message: parked with the error as reason,
                             unless it is the broker connection failing: then reconnect

With a batch handler, the deliveries waiting together go to it in one call, in order: it
acks what it settled and returns the ones it refuses, which are parked. If it raises
anything but TransientError or a connection error, the same messages go to the
per-message handler one at a time, which isolates the one at fault.
"""

from __future__ import annotations

import contextlib
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any

import structlog
from kombu import Connection, Consumer, Message, Queue

from contracts import topology
from contracts.errors import ConsumerStalled, MessageRefused, TransientError
from runtime.messaging.backoff import Backoff
from runtime.messaging.broker import Broker
from runtime.messaging.publisher import Outgoing, Publisher

log = structlog.get_logger(__name__)

MessageHandler = Callable[[bytes, Message], None]
"""Called with the raw body and the message; it must ack it now or later (see module doc)."""

BatchHandler = Callable[[Sequence[Message]], "list[tuple[Message, MessageRefused]]"]
"""Called with several messages in delivery order; returns the refused (see module doc)."""

REFUSED_REASON_HEADER = "x-lianban-refused-reason"
SOURCE_QUEUE_HEADER = "x-lianban-source-queue"
REFUSED_AT_HEADER = "x-lianban-refused-at"


# Set by RabbitMQ on redelivery and dead-lettering; a copy published afresh drops them.
BROKER_HEADERS = ("x-delivery-count", "x-death", "x-first-death-", "x-last-death-")


def raw_body(message: Message) -> bytes:
    """The body as sent: py-amqp hands over a `str` when the message names an encoding."""
    body = message.body
    return body.encode() if isinstance(body, str) else bytes(body)


def fresh_headers(message: Message, drop: Iterable[str] = ()) -> dict[str, Any]:
    """The message's own headers, without the broker's (and without `drop`)."""
    dropped = set(drop)
    return {
        key: value
        for key, value in (message.headers or {}).items()
        if not key.startswith(BROKER_HEADERS) and key not in dropped
    }


def copy_of(
    message: Message, *, exchange: str, routing_key: str, headers: dict[str, Any]
) -> Outgoing:
    """A received message, to publish again elsewhere: same body and ids, new headers."""
    properties = message.properties
    return Outgoing(
        exchange=exchange,
        routing_key=routing_key,
        body=raw_body(message),
        message_id=str(properties.get("message_id", "")),
        correlation_id=str(properties.get("correlation_id", "")),
        headers=headers,
    )


class ConsumerLoop:
    """Consumes one queue on a connection of its own until `stop` is set.

    `on_tick` runs on the consuming thread between waits for messages: it is where work
    finished elsewhere is acknowledged, since a channel may only be used by its own thread
    (`is_current` tells whether a message still belongs to the live channel: after a
    reconnect, old delivery tags are meaningless and the broker redelivers instead).
    `on_stop` runs there too, after consuming stopped and before the connection closes.
    """

    def __init__(
        self,
        broker: Broker,
        queue: Queue,
        handler: MessageHandler,
        *,
        batch_handler: BatchHandler | None = None,
        prefetch: int = 32,
        on_tick: Callable[[], None] | None = None,
        on_stop: Callable[[], None] | None = None,
        tick_seconds: float = 0.05,
        reconnect_backoff: Backoff | None = None,
        hold_backoff: Backoff | None = None,
        liveness_seconds: float = 30.0,
    ) -> None:
        self._broker = broker
        self._queue = queue
        self._handler = handler
        self._batch_handler = batch_handler
        self._one_at_a_time = 0  # messages to hand over singly after a failed batch
        self._prefetch = prefetch
        self._on_tick = on_tick
        self._on_stop = on_stop
        self._tick_seconds = tick_seconds
        self._reconnect = reconnect_backoff or Backoff(0.5, 30.0)
        self._hold = hold_backoff or Backoff(0.2, 15.0)
        self._liveness_seconds = liveness_seconds
        self._parker = Publisher(broker)
        self._channel: Any = None
        self._connection_errors: tuple[type[BaseException], ...] = ()
        self._waiting: deque[Message] = deque()  # delivered, not yet handed to the handler
        self._unsettled: list[Message] = []  # handed over, not yet acked by anyone
        self._held_until = 0.0
        self._last_delivery = time.monotonic()
        self._last_liveness_check = time.monotonic()
        self._last_heartbeat_check = 0.0
        self.ready = threading.Event()

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                connection = self._broker.connect()
                try:
                    self._consume(connection, stop)
                except Exception as error:
                    # Unacknowledged deliveries come back after a reconnect; the ones held
                    # here belong to the dead channel and are forgotten.
                    delay = self._reconnect.next_delay()
                    log.warning(
                        "consumer.disconnected",
                        queue=self._queue.name,
                        error=repr(error),
                        retry_in=round(delay, 2),
                    )
                    stop.wait(delay)
                finally:
                    self.ready.clear()
                    self._channel = None
                    self._waiting.clear()
                    self._unsettled.clear()
                    connection.release()
        finally:
            self._parker.close()

    def is_current(self, message: Message) -> bool:
        """False for a delivery of a channel that has since died: do not settle it."""
        return self._channel is not None and message.channel is self._channel

    def _consume(self, connection: Connection, stop: threading.Event) -> None:
        channel = connection.default_channel
        self._connection_errors = connection.connection_errors + connection.channel_errors
        queue = self._queue.bind(channel)
        queue.declare()
        with Consumer(
            channel,
            queues=[queue],
            # Raw delivery: the handler validates the body against its contract itself.
            on_message=self._deliver,
            prefetch_count=self._prefetch,
        ) as consumer:
            self._channel = channel
            self._last_delivery = self._last_liveness_check = time.monotonic()
            self.ready.set()
            log.info("consumer.started", queue=self._queue.name)
            while not stop.is_set():
                self._receive(connection)
                self._heartbeat(connection)
                self._hand_over_waiting()
                if self._on_tick is not None:
                    self._on_tick()
                self._check_liveness(queue)
                self._reconnect.reset()
            # Stop: take no new deliveries, then let the owner settle what is in flight
            # while the channel is still open to acknowledge it.
            consumer.cancel()
            if self._on_stop is not None:
                self._on_stop()

    def _receive(self, connection: Connection) -> None:
        """Wait up to a tick for deliveries. py-amqp reads one message per drain: with a
        batch handler, also take every delivery already on the wire, so that one batch
        holds them."""
        with contextlib.suppress(TimeoutError):
            connection.drain_events(timeout=self._tick_seconds)
            while self._batch_handler is not None and len(self._waiting) < self._prefetch:
                connection.drain_events(timeout=0.001)

    def _heartbeat(self, connection: Connection) -> None:
        """Send and check heartbeats once a second, however short the tick (py-amqp logs
        every check; the heartbeat interval is tens of seconds)."""
        now = time.monotonic()
        if now - self._last_heartbeat_check >= 1.0:
            self._last_heartbeat_check = now
            connection.heartbeat_check()

    def _deliver(self, message: Message) -> None:
        self._last_delivery = time.monotonic()
        self._waiting.append(message)

    def _hand_over_waiting(self) -> None:
        while self._waiting and time.monotonic() >= self._held_until:
            if self._batch_handler is not None and not self._one_at_a_time:
                batch = list(itertools.islice(self._waiting, self._prefetch))
            else:
                batch = [self._waiting[0]]
            refused: list[tuple[Message, MessageRefused]] = []
            try:
                if len(batch) == 1:
                    self._hand_over(batch[0])
                else:
                    assert self._batch_handler is not None
                    refused = self._batch_handler(batch)
            except TransientError as error:
                delay = self._hold.next_delay()
                self._held_until = time.monotonic() + delay
                log.warning(
                    "consumer.holding",
                    queue=self._queue.name,
                    error=repr(error),
                    retry_in=round(delay, 2),
                    waiting=len(self._waiting),
                )
                return
            except self._connection_errors:
                raise  # the broker connection broke (an ack, say): reconnect, redelivered
            except Exception as error:
                if len(batch) == 1:
                    raise  # parking failed (the handler's own errors park): reconnect
                log.warning("consumer.batch_failed", queue=self._queue.name, error=repr(error))
                self._one_at_a_time = len(batch)
                continue
            # Outside the try: a parking that fails after the batch committed must not hand
            # the batch, acked already, to the fallback; it reconnects instead.
            for message, refusal in refused:
                self.park(message, refusal.reason)
            self._hold.reset()
            self._one_at_a_time = max(0, self._one_at_a_time - len(batch))
            for _ in batch:
                self._track(self._waiting.popleft())

    def _hand_over(self, message: Message) -> None:
        """One message to the per-message handler; a refusal or a failure parks it."""
        try:
            self._handler(raw_body(message), message)
        except TransientError:
            raise  # held by the caller
        except self._connection_errors:
            raise
        except MessageRefused as refusal:
            self.park(message, refusal.reason)
        except Exception as error:
            log.exception("consumer.handler_failed", queue=self._queue.name)
            self.park(message, f"handler failed: {error!r}"[:500])

    def _track(self, message: Message) -> None:
        """Remember a handed-over message until someone acks it (for the liveness check)."""
        if not message.acknowledged:
            self._unsettled.append(message)
            if len(self._unsettled) > 2 * self._prefetch:  # keep it bounded between checks
                self._unsettled = [m for m in self._unsettled if not m.acknowledged]

    def park(self, message: Message, reason: str) -> None:
        """Move a message to this queue's parking lot with the reason, then ack it.

        Published (confirmed) before the ack, so a crash in between parks it twice at
        worst, never loses it. Dead-lettering by reject would lose the reason, and the
        in-memory transport would drop the message.
        """
        parking = topology.parking_queue(self._queue.name)
        self._parker.publish(
            copy_of(
                message,
                exchange=topology.DEAD_LETTER_EXCHANGE,
                routing_key=parking,
                headers={
                    **(message.headers or {}),
                    REFUSED_REASON_HEADER: reason,
                    SOURCE_QUEUE_HEADER: self._queue.name,
                    REFUSED_AT_HEADER: datetime.now(UTC).isoformat(),
                },
            )
        )
        message.ack()
        log.error("consumer.parked", queue=parking, reason=reason)

    def _check_liveness(self, queue: Queue) -> None:
        """Detect a consumer the broker no longer feeds (kombu #670): if messages are
        ready, there is room for them, and none came for a while, reconnect."""
        now = time.monotonic()
        if now - self._last_liveness_check < self._liveness_seconds:
            return
        self._last_liveness_check = now
        self._unsettled = [message for message in self._unsettled if not message.acknowledged]
        busy = len(self._unsettled) + len(self._waiting) >= self._prefetch
        if busy or now - self._last_delivery < self._liveness_seconds:
            return
        ready = queue.queue_declare(passive=True).message_count
        if ready:
            raise ConsumerStalled(f"{ready} messages ready in {self._queue.name}, none delivered")
