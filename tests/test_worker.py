"""The adapter worker behind the broker: 64 calls in flight, and a stop that loses nothing."""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest
from harness import KEYRING, eventually, signed
from kombu import Connection
from pydantic import TypeAdapter

from adapters.base import Adapter
from adapters.context import AdapterContext
from adapters.resilience import RetryPolicy
from adapters.testing.dispatches import dispatch_for
from adapters.worker import AdapterWorker
from contracts import topology
from contracts.application import NaturalPerson
from contracts.catalog import Catalog
from contracts.errors import RetryableError
from contracts.messages import (
    OPERATOR_DETAIL_MAX,
    CircuitState,
    Decided,
    DepartmentReport,
    ItemOutcome,
    ItemTrouble,
    OutcomeResult,
    TroubleKind,
    Unreachable,
)
from lianban.settings import Settings
from runtime.messaging import Broker, Outgoing, Publisher, declare_topology
from runtime.messaging.declaration import department_queue, outcomes_queue
from runtime.messaging.envelope import REFUSED_REASON_HEADER

SERVICE = "birth_household_registration"
REPORT: TypeAdapter[ItemOutcome | ItemTrouble] = TypeAdapter(DepartmentReport)


class SlowPolice(Adapter):
    """Takes `seconds` per call and records how many calls were in flight at once."""

    department = "police"
    services = frozenset({SERVICE})
    seconds: ClassVar[float] = 0.5
    in_flight: ClassVar[int] = 0
    peak: ClassVar[int] = 0

    async def handle(self, item: object, ctx: AdapterContext) -> OutcomeResult:
        cls = type(self)
        cls.in_flight += 1
        cls.peak = max(cls.peak, cls.in_flight)
        await asyncio.sleep(cls.seconds)
        cls.in_flight -= 1
        return Decided(approved=True)


def _publish_dispatches(broker: Broker, count: int, respond_by: datetime | None = None) -> set[str]:
    ids = set()
    with Publisher(broker) as publisher:
        for _ in range(count):
            dispatch = dispatch_for(SERVICE, department="police").model_copy(
                update={"respond_by": respond_by}
            )
            publisher.publish(
                signed(
                    Outgoing(
                        exchange=topology.DISPATCH_EXCHANGE,
                        routing_key=topology.dispatch_routing_key("police", SERVICE),
                        body=dispatch.model_dump_json().encode(),
                        message_id=str(dispatch.message_id),
                        correlation_id=str(dispatch.bundle_id),
                    )
                )
            )
            ids.add(str(dispatch.message_id))
    return ids


def _drain_outcomes(
    broker: Broker, expected: int, timeout: float = 60, notices: list[ItemTrouble] | None = None
) -> list[ItemOutcome]:
    """The outcomes that arrive until `expected` have or `timeout` passes: callers check
    what came, and one expects nothing (a redelivery that must not happen). Trouble
    notices met on the way go to `notices`."""
    outcomes: list[ItemOutcome] = []
    deadline = time.monotonic() + timeout
    with Connection(broker.url) as connection:
        queue = connection.SimpleQueue(outcomes_queue())
        try:
            while len(outcomes) < expected and time.monotonic() < deadline:
                try:
                    message = queue.get(timeout=1)
                except queue.Empty:
                    continue
                report = REPORT.validate_json(message.body)
                if isinstance(report, ItemOutcome):
                    outcomes.append(report)
                elif notices is not None:
                    notices.append(report)
                message.ack()
        finally:
            queue.close()
    return outcomes


def _fresh_queues(broker: Broker, catalog: Catalog) -> None:
    """Declare the topology and empty the queues these tests read."""
    with broker.connect() as connection:
        declare_topology(connection, catalog.departments)
        for queue in (department_queue("police"), outcomes_queue()):
            queue(connection.default_channel).purge()


def _queue_depth(broker: Broker) -> int:
    with Connection(broker.url) as connection:
        _, depth, _ = department_queue("police")(connection.default_channel).queue_declare(
            passive=True
        )
        return int(depth)


def _start(worker: AdapterWorker) -> tuple[threading.Thread, threading.Event]:
    stop = threading.Event()
    thread = threading.Thread(target=worker.run, args=(stop,), daemon=True)
    thread.start()
    assert worker.ready.wait(30)
    return thread, stop


def test_one_worker_keeps_64_calls_in_flight(settings: Settings, catalog: Catalog) -> None:
    broker = Broker(settings.broker_url)
    _fresh_queues(broker, catalog)
    SlowPolice.peak = SlowPolice.in_flight = 0
    dispatched = _publish_dispatches(broker, 100)
    thread, stop = _start(AdapterWorker(SlowPolice(), broker, keyring=KEYRING))
    try:
        outcomes = _drain_outcomes(broker, 100)
    finally:
        stop.set()
        thread.join(30)
    assert {str(outcome.dispatch_id) for outcome in outcomes} == dispatched
    assert SlowPolice.peak >= 64


