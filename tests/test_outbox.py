"""The outbox is published by the process that commits it, right after the commit; the
relay sweeps only what that process could not publish; no message goes out twice in the
normal course, and each one published has its audit `sent` record."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import time_machine
from conftest import fresh_postgres_database, fresh_vhost
from harness import KEYRING, emptied_department_queue
from kombu import Message, Queue
from kombu.transport import memory
from sqlalchemy import event, select

from adapters.testing.dispatches import dispatch_for
from contracts import topology
from contracts.catalog import Catalog
from router.store import AuditRow, Database, OutboxRow
from router.store.audit import AuditEvent
from router.store.outbox import PUBLISH_WITHIN, SWEEP_AFTER, OutboxPublisher, Relay, enqueue
from runtime.messaging import Broker, Outgoing, Publisher
from runtime.messaging.declaration import department_queue
from runtime.messaging.envelope import Delivery
from runtime.messaging.signing import ROUTER_SIGNER

UNREACHABLE_BROKER = Broker("amqp://guest:guest@127.0.0.1:1//", connect_timeout=1)


@dataclass
class Wired:
    database: Database
    broker: Broker


@pytest.fixture(params=["memory", pytest.param("connected", marks=pytest.mark.connected)])
def wired(request: pytest.FixtureRequest, tmp_path: Path, catalog: Catalog) -> Iterator[Wired]:
    """A database and a broker of this test's own, police's queue declared and empty:
    SQLite and kombu's in-memory broker, or PostgreSQL and RabbitMQ."""
    if request.param == "memory":
        memory.Channel.queues.clear()
        yield from _wired(f"sqlite:///{tmp_path / 'lianban.db'}", "memory://", catalog)
    else:
        with fresh_postgres_database() as database_url, fresh_vhost() as amqp_url:
            yield from _wired(database_url, amqp_url, catalog)


def _wired(database_url: str, broker_url: str, catalog: Catalog) -> Iterator[Wired]:
    database = Database(database_url)
    database.migrate()
    yield Wired(database, emptied_department_queue(broker_url, catalog, "police"))
    database.dispose()


def _commit_dispatches(database: Database, count: int, *, then_fail: bool = False) -> list[str]:
    """`count` police dispatches written to the outbox in one transaction; their ids."""
    ids = []
    with database.transaction() as session:
        for _ in range(count):
            dispatch = dispatch_for("birth_household_registration", department="police")
            enqueue(
                session,
                exchange=topology.DISPATCH_EXCHANGE,
                routing_key=topology.dispatch_routing_key("police", dispatch.service),
                message=dispatch,
            )
            ids.append(str(dispatch.message_id))
        if then_fail:
            raise RuntimeError("rolled back")
    return ids


def _publish_what_was_committed(outbox: OutboxPublisher) -> None:
    """Run the publisher as a stopping process does: it returns once it has published
    everything committed before, or failed to."""
    stopped = threading.Event()
    stopped.set()
    outbox.run(stopped)


def _deliveries(broker: Broker) -> list[Message]:
    """Every message on police's queue, taken off it."""
    with broker.connect() as connection:
        queue: Queue = department_queue("police")(connection.default_channel)
        messages = []
        while (message := queue.get(no_ack=True)) is not None:
            messages.append(message)
        return messages


def _sent_records(database: Database, message_ids: list[str]) -> list[str]:
    with database.transaction() as session:
        return list(
            session.scalars(
                select(AuditRow.message_id).where(
                    AuditRow.event == AuditEvent.SENT.value, AuditRow.message_id.in_(message_ids)
                )
            )
        )


def _unsent(database: Database, message_ids: list[str]) -> list[str]:
    with database.transaction() as session:
        return list(
            session.scalars(
                select(OutboxRow.message_id).where(
                    OutboxRow.sent_at.is_(None), OutboxRow.message_id.in_(message_ids)
                )
            )
        )


def test_the_committing_process_publishes_what_it_committed_signed_once_and_audited(
    wired: Wired,
) -> None:
    outbox = OutboxPublisher(wired.database, Publisher(wired.broker), keyring=KEYRING)
    committed = _commit_dispatches(wired.database, 3)
    with pytest.raises(RuntimeError):
        _commit_dispatches(wired.database, 1, then_fail=True)

    _publish_what_was_committed(outbox)  # no relay runs

    delivered = _deliveries(wired.broker)
    assert sorted(message.properties["message_id"] for message in delivered) == sorted(committed)
    assert {KEYRING.verify_delivery(Delivery.of(message)) for message in delivered} == {
        ROUTER_SIGNER
    }
    assert _unsent(wired.database, committed) == []
    assert sorted(_sent_records(wired.database, committed)) == sorted(committed)


