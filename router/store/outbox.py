"""Transactional outbox: messages are written with the state change that causes them,
and published with publisher confirms once it has committed.

The process that commits publishes them (`OutboxPublisher`, the outbox pattern of
NServiceBus and MassTransit): right after the commit, on a thread of its own, signed,
pipelined, then marked sent. That saves a hop through another process and two
transactions per batch. The relay is the safety net: it publishes what the committer
could not — it crashed between the commit and the confirm, or the broker was away —
once a row has waited `SWEEP_AFTER`, which is far longer than a committer ever takes.

Whoever publishes a row (the committer, or one of several relays) first marks it sent
in a transaction that lasts until the broker's confirms (`claim_and_publish`): the
others skip it, so a committer stalled past the sweep age and a relay never both
publish it. Only a crash between the confirm and that commit publishes a row twice;
consumers deduplicate by message id.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from operator import attrgetter
from typing import Protocol

import structlog
from sqlalchemy import Select, inspect, select, update
from sqlalchemy.orm import Session

from contracts.errors import PublishFailed
from router.store import Database, OutboxRow, audit
from runtime.failpoints import failpoint
from runtime.messaging import Outgoing, Publisher
from runtime.messaging.backoff import Backoff
from runtime.messaging.signing import ROUTER_SIGNER, Keyring
from runtime.tracing import current_traceparent, publishing

log = structlog.get_logger(__name__)

SWEEP_AFTER = timedelta(seconds=60)
"""The relay publishes rows unsent this long: far past a committer's publish, even its
worst case (two connects of 5 s and two confirm waits of 10 s, `runtime.messaging.Publisher`)."""
_WRITTEN = "lianban_outbox_written"
"""`session.info` key: the rows this session has written, for `OutboxPublisher`."""


class BundleMessage(Protocol):
    """Any broker message of ours: its id deduplicates, its bundle id correlates."""

    @property
    def message_id(self) -> uuid.UUID: ...

    @property
    def bundle_id(self) -> uuid.UUID: ...

    def model_dump_json(self) -> str: ...


def enqueue(session: Session, *, exchange: str, routing_key: str, message: BundleMessage) -> None:
    """Add a message to the outbox inside the caller's transaction."""
    row = OutboxRow(
        exchange=exchange,
        routing_key=routing_key,
        message_id=str(message.message_id),
        correlation_id=str(message.bundle_id),
        body=message.model_dump_json().encode(),
        created_at=datetime.now(UTC),
        traceparent=current_traceparent(),
    )
    session.add(row)
    session.info.setdefault(_WRITTEN, []).append(row)


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
    publishers off the same row: PostgreSQL's row locks (`claimed` selects `FOR UPDATE
    SKIP LOCKED`), SQLite's write lock (taken at BEGIN) hold the other away until this
    commits, and it then finds the rows sent. Were this process to die before the
    commit, the rows are unsent again for the relay.
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


class OutboxPublisher:
    """Publishes each transaction's outbox rows right after it commits, from this process.

    The commit only hands the rows' ids to a queue; a thread of their own publishes
    them, so a request never waits on the broker. Rows it cannot publish (the broker
    away, this process gone) stay unsent for the relay; rows the relay swept first (a
    backlog older than its sweep age) it leaves alone.
    """

    def __init__(
        self,
        database: Database,
        publisher: Publisher,
        *,
        keyring: Keyring,
        batch_size: int = 200,
    ) -> None:
        self._database = database
        self._publisher = publisher
        self._keyring = keyring
        self._batch_size = batch_size
        self._committed: queue.SimpleQueue[list[int]] = queue.SimpleQueue()
        self._backoff = Backoff(0.2, 10.0)
        database.after_commit(self._take_committed)

    def _take_committed(self, session: Session) -> None:
        written = session.info.pop(_WRITTEN, None)
        if written:
            # A row a savepoint rolled back is no longer persistent: never published.
            self._committed.put([row.id for row in written if inspect(row).persistent])

    def run(self, stop: threading.Event) -> None:
        """Publish until stopped, then what was committed before the stop."""
        while not (stop.is_set() and self._committed.empty()):
            try:
                batch = self._next_batch(self._committed.get(timeout=1.0))
            except queue.Empty:
                continue
            try:
                self.publish(batch)
            except Exception as error:  # broker or database away: the relay will sweep
                left = len(batch) + self._drop_queued()
                delay = self._backoff.next_delay()
                log.warning(
                    "outbox.publish_failed",
                    error=repr(error),
                    left_to_relay=left,
                    retry_in=round(delay, 2),
                )
                if stop.wait(delay):
                    return  # stopping: what is committed meanwhile is the relay's too
            else:
                self._backoff.reset()

    def _next_batch(self, first: list[int]) -> list[int]:
        """The ids committed so far, up to about a batch."""
        batch = first
        while len(batch) < self._batch_size:
            try:
                batch.extend(self._committed.get_nowait())
            except queue.Empty:
                break
        return batch

    def _drop_queued(self) -> int:
        """Leave what is queued to the relay: while the broker is away the queue would
        only grow, and what it holds would reach the relay's age anyway."""
        dropped = 0
        while True:
            try:
                dropped += len(self._committed.get_nowait())
            except queue.Empty:
                return dropped

    def publish(self, ids: Sequence[int]) -> None:
        """Publish committed rows not yet sent and mark those the broker confirmed sent."""
        if not ids:
            return
        with self._database.transaction() as session:
            _, failure = claim_and_publish(
                session,
                self._publisher,
                self._keyring,
                select(OutboxRow.id)
                .where(OutboxRow.id.in_(ids), OutboxRow.sent_at.is_(None))
                .with_for_update(skip_locked=True),
            )
        if failure is not None:
            raise failure


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
    ) -> None:
        self._database = database
        self._publisher = publisher
        self._keyring = keyring
        self._sweep_after = sweep_after
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
