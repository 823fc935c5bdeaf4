"""The adapter worker behind the broker: 64 calls in flight, and a stop that loses nothing."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import ClassVar

from kombu import Connection

from adapters.base import Adapter
from adapters.context import AdapterContext
from adapters.messaging import Broker, Outgoing, Publisher, declare_topology
from adapters.messaging.topology import department_queue, outcomes_queue
from adapters.testing.dispatches import dispatch_for
from adapters.worker import AdapterWorker
from contracts import topology
from contracts.catalog import Catalog
from contracts.messages import Decided, ItemOutcome, OutcomeResult
from router.settings import Settings

SERVICE = "birth_household_registration"


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


def _publish_dispatches(broker: Broker, count: int) -> set[str]:
    ids = set()
    with Publisher(broker) as publisher:
        for _ in range(count):
            dispatch = dispatch_for(SERVICE, department="police")
            publisher.publish(
                Outgoing(
                    exchange=topology.DISPATCH_EXCHANGE,
                    routing_key=topology.dispatch_routing_key("police", SERVICE),
                    body=dispatch.model_dump_json().encode(),
                    message_id=str(dispatch.message_id),
                    correlation_id=str(dispatch.bundle_id),
                )
            )
            ids.add(str(dispatch.message_id))
    return ids


def _drain_outcomes(broker: Broker, expected: int, timeout: float = 60) -> list[ItemOutcome]:
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
                outcomes.append(ItemOutcome.model_validate_json(message.body))
                message.ack()
        finally:
            queue.close()
    return outcomes


def _fresh_queues(broker: Broker, catalog: Catalog) -> None:
    """Declare the topology and empty the queues these tests read (the vhost is shared)."""
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
    thread, stop = _start(AdapterWorker(SlowPolice(), broker))
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
    thread, stop = _start(AdapterWorker(SlowPolice(), broker, grace_seconds=10))
    deadline = time.monotonic() + 10
    while SlowPolice.in_flight < 10 and time.monotonic() < deadline:
        time.sleep(0.01)
    stop.set()  # every call is mid-flight
    thread.join(30)

    outcomes = _drain_outcomes(broker, 10, timeout=10)
    assert {str(outcome.dispatch_id) for outcome in outcomes} == dispatched
    if not broker.is_memory:  # the in-memory transport does not redeliver unacked messages
        assert _queue_depth(broker) == 0, "an acknowledgement was lost"
