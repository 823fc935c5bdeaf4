"""Runs one adapter: consumes its department's queue, calls `handle`, publishes outcomes.

Department calls run on an asyncio loop in a thread of their own, so a slow department
never blocks the consumer's heartbeats, and up to `concurrency` calls are in flight.
Outcomes are published and deliveries acknowledged back on the consumer thread (a kombu
channel belongs to one thread), and a delivery is acknowledged only after its outcome
is confirmed by the broker. On stop, in-flight calls get a grace period to finish;
what does not finish stays unacknowledged and is redelivered.
"""

from __future__ import annotations

import asyncio
import queue
import threading
import time
from concurrent.futures import Future

import structlog
from kombu import Message
from pydantic import TypeAdapter, ValidationError

from adapters.base import Adapter
from adapters.messaging import Broker, ConsumerLoop, Outgoing, Publisher
from adapters.messaging.topology import department_queue
from adapters.runner import AdapterRunner
from adapters.storage import MaterialStore
from contracts import topology
from contracts.messages import (
    DepartmentMessage,
    ItemCancel,
    ItemDispatch,
    ItemOutcome,
    ItemSupplement,
    OutcomeResult,
)

log = structlog.get_logger(__name__)
_DEPARTMENT_MESSAGE: TypeAdapter[DepartmentMessage] = TypeAdapter(DepartmentMessage)


class AdapterWorker:
    def __init__(
        self,
        adapter: Adapter,
        broker: Broker,
        *,
        grace_seconds: float = 10.0,
        materials: MaterialStore | None = None,
    ) -> None:
        self._adapter = adapter
        self._broker = broker
        self._grace_seconds = grace_seconds
        self._publisher = Publisher(broker)
        # (outcome to publish or None, delivery to acknowledge after it or None)
        self._finished: queue.Queue[tuple[ItemOutcome | None, Message | None]] = queue.Queue()
        self._in_flight = 0
        self._loop = asyncio.new_event_loop()
        self._runner = AdapterRunner(adapter, materials)
        self._consumer = ConsumerLoop(
            broker,
            department_queue(adapter.department),
            self._on_message,
            prefetch=adapter.concurrency,
            on_tick=self._publish_finished,
            on_stop=self._settle_in_flight,
        )

    @property
    def ready(self) -> threading.Event:
        return self._consumer.ready

    def run(self, stop: threading.Event) -> None:
        loop_thread = threading.Thread(
            target=self._loop.run_forever, name=f"{self._adapter.department}-calls", daemon=True
        )
        loop_thread.start()
        try:
            self._consumer.run(stop)
        finally:
            asyncio.run_coroutine_threadsafe(self._runner.aclose(), self._loop).result(5)
            self._loop.call_soon_threadsafe(self._loop.stop)
            loop_thread.join(timeout=5)
            self._publisher.close()

    def _on_message(self, body: bytes, message: Message) -> None:
        try:
            received = _DEPARTMENT_MESSAGE.validate_json(body)
        except ValidationError as error:
            log.error("dispatch.invalid", detail=str(error)[:500])
            message.reject()
            return
        delivery = 1 + int((message.headers or {}).get("x-delivery-count", 0))
        self._in_flight += 1
        if isinstance(received, ItemCancel):
            cancelling = asyncio.run_coroutine_threadsafe(
                self._runner.cancel(received, delivery), self._loop
            )
            cancelling.add_done_callback(lambda done: self._on_cancelled(message, done))
            return
        future = asyncio.run_coroutine_threadsafe(self._call(received, delivery), self._loop)
        future.add_done_callback(lambda done: self._on_done(received, message, done))

    async def _call(
        self, request: ItemDispatch | ItemSupplement, delivery: int
    ) -> OutcomeResult | None:
        async def report(result: OutcomeResult) -> None:
            self._finished.put((ItemOutcome.answering(request, result), None))

        return await self._runner.run(request, delivery, report)

    def _on_done(
        self,
        request: ItemDispatch | ItemSupplement,
        message: Message,
        done: Future[OutcomeResult | None],
    ) -> None:
        if done.cancelled():
            return  # stopped before it finished: left unacknowledged, so redelivered
        result = done.result()
        outcome = None if result is None else ItemOutcome.answering(request, result)
        self._finished.put((outcome, message))

    def _on_cancelled(self, message: Message, done: Future[bool]) -> None:
        if not done.cancelled():
            # Nothing to answer: the router closed the item when it asked for the cancel.
            self._finished.put((None, message))

    def _publish_finished(self) -> None:
        while True:
            try:
                outcome, message = self._finished.get_nowait()
            except queue.Empty:
                return
            if outcome is not None:
                self._publisher.publish(
                    Outgoing(
                        exchange=topology.OUTCOMES_EXCHANGE,
                        routing_key=topology.outcome_routing_key(outcome.department),
                        body=outcome.model_dump_json().encode(),
                        message_id=str(outcome.message_id),
                        correlation_id=str(outcome.bundle_id),
                    )
                )
            if message is not None:
                message.ack()
                self._in_flight -= 1

    def _settle_in_flight(self) -> None:
        deadline = time.monotonic() + self._grace_seconds
        while self._in_flight and time.monotonic() < deadline:
            self._publish_finished()
            time.sleep(0.02)
        self._publish_finished()
        if self._in_flight:
            log.warning("adapter.stopped_with_work_in_flight", count=self._in_flight)
