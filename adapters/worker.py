"""Runs one adapter: consumes its department's queue, calls `handle`, publishes outcomes.

Department calls run on an asyncio loop in a thread of their own, so a slow department
never blocks the consumer's heartbeats, and up to `concurrency` calls are in flight.
Outcomes are published and deliveries acknowledged back on the consumer thread (a kombu
channel belongs to one thread), and a delivery is acknowledged only after its outcome
is confirmed by the broker. A delivery of a connection that has since died is not
acknowledged: the broker redelivers it, and the department sees the same idempotency
key again. On stop, in-flight calls get a grace period to finish; what does not finish
stays unacknowledged and is redelivered.

A department still unavailable after a delivery's attempts is retried later: a copy of
the message goes to a delay tier (see `runtime.messaging.declaration`) with a retry count
and the time of the first retry in its headers, and the delivery is acknowledged. Past
the policy's `give_up_after_seconds` the last attempt fails the item instead.
"""

from __future__ import annotations

import asyncio
import heapq
import queue
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import structlog
from kombu import Message
from opentelemetry.trace import Span
from pydantic import TypeAdapter, ValidationError

from adapters.base import Adapter
from adapters.runner import AdapterRunner, RetryLater
from contracts import topology
from contracts.errors import MessageRefused
from contracts.messages import (
    DepartmentMessage,
    ItemCancel,
    ItemDispatch,
    ItemOutcome,
    ItemSupplement,
    OutcomeResult,
)
from runtime.failpoints import failpoint
from runtime.messaging import Broker, ConsumerLoop, Outgoing, Publisher
from runtime.messaging.consumer import copy_of, fresh_headers
from runtime.messaging.declaration import RETRY_DELAY_HEADER, department_queue, retry_delay_label
from runtime.messaging.signing import ROUTER_SIGNER, Keyring
from runtime.storage import MaterialStore
from runtime.tracing import current_headers, headers_of, start_span, traced

log = structlog.get_logger(__name__)
_DEPARTMENT_MESSAGE: TypeAdapter[DepartmentMessage] = TypeAdapter(DepartmentMessage)

RETRIES_HEADER = "x-lianban-retries"
FIRST_RETRY_AT_HEADER = "x-lianban-first-retry-at"


@dataclass(frozen=True)
class _Finished:
    """Work done on the call thread, to be settled on the consumer thread."""

    message: Message | None  # the delivery to settle; None for an interim report
    outcome: ItemOutcome | None = None
    retry_later: bool = False
    trace: dict[str, str] = field(default_factory=dict)  # continues the handling's trace


@dataclass(frozen=True)
class _Retries:
    """How often this message has been retried through a delay, and since when."""

    count: int
    first_at: datetime | None

    @classmethod
    def of(cls, message: Message) -> _Retries:
        headers = message.headers or {}
        first_at = headers.get(FIRST_RETRY_AT_HEADER)
        return cls(
            count=int(headers.get(RETRIES_HEADER, 0)),
            first_at=datetime.fromisoformat(first_at) if first_at else None,
        )

    def exhausted(self, give_up_after_seconds: float) -> bool:
        if self.first_at is None:
            return False
        return (datetime.now(UTC) - self.first_at).total_seconds() >= give_up_after_seconds


