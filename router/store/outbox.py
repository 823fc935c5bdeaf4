"""Transactional outbox: messages are written with the state change that causes them,
and published with publisher confirms once it has committed.

The process that commits publishes them (`OutboxPublisher`, the outbox pattern of
NServiceBus and MassTransit): right after the commit, on a thread of its own, signed,
pipelined, then marked sent. That saves a hop through another process. The relay is the
safety net: it publishes what the committer could not — it crashed between the commit
and the confirm, or the broker was away — once a row has waited `SWEEP_AFTER`.

The two never publish the same row because each row is born leased to its committer: it
publishes a row only while the row is younger than `PUBLISH_WITHIN`, and its publish and
marking end long before the relay's sweep age. So it needs no claim before publishing;
after the confirms it marks the rows sent and audits them, many commits' rows in one
transaction (`MARK_EVERY`). Relays among themselves claim the rows they sweep
(`claim_and_publish`). A relay in the committer's own process (`lianban router`, the
embedded mode) also leaves alone the rows that committer holds, however its wall clock
moves (`OutboxPublisher.in_hand`). Only a crash between a confirm and the marking, or,
between processes, a stall or a clock step past the sweep age, publishes a row twice;
consumers deduplicate by message id.
"""

from __future__ import annotations

import math
import queue
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Any, Protocol

import structlog
from sqlalchemy import Select, Table, event, select, update
from sqlalchemy.orm import Session, SessionTransaction

from contracts.errors import PublishFailed
from router.store import Database, OutboxRow, audit
from runtime.failpoints import failpoint
from runtime.messaging import Outgoing, Publisher
from runtime.messaging.backoff import Backoff
from runtime.messaging.signing import ROUTER_SIGNER, Keyring
from runtime.tracing import current_traceparent, publishing

log = structlog.get_logger(__name__)

SWEEP_AFTER = timedelta(seconds=60)
"""The relay publishes rows unsent this long: far past a committer's lease and its worst
publish."""
PUBLISH_WITHIN = timedelta(seconds=20)
"""The committer's lease: it publishes a row only this young. Its worst publish (two
connects of 5 s and two confirm waits of 10 s, `runtime.messaging.Publisher`) and the
marking after it still end well before the relay may sweep the row, at `SWEEP_AFTER`."""
MARK_EVERY = 1.0
"""Seconds the committer gathers confirmed rows before marking them sent in one
transaction (or until it has a batch of them): a crash leaves at most these for the
relay to publish again. Marking later is safe: the relay sweeps a row only at
`SWEEP_AFTER`, and one in this process leaves rows in hand alone."""
HOLD_AT_MOST = 1_000
"""Rows the committer holds at most (queued, publishing, confirmed and not yet marked):
under a publish backlog, a commit's rows beyond it are left to the relay at once."""
_OUTBOX: Table = OutboxRow.__table__  # type: ignore[assignment]
_ENQUEUED = "lianban_outbox_enqueued"
"""`session.info` key: the rows this transaction enqueued, written before it commits."""
_WRITTEN = "lianban_outbox_written"
"""`session.info` key: the rows the commit under way has written, for `OutboxPublisher`."""
_INSERT_RETURNING_IDS = _OUTBOX.insert().returning(_OUTBOX.c.message_id, _OUTBOX.c.id)
"""Ids by message id: a multi-row INSERT's RETURNING may come in any order."""


class BundleMessage(Protocol):
    """Any broker message of ours: its id deduplicates, its bundle id correlates."""

    @property
    def message_id(self) -> uuid.UUID: ...

    @property
    def bundle_id(self) -> uuid.UUID: ...

    def model_dump_json(self) -> str: ...


def enqueue(session: Session, *, exchange: str, routing_key: str, message: BundleMessage) -> None:
    """Add a message to the outbox inside the caller's transaction: written just before
    it commits, with the other rows the transaction wrote (`_write_enqueued`)."""
    session.info.setdefault(_ENQUEUED, []).append(
        {
            "exchange": exchange,
            "routing_key": routing_key,
            "message_id": str(message.message_id),
            "correlation_id": str(message.bundle_id),
            "body": message.model_dump_json().encode(),
            "created_at": datetime.now(UTC),
            "traceparent": current_traceparent(),
        }
    )


@dataclass(frozen=True, slots=True)
class Unsent:
    """An outbox row to publish: what the broker and the audit log need of it."""

    id: int
    exchange: str
    routing_key: str
    message_id: str
    correlation_id: str
    body: bytes
    traceparent: str | None