def test_a_graceful_stop_finishes_in_flight_calls_and_acknowledges_them(
    settings: Settings, catalog: Catalog
) -> None:
    broker = Broker(settings.broker_url)
    _fresh_queues(broker, catalog)
    SlowPolice.peak = SlowPolice.in_flight = 0
    dispatched = _publish_dispatches(broker, 10)
    thread, stop = _start(AdapterWorker(SlowPolice(), broker, grace_seconds=10, keyring=KEYRING))
    eventually(
        lambda: SlowPolice.in_flight,
        lambda in_flight: in_flight >= 10,
        timeout=10,
        every=0.01,
        message="the worker did not take all 10 calls at once",
    )
    stop.set()  # every call is mid-flight
    thread.join(30)

    outcomes = _drain_outcomes(broker, 10, timeout=10)
    assert {str(outcome.dispatch_id) for outcome in outcomes} == dispatched
    if not broker.is_memory:  # the in-memory transport does not redeliver unacked messages
        assert _queue_depth(broker) == 0, "an acknowledgement was lost"


class PoliceDownFor(Adapter):
    """Unavailable for the first `failures` calls, then approves; counts calls."""

    department = "police"
    services = frozenset({SERVICE})
    retry = RetryPolicy(max_attempts=1, initial_backoff=0.01, budget_seconds=1)
    failures: ClassVar[int] = 0
    calls: ClassVar[int] = 0

    async def handle(self, item: object, ctx: AdapterContext) -> OutcomeResult:
        cls = type(self)
        cls.calls += 1
        if cls.calls <= cls.failures:
            raise RetryableError("connection refused")
        return Decided(approved=True)


def _outcomes_of(
    adapter: Adapter, broker: Broker, notices: list[ItemTrouble] | None = None
) -> list[ItemOutcome]:
    """Run a worker for `adapter` until it has answered the one dispatch published."""
    thread, stop = _start(AdapterWorker(adapter, broker, keyring=KEYRING))
    try:
        return _drain_outcomes(broker, 1, timeout=30, notices=notices)
    finally:
        stop.set()
        thread.join(30)


def test_a_department_down_past_its_attempts_is_retried_after_a_delay_not_failed(
    settings: Settings, catalog: Catalog
) -> None:
    broker = Broker(settings.broker_url)
    _fresh_queues(broker, catalog)
    PoliceDownFor.calls, PoliceDownFor.failures = 0, 2
    dispatched = _publish_dispatches(broker, 1)
    notices: list[ItemTrouble] = []
    outcomes = _outcomes_of(PoliceDownFor(), broker, notices)
    # Two deliveries failed (each one attempt); the delays (1 s, then 5 s) brought it back.
    assert PoliceDownFor.calls == 3
    assert [str(outcome.dispatch_id) for outcome in outcomes] == list(dispatched)
    assert isinstance(outcomes[0].result, Decided) and outcomes[0].result.approved
    # The router was told of each retry decision: attempt, next retry, error, circuit.
    assert [(n.trouble, n.attempt) for n in notices] == [
        (TroubleKind.RETRYING, 1),
        (TroubleKind.RETRYING, 2),
    ]
    first, second = notices
    assert {str(n.dispatch_id) for n in notices} == set(dispatched)
    assert first.next_retry_at and second.next_retry_at
    delays = [(n.next_retry_at - n.occurred_at).total_seconds() for n in (first, second)]
    assert 0.5 < delays[0] <= 1.5 and 4.5 < delays[1] <= 5.5, delays  # the 1 s and 5 s tiers
    assert first.last_error == "RetryableError: connection refused"
    assert first.circuit is CircuitState.CLOSED  # one failure a delivery: under the threshold


def _parked_reason(broker: Broker) -> str:
    """The reason the one message in police's parking lot was parked with."""
    parking = topology.parking_queue(department_queue("police").name)
    with Connection(broker.url) as connection:
        channel = connection.default_channel
        message = eventually(
            lambda: channel.basic_get(parking, no_ack=True),
            timeout=10,
            message="nothing was parked",
        )
        return str(message.headers[REFUSED_REASON_HEADER])


def test_a_department_down_past_the_retry_window_parks_the_request_not_fails_the_item(
    settings: Settings, catalog: Catalog
) -> None:
    class GivesUpAtOnce(PoliceDownFor):
        retry = replace(PoliceDownFor.retry, give_up_after_seconds=0)

    broker = Broker(settings.broker_url)
    _fresh_queues(broker, catalog)
    GivesUpAtOnce.calls, GivesUpAtOnce.failures = 0, 100
    _publish_dispatches(broker, 1)
    notices: list[ItemTrouble] = []
    outcomes = _outcomes_of(GivesUpAtOnce(), broker, notices)
    # The first delivery is retried later; the retried one is past the window: parked.
    assert GivesUpAtOnce.calls == 2
    assert isinstance(outcomes[0].result, Unreachable), outcomes[0].result
    assert "connection refused" in outcomes[0].result.reason
    assert "deadline reached while the department was unreachable" in _parked_reason(broker)
    assert [(n.trouble, n.attempt, n.next_retry_at is None) for n in notices] == [
        (TroubleKind.RETRYING, 1, False),
        (TroubleKind.PARKED, 2, True),
    ]