def test_what_the_committer_could_not_publish_waits_for_the_relay_which_sends_it_once(
    wired: Wired,
) -> None:
    outbox = OutboxPublisher(wired.database, Publisher(UNREACHABLE_BROKER), keyring=KEYRING)
    committed = _commit_dispatches(wired.database, 2)
    _publish_what_was_committed(outbox)  # the broker is away: nothing published
    assert _deliveries(wired.broker) == []
    assert sorted(_unsent(wired.database, committed)) == sorted(committed)
    assert _sent_records(wired.database, committed) == []

    relay = Relay(wired.database, Publisher(wired.broker), keyring=KEYRING)
    assert relay.publish_pending() == 0, "the relay took rows still the committer's"
    with time_machine.travel(datetime.now(UTC) + SWEEP_AFTER):
        assert relay.publish_pending() == 2
        assert relay.publish_pending() == 0

    delivered = _deliveries(wired.broker)
    assert sorted(message.properties["message_id"] for message in delivered) == sorted(committed)
    assert _unsent(wired.database, committed) == []
    assert sorted(_sent_records(wired.database, committed)) == sorted(committed)


def _commit_with_both_running(
    wired: Wired,
    relay: Relay,
    batches: int,
    dispatches_per_batch: int,
    publish_within: timedelta = PUBLISH_WITHIN,
) -> list[str]:
    """Commit `batches` transactions of dispatches while the committing process's
    publisher and `relay` both run; their message ids, once both have stopped."""
    outbox = OutboxPublisher(
        wired.database, Publisher(wired.broker), keyring=KEYRING, publish_within=publish_within
    )
    stop = threading.Event()
    threads = [threading.Thread(target=role.run, args=(stop,)) for role in (outbox, relay)]
    for thread in threads:
        thread.start()
    try:
        return [
            message_id
            for _ in range(batches)
            for message_id in _commit_dispatches(wired.database, dispatches_per_batch)
        ]
    finally:
        stop.set()
        for thread in threads:
            thread.join()


def test_with_committer_and_relay_running_each_message_is_published_and_audited_once(
    wired: Wired,
) -> None:
    relay = Relay(wired.database, Publisher(wired.broker), keyring=KEYRING, idle_seconds=0.01)
    committed = _commit_with_both_running(wired, relay, batches=5, dispatches_per_batch=2)

    delivered = _deliveries(wired.broker)
    assert sorted(message.properties["message_id"] for message in delivered) == sorted(committed)
    assert sorted(_sent_records(wired.database, committed)) == sorted(committed)


def test_a_committer_whose_backlog_the_relay_may_sweep_never_publishes_a_row_twice(
    wired: Wired,
) -> None:
    """The committer's rows are already old enough to sweep (a sweep age of zero, and a
    lease as short, stand for a backlog older than `SWEEP_AFTER`): the relay races the
    committer for every row, and each is still published and audited once."""
    relay = Relay(
        wired.database,
        Publisher(wired.broker),
        keyring=KEYRING,
        sweep_after=timedelta(0),
        batch_size=3,
        idle_seconds=0.0,
    )
    committed = _commit_with_both_running(
        wired, relay, batches=20, dispatches_per_batch=3, publish_within=timedelta(0)
    )
    while relay.publish_pending():  # what the stopped relay had not reached yet
        pass

    delivered = [message.properties["message_id"] for message in _deliveries(wired.broker)]
    assert sorted(delivered) == sorted(committed)
    assert sorted(_sent_records(wired.database, committed)) == sorted(committed)


def test_a_row_the_committer_reaches_past_its_lease_is_left_to_the_relay(wired: Wired) -> None:
    outbox = OutboxPublisher(wired.database, Publisher(wired.broker), keyring=KEYRING)
    (message_id,) = _commit_dispatches(wired.database, 1)
    relay = Relay(wired.database, Publisher(wired.broker), keyring=KEYRING)

    with time_machine.travel(datetime.now(UTC) + PUBLISH_WITHIN):
        _publish_what_was_committed(outbox)  # a backlog: the relay may take the row soon
        assert _deliveries(wired.broker) == []
        assert _unsent(wired.database, [message_id]) == [message_id]
    with time_machine.travel(datetime.now(UTC) + SWEEP_AFTER):
        assert relay.publish_pending() == 1

    assert [message.properties["message_id"] for message in _deliveries(wired.broker)] == [
        message_id
    ]
    assert _sent_records(wired.database, [message_id]) == [message_id]


