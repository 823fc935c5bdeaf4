"""A consumer loop that owns one connection, reconnects after failures and stops on request."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog
from kombu import Connection, Consumer, Message, Queue

from adapters.messaging.broker import Broker

log = structlog.get_logger(__name__)

MessageHandler = Callable[[bytes, Message], None]
"""Called with the raw body and the message; it must ack, reject or requeue the message."""


class ConsumerLoop:
    """Consumes one queue on a connection of its own until `stop` is set.

    `on_tick` runs on the consuming thread between waits for messages: it is where work
    finished elsewhere is acknowledged, since a channel may only be used by its own thread.
    `on_stop` runs there too, after consuming stopped and before the connection closes.
    """

    def __init__(
        self,
        broker: Broker,
        queue: Queue,
        handler: MessageHandler,
        *,
        prefetch: int = 32,
        on_tick: Callable[[], None] | None = None,
        on_stop: Callable[[], None] | None = None,
        tick_seconds: float = 0.05,
        reconnect_seconds: float = 1.0,
    ) -> None:
        self._broker = broker
        self._queue = queue
        self._handler = handler
        self._prefetch = prefetch
        self._on_tick = on_tick
        self._on_stop = on_stop
        self._tick_seconds = tick_seconds
        self._reconnect_seconds = reconnect_seconds
        self.ready = threading.Event()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            connection = self._broker.connect()
            try:
                self._consume(connection, stop)
            except Exception as error:
                # Whatever broke the connection, its unacknowledged deliveries come back
                # after a reconnect; stale delivery tags die with the old connection.
                log.warning("consumer.disconnected", queue=self._queue.name, error=repr(error))
                stop.wait(self._reconnect_seconds)
            finally:
                self.ready.clear()
                connection.release()

    def _consume(self, connection: Connection, stop: threading.Event) -> None:
        queue = self._queue.bind(connection.default_channel)
        queue.declare()
        with Consumer(
            connection.default_channel,
            queues=[queue],
            # Raw delivery: the handler validates the body against its contract itself.
            on_message=self._deliver,
            prefetch_count=self._prefetch,
        ) as consumer:
            self.ready.set()
            log.info("consumer.started", queue=self._queue.name)
            while not stop.is_set():
                try:
                    connection.drain_events(timeout=self._tick_seconds)
                except TimeoutError:
                    connection.heartbeat_check()
                if self._on_tick is not None:
                    self._on_tick()
            # Stop: take no new deliveries, then let the owner settle what is in flight
            # while the channel is still open to acknowledge it.
            consumer.cancel()
            if self._on_stop is not None:
                self._on_stop()

    def _deliver(self, message: Message) -> None:
        self._handler(message.body, message)