class AdapterWorker:
    def __init__(
        self,
        adapter: Adapter,
        broker: Broker,
        *,
        grace_seconds: float = 10.0,
        materials: MaterialStore | None = None,
        keyring: Keyring,
        declare_queue: bool = True,
    ) -> None:
        """`keyring` verifies the router's messages and signs outcomes as the department;
        `declare_queue=False` consumes a queue the router (or the broker's definitions)
        declared, for a broker user allowed only to read it."""
        self._adapter = adapter
        self._broker = broker
        self._keyring = keyring
        self._grace_seconds = grace_seconds
        self._publisher = Publisher(broker)
        self._finished: queue.Queue[_Finished] = queue.Queue()
        self._in_flight = 0
        # Embedded mode only (no TTL queues): (due, sequence, copy to publish then).
        self._delayed: list[tuple[float, int, Outgoing]] = []
        self._loop = asyncio.new_event_loop()
        self._runner = AdapterRunner(adapter, materials)
        self._consumer = ConsumerLoop(
            broker,
            department_queue(adapter.department, declare=declare_queue),
            self._on_message,
            prefetch=adapter.concurrency,
            on_tick=self._settle_finished,
            on_stop=self._settle_in_flight,
            # Outcomes are published on a tick: a short one keeps that wait out of every
            # hop a bundle makes (the poll itself costs next to nothing).
            tick_seconds=0.01,
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
        signer = self._keyring.verify_delivery(body, message)
        if signer != ROUTER_SIGNER:
            raise MessageRefused(f"a department message signed by {signer}, not the router")
        try:
            received = _DEPARTMENT_MESSAGE.validate_json(body)
        except ValidationError as error:
            raise MessageRefused(
                f"breaks the department message contract: {error}"[:500]
            ) from error
        if received.department != self._adapter.department:
            raise MessageRefused(
                f"a message for {received.department} on {self._adapter.department}'s queue"
            )
        delivery = 1 + int((message.headers or {}).get("x-delivery-count", 0))
        last_chance = _Retries.of(message).exhausted(self._adapter.retry.give_up_after_seconds)
        self._in_flight += 1
        span = start_span("adapter.handle", received, message.headers)
        if isinstance(received, ItemCancel):
            cancel = self._runner.cancel(received, delivery, last_chance=last_chance)
            cancelling = asyncio.run_coroutine_threadsafe(
                traced(span, received, cancel), self._loop
            )
            cancelling.add_done_callback(lambda done: self._on_done(None, message, done, span))
            return
        future = asyncio.run_coroutine_threadsafe(
            traced(span, received, self._call(received, delivery, last_chance)), self._loop
        )
        future.add_done_callback(lambda done: self._on_done(received, message, done, span))

    async def _call(
        self, request: ItemDispatch | ItemSupplement, delivery: int, last_chance: bool
    ) -> OutcomeResult | None:
        async def report(result: OutcomeResult) -> None:
            outcome = ItemOutcome.answering(request, result)
            self._finished.put(_Finished(None, outcome, trace=current_headers()))

        return await self._runner.run(request, delivery, report, last_chance=last_chance)

    def _on_done(
        self,
        request: ItemDispatch | ItemSupplement | None,
        message: Message,
        done: Future[OutcomeResult | None] | Future[bool],
        span: Span,
    ) -> None:
        span.end()
        if done.cancelled():
            return  # stopped before it finished: left unacknowledged, so redelivered
        error = done.exception()
        if isinstance(error, RetryLater):
            self._finished.put(_Finished(message, retry_later=True))
            return
        result = done.result()
        # A cancel has nothing to answer: the router closed the item when it asked.
        if request is None or result is None or isinstance(result, bool):
            self._finished.put(_Finished(message))
            return
        failpoint("adapter.after_call")
        outcome = ItemOutcome.answering(request, result)
        self._finished.put(_Finished(message, outcome, trace=headers_of(span)))

    def _settle_finished(self) -> None:
        self._publish_due_retries()
        while True:
            try:
                finished = self._finished.get_nowait()
            except queue.Empty:
                return
            if finished.outcome is not None:
                self._publish_outcome(finished.outcome, finished.trace)
            message = finished.message
            if message is None:
                continue
            self._in_flight -= 1
            if not self._consumer.is_current(message):
                # Its channel died: the broker redelivers it, and the repeated call files
                # under the same key, so the department sees one filing.
                log.warning(
                    "adapter.stale_delivery",
                    bundle_id=message.properties.get("correlation_id"),
                    message_id=message.properties.get("message_id"),
                )
                continue
            if finished.retry_later:
                self._retry_later(message)
            failpoint("adapter.before_ack")
            message.ack()

    def _publish_outcome(self, outcome: ItemOutcome, trace: dict[str, str]) -> None:
        body = outcome.model_dump_json().encode()
        message_id, correlation_id = str(outcome.message_id), str(outcome.bundle_id)
        self._publisher.publish(
            Outgoing(
                exchange=topology.OUTCOMES_EXCHANGE,
                routing_key=topology.outcome_routing_key(outcome.department),
                body=body,
                message_id=message_id,
                correlation_id=correlation_id,
                headers={
                    **trace,
                    **self._keyring.sign(
                        self._adapter.department,
                        body=body,
                        message_id=message_id,
                        correlation_id=correlation_id,
                    ),
                },
            )
        )

    def _retry_later(self, message: Message) -> None:
        """Publish a copy that comes back after a delay (confirmed before the ack)."""
        retries = _Retries.of(message)
        delay = retry_delay_label(retries.count)
        copy = copy_of(
            message,
            exchange=topology.RETRY_EXCHANGE,
            routing_key=message.delivery_info["routing_key"],
            headers={
                **fresh_headers(message),
                RETRIES_HEADER: retries.count + 1,
                FIRST_RETRY_AT_HEADER: (retries.first_at or datetime.now(UTC)).isoformat(),
                RETRY_DELAY_HEADER: delay,
            },
        )
        log.info(
            "adapter.retry_later",
            bundle_id=copy.correlation_id,
            message_id=copy.message_id,
            retries=retries.count + 1,
            delay=delay,
        )
        if not self._broker.is_memory:
            self._publisher.publish(copy)
            return
        due = time.monotonic() + float(delay.removesuffix("s"))
        again = replace(copy, exchange=topology.DISPATCH_EXCHANGE)
        heapq.heappush(self._delayed, (due, id(again), again))

    def _publish_due_retries(self) -> None:
        while self._delayed and self._delayed[0][0] <= time.monotonic():
            _, _, again = heapq.heappop(self._delayed)
            self._publisher.publish(again)

    def _settle_in_flight(self) -> None:
        deadline = time.monotonic() + self._grace_seconds
        while self._in_flight and time.monotonic() < deadline:
            self._settle_finished()
            time.sleep(0.02)
        self._settle_finished()
        if self._in_flight:
            log.warning("adapter.stopped_with_work_in_flight", count=self._in_flight)