_UNSENT_COLUMNS = (
    OutboxRow.id,
    OutboxRow.exchange,
    OutboxRow.routing_key,
    OutboxRow.message_id,
    OutboxRow.correlation_id,
    OutboxRow.body,
    OutboxRow.traceparent,
)


def publish_signed(
    publisher: Publisher, keyring: Keyring, rows: Sequence[Unsent]
) -> tuple[list[Unsent], PublishFailed | None]:
    """Publish rows signed by the router, pipelined; the rows the broker confirmed, and
    why the others were not."""
    failpoint("relay.before_publish")
    try:
        outgoing = [_outgoing(keyring, row) for row in rows]
        with publishing("relay.publish", outgoing, [row.traceparent for row in rows]) as traced:
            publisher.publish_many(traced)
    except PublishFailed as error:
        confirmed = [row for row, ok in zip(rows, error.confirmed, strict=True) if ok]
        failure: PublishFailed | None = error
    else:
        confirmed, failure = list(rows), None
    failpoint("relay.after_publish")
    return confirmed, failure


def claim_and_publish(
    session: Session,
    publisher: Publisher,
    keyring: Keyring,
    claimed: Select[int],
) -> tuple[int, PublishFailed | None]:
    """Mark the unsent rows among `claimed` sent, publish them, and audit those the
    broker confirmed; the others are marked unsent again. Returns how many it claimed,
    and why some were not confirmed: raise it after the commit, which keeps the
    confirmed ones sent, so an outage mid-batch does not publish them twice.

    Marking first, in the transaction that lasts until the confirms, is what keeps two
    relays off the same row: PostgreSQL's row locks (`claimed` selects `FOR UPDATE
    SKIP LOCKED`), SQLite's write lock (taken at BEGIN) hold the other away until this
    commits, and it then finds the rows sent. Were this process to die before the
    commit, the rows are unsent again for the next sweep.
    """
    marked = session.execute(
        update(OutboxRow)
        .where(OutboxRow.id.in_(claimed.scalar_subquery()), OutboxRow.sent_at.is_(None))
        .values(sent_at=datetime.now(UTC))
        .returning(*_UNSENT_COLUMNS)
        .execution_options(synchronize_session=False)
    )
    rows = sorted((Unsent(*row) for row in marked), key=attrgetter("id"))
    if not rows:
        return 0, None
    confirmed, failure = publish_signed(publisher, keyring, rows)
    if failure is not None:
        unconfirmed = {row.id for row in rows}.difference(row.id for row in confirmed)
        session.execute(
            update(OutboxRow)
            .where(OutboxRow.id.in_(unconfirmed))
            .values(sent_at=None)
            .execution_options(synchronize_session=False)
        )
    audit.record_sent(session, confirmed)
    return len(rows), failure


@dataclass(frozen=True, slots=True)
class Confirmed:
    """A row the broker confirmed, as kept until it is marked sent: what the marking and
    the audit log need of it, without its body."""

    id: int
    exchange: str
    routing_key: str
    message_id: str
    correlation_id: str

    @classmethod
    def of(cls, row: Unsent) -> Confirmed:
        return cls(row.id, row.exchange, row.routing_key, row.message_id, row.correlation_id)


def mark_sent(session: Session, confirmed: Sequence[Confirmed]) -> None:
    """Mark rows the broker confirmed sent and audit them. A row already sent was swept by
    the relay while its committer stalled past the lease: the relay has audited it."""
    marked = set(
        session.execute(
            update(_OUTBOX)  # Core, not the ORM's bulk UPDATE: no objects to synchronise
            .where(_OUTBOX.c.id.in_([row.id for row in confirmed]), _OUTBOX.c.sent_at.is_(None))
            .values(sent_at=datetime.now(UTC))
            .returning(_OUTBOX.c.id)
        ).scalars()
    )
    audit.record_sent(session, [row for row in confirmed if row.id in marked])


@dataclass(frozen=True, slots=True)
class _Committed:
    """One transaction's outbox rows, and when the oldest was written: their lease began then."""

    written_at: datetime
    rows: list[Unsent]


@event.listens_for(Session, "before_commit")
def _write_enqueued(session: Session) -> None:
    """One INSERT for the transaction's outbox rows, in no unit of work; with their ids,
    in the order enqueued, they are what the committer publishes and marks (`_WRITTEN`)."""
    enqueued: list[dict[str, Any]] | None = session.info.pop(_ENQUEUED, None)
    if enqueued:
        written = session.connection().execute(_INSERT_RETURNING_IDS, enqueued)
        ids = {message_id: row_id for message_id, row_id in written}
        session.info[_WRITTEN] = _Committed(
            min(row["created_at"] for row in enqueued),
            [
                Unsent(
                    ids[row["message_id"]],
                    row["exchange"],
                    row["routing_key"],
                    row["message_id"],
                    row["correlation_id"],
                    row["body"],
                    row["traceparent"],
                )
                for row in enqueued
            ],
        )


