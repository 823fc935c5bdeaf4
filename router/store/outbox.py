"""Transactional outbox: messages are written with the state change that causes them,
and published with publisher confirms once it has committed.

The process that commits publishes them (`OutboxPublisher`, the outbox pattern of
NServiceBus and MassTransit): right after the commit, on a thread of its own, signed,
pipelined, then marked sent. That saves a hop through another process and two
transactions per batch. The relay is the safety net: it publishes what the committer
could not — it crashed between the commit and the confirm, or the broker was away —
once a row has waited `SWEEP_AFTER`, which is far longer than a committer ever takes,
so the two do not publish the same row in the normal course. Were they to (a committer
stalled past it), consumers deduplicate by message id.

Several relays may run at once against PostgreSQL: each claims rows with
`FOR UPDATE SKIP LOCKED`, so none publishes a row another is publishing.
"""

from __future__ import annotations

import queue
import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Protocol

import structlog
from sqlalchemy import inspect, select, update
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

    @classmethod
    def of(cls, row: OutboxRow) -> Unsent:
        return cls(
            row.id,
            row.exchange,
            row.routing_key,
            row.message_id,
            row.correlation_id,
            row.body,
            row.traceparent,
        )


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


def mark_sent(session: Session, confirmed: Sequence[Unsent]) -> None:
    """Mark rows the broker confirmed sent, and audit each: one UPDATE, one INSERT. A
    row already marked (by a relay that swept it) is left as it is, audited once."""
    if not confirmed:
        return
    marked = set(
        session.scalars(
            update(OutboxRow)
            .where(OutboxRow.id.in_([row.id for row in confirmed]), OutboxRow.sent_at.is_(None))
            .values(sent_at=datetime.now(UTC))
            .returning(OutboxRow.id)
            .execution_options(synchronize_session=False)
        )
    )
    audit.record_sent(session, [row for row in confirmed if row.id in marked])


class OutboxPublisher:
    """Publishes each transaction's outbox rows right after it commits, from this process.

    The commit only hands the rows to a queue; a thread of their own publishes them, so
    a request never waits on the broker. Rows it cannot publish (the broker away, this
    process gone) stay unsent for the relay.
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
        self._committed: queue.SimpleQueue[list[Unsent]] = queue.SimpleQueue()
        self._backoff = Backoff(0.2, 10.0)
        database.after_commit(self._take_committed)

    def _take_committed(self, session: Session) -> None:
        written = session.info.pop(_WRITTEN, None)
        if written:
            # A row a savepoint rolled back is no longer persistent: never published.
            rows = [Unsent.of(row) for row in written if inspect(row).persistent]
            self._committed.put(rows)

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

    def _next_batch(self, first: list[Unsent]) -> list[Unsent]:
        """The rows committed so far, up to about a batch."""
        batch = first
        while len(batch) < self._batch_size:
            try:
                batch = batch + self._committed.get_nowait()
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

    def publish(self, rows: Sequence[Unsent]) -> None:
        """Publish committed rows and mark those the broker confirmed sent."""
        if not rows:
            return
        confirmed, failure = publish_signed(self._publisher, self._keyring, rows)
        if confirmed:
            with self._database.transaction() as session:
                mark_sent(session, confirmed)
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

        Every confirmed row is marked sent even when others in the batch failed, so an
        outage mid-batch does not publish them a second time. A crash after the confirm
        and before this commit publishes the batch again: consumers deduplicate.
        """
        with self._database.transaction() as session:
            rows = [
                Unsent(*row)
                for row in session.execute(
                    select(*_UNSENT_COLUMNS)
                    .where(
                        OutboxRow.sent_at.is_(None),
                        OutboxRow.created_at <= datetime.now(UTC) - self._sweep_after,
                    )
                    .order_by(OutboxRow.id)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ]
            if not rows:
                return 0
            confirmed, failure = publish_signed(self._publisher, self._keyring, rows)
            mark_sent(session, confirmed)
        if failure is not None:
            raise failure
        return len(rows)


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