def test_the_items_deadline_cuts_the_retry_budget(settings: Settings, catalog: Catalog) -> None:
    class PatientPolice(PoliceDownFor):
        # Days of retries by policy; the item's deadline has passed, so none are made.
        retry = replace(PoliceDownFor.retry, max_attempts=5, budget_seconds=300)

    broker = Broker(settings.broker_url)
    _fresh_queues(broker, catalog)
    PatientPolice.calls, PatientPolice.failures = 0, 100
    _publish_dispatches(broker, 1, respond_by=datetime.now(UTC) - timedelta(minutes=1))
    outcomes = _outcomes_of(PatientPolice(), broker)
    assert PatientPolice.calls == 1, "retried past the item's deadline"
    assert isinstance(outcomes[0].result, Unreachable), outcomes[0].result
    assert "deadline reached while the department was unreachable" in _parked_reason(broker)


@pytest.mark.connected
def test_heartbeats_continue_through_a_department_call_longer_than_the_heartbeat(
    amqp_url: str, catalog: Catalog
) -> None:
    broker = Broker(amqp_url, heartbeat=2)  # the broker drops a silent client after ~4 s
    _fresh_queues(broker, catalog)
    SlowPolice.seconds, SlowPolice.in_flight = 8.0, 0
    try:
        dispatched = _publish_dispatches(broker, 1)
        thread, stop = _start(AdapterWorker(SlowPolice(), broker, keyring=KEYRING))
        try:
            outcomes = _drain_outcomes(broker, 1, timeout=60)
            time.sleep(3)  # a redelivery, had the connection died, would answer again
            outcomes += _drain_outcomes(broker, 1, timeout=3)
        finally:
            stop.set()
            thread.join(30)
    finally:
        SlowPolice.seconds = 0.5
    # Answered exactly once.
    answers = [str(o.dispatch_id) for o in outcomes if str(o.dispatch_id) in dispatched]
    assert answers == list(dispatched), outcomes
    assert _queue_depth(broker) == 0


def test_a_retry_notice_tells_the_error_without_the_applicants_data(
    settings: Settings, catalog: Catalog
) -> None:
    applicant = dispatch_for(SERVICE, department="police").applicant
    assert isinstance(applicant, NaturalPerson)

    class QuotesTheFiling(PoliceDownFor):
        """A department whose error message quotes the applicant (some SOAP faults do)."""

        retry = replace(PoliceDownFor.retry, give_up_after_seconds=0)

        async def handle(self, item: object, ctx: AdapterContext) -> OutcomeResult:
            raise RetryableError(
                f"busy with {applicant.name} {applicant.id_number}, call 13812345678 " + "x" * 400
            )

    broker = Broker(settings.broker_url)
    _fresh_queues(broker, catalog)
    _publish_dispatches(broker, 1)
    notices: list[ItemTrouble] = []
    _outcomes_of(QuotesTheFiling(), broker, notices)
    assert [notice.trouble for notice in notices] == [TroubleKind.RETRYING, TroubleKind.PARKED]
    for notice in notices:
        error = notice.last_error
        assert applicant.name not in error and applicant.id_number not in error, error
        assert "13812345678" not in error and error.startswith("RetryableError: busy with ")
        assert len(error) <= OPERATOR_DETAIL_MAX


class StuckPolice(SlowPolice):
    seconds = 3600.0


def test_a_call_cut_off_by_a_stop_is_let_go_quietly(
    settings: Settings, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Stopped mid-call with no grace, the call's coroutine is closed once its task is
    collected, after the call thread's loop is gone: it settles nothing and raises
    nothing there (an exception would be lost in the collector's hook)."""
    broker = Broker(settings.broker_url)
    _fresh_queues(broker, catalog)
    StuckPolice.peak = StuckPolice.in_flight = 0
    _publish_dispatches(broker, 1)
    worker = AdapterWorker(StuckPolice(), broker, grace_seconds=0, keyring=KEYRING)
    thread, stop = _start(worker)
    eventually(
        lambda: StuckPolice.in_flight,
        lambda in_flight: in_flight == 1,
        timeout=10,
        every=0.01,
        message="the call did not start",
    )
    stop.set()
    thread.join(30)
    unraisable: list[BaseException | None] = []
    monkeypatch.setattr("sys.unraisablehook", lambda hook: unraisable.append(hook.exc_value))
    del worker
    gc.collect()
    assert unraisable == []