@event.listens_for(Session, "after_soft_rollback")
def _discard_enqueued(session: Session, _previous: SessionTransaction) -> None:
    session.info.pop(_ENQUEUED, None)
    session.info.pop(_WRITTEN, None)


class OutboxPublisher:
    """Publishes each transaction's outbox rows right after it commits, from this process.

    The commit only hands the rows to a queue; a thread of their own publishes them, so a
    request never waits on the broker, and marks the confirmed ones sent `mark_every`
    seconds later, many commits' rows in one transaction. Rows it cannot publish (the
    broker away, this process gone) stay unsent for the relay, and so do rows it reaches
    only past their lease (a backlog), which the relay may be sweeping.

    Its memory is bounded: it holds at most `hold_at_most` rows, and their bodies only
    until the broker confirms them. Under a backlog that large the broker is slower than
    the commits, and more rows held would only grow the process (each with its body) and
    reach their lease end queued; so a commit's rows beyond it are left to the relay at
    once, which publishes them from the table after `SWEEP_AFTER`, in id order.
    """

    def __init__(
        self,
        database: Database,
        publisher: Publisher,
        *,
        keyring: Keyring,
        publish_within: timedelta = PUBLISH_WITHIN,
        mark_every: float = MARK_EVERY,
        batch_size: int = 200,
        hold_at_most: int = HOLD_AT_MOST,
    ) -> None:
        self._database = database
        self._publisher = publisher
        self._keyring = keyring
        self._publish_within = publish_within
        self._mark_every = mark_every
        self._batch_size = batch_size
        self._hold_at_most = hold_at_most
        self._committed: queue.SimpleQueue[_Committed] = queue.SimpleQueue()
        self._confirmed: list[Confirmed] = []
        self._in_hand: set[int] = set()
        self._in_hand_lock = threading.Lock()
        self._mark_at = math.inf
        """`time.monotonic()` at which `_confirmed` is to be marked sent."""
        self._backoff = Backoff(0.2, 10.0)
        self._marking_backoff = Backoff(0.2, 10.0)
        database.after_commit(self._take_committed)

    def _take_committed(self, session: Session) -> None:
        committed: _Committed | None = session.info.pop(_WRITTEN, None)
        if committed is None:
            return
        with self._in_hand_lock:
            held = len(self._in_hand)
            taken = not held or held + len(committed.rows) <= self._hold_at_most
            if taken:
                self._in_hand.update(row.id for row in committed.rows)
        if taken:
            self._committed.put(committed)
        else:
            log.warning(
                "outbox.left_to_relay", rows=len(committed.rows), reason=f"{held} rows held"
            )

    def in_hand(self) -> frozenset[int]:
        """The rows committed here that it has neither marked sent nor left to the relay:
        a relay in this process leaves them alone whatever the wall clock says (stepped,
        or moved by a test travelling in time), which the lease alone cannot promise."""
        with self._in_hand_lock:
            return frozenset(self._in_hand)

    def _let_go(self, rows: Iterable[Unsent | Confirmed]) -> None:
        with self._in_hand_lock:
            self._in_hand.difference_update(row.id for row in rows)

    def run(self, stop: threading.Event) -> None:
        """Publish until stopped, then what was committed before the stop; mark what the
        broker confirmed sent."""
        while not (stop.is_set() and self._committed.empty()):
            try:
                committed = self._committed.get(timeout=self._until_marking())
            except queue.Empty:
                pass
            else:
                if not self._publish(self._next_batch(committed)):
                    self._mark_sent()  # what was confirmed before the outage
                    if stop.wait(self._backoff.next_delay()):
                        break  # stopping: what is committed meanwhile is the relay's too
            if time.monotonic() >= self._mark_at or len(self._confirmed) >= self._batch_size:
                self._mark_sent()
        self._mark_sent()

    def _until_marking(self) -> float:
        return min(1.0, max(0.0, self._mark_at - time.monotonic()))

    def _next_batch(self, first: _Committed) -> list[_Committed]:
        """The transactions committed so far, up to about a batch of rows."""
        batch, rows = [first], len(first.rows)
        while rows < self._batch_size:
            try:
                batch.append(self._committed.get_nowait())
            except queue.Empty:
                break
            rows += len(batch[-1].rows)
        return batch

    def _publish(self, batch: list[_Committed]) -> bool:
        """Publish the rows of `batch` still within their lease; keep those the broker
        confirmed for marking. False when the broker failed: what is queued is left to
        the relay, as the queue would only grow while the broker is away."""
        leased_after = datetime.now(UTC) - self._publish_within
        rows: list[Unsent] = []
        late: list[Unsent] = []
        for committed in batch:
            (rows if committed.written_at > leased_after else late).extend(committed.rows)
        if late:
            self._let_go(late)
            log.warning("outbox.left_to_relay", rows=len(late), reason="reached past their lease")
        if not rows:
            return True
        failure: Exception | None
        try:
            confirmed, failure = publish_signed(self._publisher, self._keyring, rows)
        except Exception as error:  # the relay will sweep them
            confirmed, failure = [], error
        if confirmed:
            self._confirmed.extend(map(Confirmed.of, confirmed))
            self._mark_at = min(self._mark_at, time.monotonic() + self._mark_every)
        if failure is None:
            self._backoff.reset()
            return True
        sent = {row.id for row in confirmed}
        self._let_go(row for row in rows if row.id not in sent)
        log.warning(
            "outbox.publish_failed",
            error=repr(failure),
            left_to_relay=len(rows) - len(confirmed) + self._drop_queued(),
        )
        return False

    def _drop_queued(self) -> int:
        dropped = 0
        while True:
            try:
                rows = self._committed.get_nowait().rows
            except queue.Empty:
                return dropped
            self._let_go(rows)
            dropped += len(rows)

    def _mark_sent(self) -> None:
        """Mark the confirmed rows sent, in one transaction; while the database is away,
        try again later (past their lease the relay publishes them again)."""
        if not self._confirmed:
            return
        try:
            with self._database.transaction() as session:
                mark_sent(session, self._confirmed)
        except Exception as error:
            delay = self._marking_backoff.next_delay()
            log.warning(
                "outbox.marking_failed",
                error=repr(error),
                rows=len(self._confirmed),
                retry_in=round(delay, 2),
            )
            self._mark_at = time.monotonic() + delay
        else:
            self._marking_backoff.reset()
            self._let_go(self._confirmed)
            self._confirmed, self._mark_at = [], math.inf


