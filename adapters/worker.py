"""Runs one adapter: consumes its department's queue, calls `handle`, publishes outcomes.

Department calls run on an asyncio loop in a thread of their own, so a slow department
never blocks the consumer's heartbeats, and up to `concurrency` calls are in flight.
Each delivery is handed over PENDING and settled when its call finishes: the consumer
loop publishes the outcome, waits for the broker's confirm, and only then acknowledges
the delivery (`runtime.messaging.consumer`). A delivery of a connection that has since
died is not acknowledged: the broker redelivers it, and the department sees the same
idempotency key again. On stop, in-flight calls get a grace period to finish; what does
not finish stays unacknowledged and is redelivered.

A department still unavailable after a delivery's attempts is retried later
(`RetryLater`: the message comes back after a delay), until the request's `respond_by`
(the item's deadline) or the policy's `give_up_after_seconds` has passed. Then the
message is parked ("deadline reached while the department was unreachable") and the
router is told with an `Unreachable` outcome: the item stays open, never failed.

Each of these decisions is also reported to the router as an `ItemTrouble` notice (one
per retry decision, one when parked), so an operator sees why the item waits: the
attempt, the next retry, the last error (masked) and the circuit's state.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Coroutine, Mapping
from datetime import timedelta

from opentelemetry.trace import Span
from pydantic import TypeAdapter, ValidationError

from adapters.base import Adapter
from adapters.context import Reporter
from adapters.outcomes import signed_outcome
from adapters.runner import AdapterRunner
from contracts.errors import DepartmentUnavailable, MessageRefused
from contracts.messages import (
    DepartmentMessage,
    DepartmentRequest,
    ItemCancel,
    ItemDispatch,
    ItemOutcome,
    ItemTrouble,
    OutcomeResult,
    TroubleKind,
    Unreachable,
)
from contracts.personal_data import mask_name, mask_text
from runtime import clock
from runtime.failpoints import failpoint
from runtime.messaging import Broker, ConsumerLoop, Delivery, Outgoing
from runtime.messaging.declaration import department_queue
from runtime.messaging.delayed import Retries
from runtime.messaging.envelope import REPLAYED_HEADER
from runtime.messaging.settlement import PENDING, Ack, Park, Pending, RetryLater, Settlement
from runtime.messaging.signing import ROUTER_SIGNER, Keyring
from runtime.storage import MaterialStore
from runtime.tracing import current_headers, headers_of, start_span, traced

_DEPARTMENT_MESSAGE: TypeAdapter[DepartmentMessage] = TypeAdapter(DepartmentMessage)
OUT_OF_TIME = "deadline reached while the department was unreachable"


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
        self._keyring = keyring
        self._services = frozenset(adapter.services)
        self._loop = asyncio.new_event_loop()
        self._in_flight: set[asyncio.Task[None]] = set()
        self._runner = AdapterRunner(adapter, materials)
        self._consumer = ConsumerLoop(
            broker,
            department_queue(adapter.department, declare=declare_queue, area=adapter.area),
            self._on_delivery,
            prefetch=adapter.concurrency,
            grace_seconds=grace_seconds,
            before_ack_failpoint="adapter.before_ack",
            # On the in-memory transport outcomes are published on a tick: a short one keeps
            # that wait out of every hop a bundle makes (RabbitMQ's settlements wake it).
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

    def _on_delivery(self, delivery: Delivery) -> Settlement | Pending:
        received = self._accepted(delivery)
        if received.service not in self._services:
            # The catalog routes a service this adapter does not declare: an adapter older
            # than the catalog. Parked, not failed: once upgraded, replay it.
            reason = (
                f"{type(self._adapter).__name__} does not declare service {received.service!r} "
                f"(it declares {', '.join(sorted(self._services))}); upgrade the adapter "
                "and replay this message"
            )
            if not isinstance(received, ItemCancel):
                self._report_trouble(
                    received, delivery, TroubleKind.PARKED, reason, current_headers()
                )
            return Park(reason)
        span = start_span("adapter.handle", received, delivery.headers)
        if isinstance(received, ItemCancel):
            cancel = self._runner.cancel(received, delivery.attempt, self._reporter(received))
            work = self._finished(None, delivery, traced(span, received, cancel), span)
        else:
            call = self._call(received, delivery.attempt)
            work = self._finished(received, delivery, traced(span, received, call), span)
        # One hand-off to the call thread; `_finished` settles from there when done.
        self._loop.call_soon_threadsafe(self._start, work)
        return PENDING

    def _start(self, work: Coroutine[None, None, None]) -> None:
        """On the call thread: run `work`, held here while it runs (the loop holds its
        tasks weakly); `_finished` lets go of it itself, sparing the loop a turn for a
        done callback."""
        self._in_flight.add(self._loop.create_task(work))

    async def _finished(
        self,
        request: DepartmentRequest | None,
        delivery: Delivery,
        work: Awaitable[OutcomeResult | bool | None],
        span: Span,
    ) -> None:
        """On the call thread: await `work`, then settle the delivery with what it came to.
        Cancelled at a stop, it settles nothing: unacknowledged, the delivery is redelivered."""
        # Taken while the loop runs it: stopped mid-call, the coroutine is closed later,
        # with no loop running to ask.
        task = asyncio.current_task()
        try:
            result = await work
        except Exception as error:
            self._failed(request, delivery, error, span)
        else:
            self._answered(request, delivery, result, span)
        finally:
            span.end()
            self._in_flight.discard(task)

    def _accepted(self, delivery: Delivery) -> DepartmentRequest | ItemCancel:
        """The message, if it is the router's and for this department; MessageRefused
        (parked with the reason) otherwise."""
        signer = self._keyring.verify_delivery(delivery)
        if signer != ROUTER_SIGNER:
            raise MessageRefused(f"a department message signed by {signer}, not the router")
        try:
            received = _DEPARTMENT_MESSAGE.validate_json(delivery.body)
        except ValidationError as error:
            raise MessageRefused(
                f"breaks the department message contract: {error}"[:500]
            ) from error
        department = self._adapter.department
        if received.department != department:
            raise MessageRefused(f"a message for {received.department} on {department}'s queue")
        return received

    async def _call(self, request: DepartmentRequest, delivery: int) -> OutcomeResult | None:
        return await self._runner.run(request, delivery, self._reporter(request))

    def _reporter(self, request: DepartmentRequest | ItemCancel) -> Reporter:
        """Sends what the department says about `request` before its call finishes (an
        acceptance, a refusal to withdraw) as an outcome of the same filing."""

        async def report(result: OutcomeResult) -> None:
            self._consumer.send(
                self._signed(ItemOutcome.answering(request, result), current_headers())
            )

        return report

    def _failed(
        self, request: DepartmentRequest | None, delivery: Delivery, error: Exception, span: Span
    ) -> None:
        if isinstance(error, DepartmentUnavailable):
            if not self._out_of_time(request, delivery):
                if request is not None:
                    self._report_trouble(
                        request, delivery, TroubleKind.RETRYING, str(error), headers_of(span)
                    )
                self._consumer.settle(delivery, RetryLater(str(error)))
                return
            if request is not None:  # a cancel has no item left to tell the router about
                self._report_trouble(
                    request, delivery, TroubleKind.PARKED, str(error), headers_of(span)
                )
                unreachable = ItemOutcome.answering(request, Unreachable(reason=str(error)))
                self._consumer.send(self._signed(unreachable, headers_of(span)))
            self._consumer.settle(delivery, Park(f"{OUT_OF_TIME}: {error}"[:500]))
            return
        # The runner answers every department failure: this is a bug.
        if request is not None:
            self._report_trouble(
                request, delivery, TroubleKind.PARKED, repr(error), headers_of(span)
            )
        self._consumer.settle(delivery, Park(f"handler failed: {error!r}"[:500]))

    def _answered(
        self,
        request: DepartmentRequest | None,
        delivery: Delivery,
        result: OutcomeResult | bool | None,
        span: Span,
    ) -> None:
        # A cancel has nothing to answer: the router closed the item when it asked.
        if request is None or result is None or isinstance(result, bool):
            self._consumer.settle(delivery, Ack())
            return
        failpoint("adapter.after_call")
        outcome = ItemOutcome.answering(request, result)
        self._consumer.settle(delivery, Ack(publish=(self._signed(outcome, headers_of(span)),)))

    def _out_of_time(self, request: DepartmentRequest | None, delivery: Delivery) -> bool:
        """Whether retrying later would pass the item's deadline or the policy's limit."""
        respond_by = request.respond_by if request is not None else None
        if respond_by is not None and clock.now() >= respond_by:
            return True
        return Retries.of(delivery).exhausted(self._adapter.retry.give_up_after_seconds)

    def _report_trouble(
        self,
        request: DepartmentRequest,
        delivery: Delivery,
        trouble: TroubleKind,
        error: str,
        trace: Mapping[str, str],
    ) -> None:
        """Tell the router why `request` has no answer yet (sent before the delivery is
        settled, on the consuming thread: one notice per decision)."""
        retries = Retries.of(delivery)
        # Each delayed retry and each replay by an operator is a delivery of its own.
        replays = int(delivery.headers.get(REPLAYED_HEADER, 0))
        notice = ItemTrouble.about(
            request,
            trouble,
            attempt=retries.count + replays + 1,
            last_error=_operator_detail(request, error),
            circuit=self._runner.breaker.state,
            next_retry_at=clock.now() + timedelta(seconds=retries.next_delay_seconds)
            if trouble is TroubleKind.RETRYING
            else None,
        )
        self._consumer.send(signed_outcome(self._keyring, notice, trace))

    def _signed(self, outcome: ItemOutcome, trace: Mapping[str, str]) -> Outgoing:
        return signed_outcome(self._keyring, outcome, trace)


def _operator_detail(request: DepartmentRequest, error: str) -> str:
    """The error as an operator may read it: ID numbers, phones and the applicant's name
    masked (a department's error may quote the filing)."""
    masked = mask_text(error)
    if isinstance(request, ItemDispatch):
        name = request.applicant.name
        masked = masked.replace(name, mask_name(name))
    return masked