class _SweptAfterConfirms(Publisher):
    """A committer's publisher whose process stalls past the sweep age once the broker
    has confirmed, while `relay` sweeps; how many rows it took each time, in `swept`."""

    def __init__(self, broker: Broker) -> None:
        super().__init__(broker)
        self.relay: Relay | None = None
        self.swept: list[int] = []

    def publish_many(self, messages: Sequence[Outgoing]) -> None:
        super().publish_many(messages)
        assert self.relay is not None
        with time_machine.travel(datetime.now(UTC) + SWEEP_AFTER):
            self.swept.append(self.relay.publish_pending())


def test_a_row_the_relay_swept_while_the_committer_stalled_is_audited_once(
    wired: Wired,
) -> None:
    """The relay of another process sees only the rows' age."""
    publisher = _SweptAfterConfirms(wired.broker)
    outbox = OutboxPublisher(wired.database, publisher, keyring=KEYRING)
    publisher.relay = Relay(wired.database, Publisher(wired.broker), keyring=KEYRING)
    committed = _commit_dispatches(wired.database, 2)

    _publish_what_was_committed(outbox)

    assert publisher.swept == [2]
    delivered = [message.properties["message_id"] for message in _deliveries(wired.broker)]
    assert sorted(delivered) == sorted(committed * 2), "a stall past the lease: consumers dedupe"
    assert _unsent(wired.database, committed) == []
    assert sorted(_sent_records(wired.database, committed)) == sorted(committed)


def test_a_relay_in_the_committers_process_leaves_its_rows_alone_however_the_clock_moves(
    wired: Wired,
) -> None:
    """Between the confirms and the marking the rows are unsent and, to a clock moved on
    (a test travelling in time, a clock stepped), past the sweep age: a relay in the same
    process asks the committer which rows it holds, and sends none of them twice."""
    publisher = _SweptAfterConfirms(wired.broker)
    outbox = OutboxPublisher(wired.database, publisher, keyring=KEYRING)
    publisher.relay = Relay(
        wired.database, Publisher(wired.broker), keyring=KEYRING, in_hand_here=outbox.in_hand
    )
    committed = _commit_dispatches(wired.database, 2)

    _publish_what_was_committed(outbox)

    assert publisher.swept == [0]
    delivered = [message.properties["message_id"] for message in _deliveries(wired.broker)]
    assert sorted(delivered) == sorted(committed)
    assert _unsent(wired.database, committed) == []
    assert sorted(_sent_records(wired.database, committed)) == sorted(committed)
    assert outbox.in_hand() == frozenset(), "marked sent: the relay's again, were it unsent"


def test_a_transactions_messages_are_one_insert_and_published_in_the_order_enqueued(
    wired: Wired,
) -> None:
    """Written set-based at commit, off the unit of work: one INSERT for all the rows a
    transaction enqueued, whose ids come back in the order enqueued."""
    inserts: list[str] = []

    def keep(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("INSERT"):
            inserts.append(" ".join(statement.split()[:3]))

    outbox = OutboxPublisher(wired.database, Publisher(wired.broker), keyring=KEYRING)
    event.listen(wired.database.engine, "before_cursor_execute", keep)
    try:
        committed = _commit_dispatches(wired.database, 3)
    finally:
        event.remove(wired.database.engine, "before_cursor_execute", keep)
    _publish_what_was_committed(outbox)

    assert inserts == ["INSERT INTO outbox"]
    assert [message.properties["message_id"] for message in _deliveries(wired.broker)] == committed


def test_a_committer_holds_so_many_rows_at_most_and_leaves_the_others_to_the_relay(
    wired: Wired,
) -> None:
    """Under a publish backlog its memory stays bounded: a commit's rows beyond what it
    may hold are the relay's at once (not in hand: a relay in its process sweeps them)."""
    outbox = OutboxPublisher(
        wired.database, Publisher(wired.broker), keyring=KEYRING, hold_at_most=3
    )
    held = _commit_dispatches(wired.database, 2)
    left = _commit_dispatches(wired.database, 2)
    held += _commit_dispatches(wired.database, 1)
    assert len(outbox.in_hand()) == 3

    _publish_what_was_committed(outbox)

    delivered = _deliveries(wired.broker)
    assert sorted(message.properties["message_id"] for message in delivered) == sorted(held)
    assert sorted(_unsent(wired.database, held + left)) == sorted(left)
    assert outbox.in_hand() == frozenset()