class Relay:
    """Publishes outbox rows left unsent for `sweep_after`, in id order, and marks them sent."""

    def __init__(
        self,
        database: Database,
        publisher: Publisher,
        *,
        keyring: Keyring,
        sweep_after: timedelta = SWEEP_AFTER,
        batch_size: int = 200,
        idle_seconds: float = 1.0,
        in_hand_here: Callable[[], Collection[int]] = frozenset,
    ) -> None:
        """`in_hand_here`: the rows this process's `OutboxPublisher` holds, left alone."""
        self._database = database
        self._publisher = publisher
        self._keyring = keyring
        self._sweep_after = sweep_after
        self._in_hand_here = in_hand_here
        self._batch_size = batch_size
        self._idle_seconds = idle_seconds
        self._backoff = Backoff(0.2, 10.0)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                published = self.publish_pending()
            except Exception as error:  # broker or database away: rows stay unsent, retry
                delay = self._backoff.next_delay()
                log.warning("relay.failed", error=repr(error), retry_in=round(delay, 2))
                stop.wait(delay)
                continue
            self._backoff.reset()
            if published < self._batch_size:
                stop.wait(self._idle_seconds)

    def publish_pending(self) -> int:
        """Publish one batch, pipelined; returns how many rows it claimed.

        A crash after the confirm and before the commit publishes the batch again:
        consumers deduplicate.
        """
        with self._database.transaction() as session:
            claimed, failure = claim_and_publish(
                session,
                self._publisher,
                self._keyring,
                select(OutboxRow.id)
                .where(
                    OutboxRow.sent_at.is_(None),
                    OutboxRow.created_at <= datetime.now(UTC) - self._sweep_after,
                    OutboxRow.id.not_in(self._in_hand_here()),
                )
                .order_by(OutboxRow.id)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True),
            )
        if failure is not None:
            raise failure
        return claimed


def _outgoing(keyring: Keyring, row: Unsent) -> Outgoing:
    signature = keyring.sign(
        ROUTER_SIGNER, body=row.body, message_id=row.message_id, correlation_id=row.correlation_id
    )
    return Outgoing(
        exchange=row.exchange,
        routing_key=row.routing_key,
        body=row.body,
        message_id=row.message_id,
        correlation_id=row.correlation_id,
        headers=signature,
    )
