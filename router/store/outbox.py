"""Transactional outbox: messages are written with the state change that causes them,
and a relay publishes them with publisher confirms.

Several relays may run at once against PostgreSQL: each claims rows with
`FOR UPDATE SKIP LOCKED`, so none publishes a row another is publishing.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol

import structlog
from sqlalchemy import select, update
from sqlalchemy.orm import Session

from contracts.errors import PublishFailed
from router.store import Database, OutboxRow, audit
from router.store.outbox_wakeup import notify_relays
from runtime.failpoints import failpoint
from runtime.messaging import Outgoing, Publisher
from runtime.messaging.backoff import Backoff
from runtime.messaging.signing import ROUTER_SIGNER, Keyring
from runtime.tracing import current_traceparent, publishing

log = structlog.get_logger(__name__)


class BundleMessage(Protocol):
    """Any broker message of ours: its id deduplicates, its bundle id correlates."""

    @property
    def message_id(self) -> uuid.UUID: ...

    @property
    def bundle_id(self) -> uuid.UUID: ...

    def model_dump_json(self) -> str: ...


def enqueue(session: Session, *, exchange: str, routing_key: str, message: BundleMessage) -> None:
    """Add a message to the outbox inside the caller's transaction."""
    notify_relays(session)
    session.add(
        OutboxRow(
            exchange=exchange,
            routing_key=routing_key,
            message_id=str(message.message_id),
            correlation_id=str(message.bundle_id),
            body=message.model_dump_json().encode(),
            created_at=datetime.now(UTC),
            traceparent=current_traceparent(),
        )
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


def mark_sent(session: Session, confirmed: Sequence[Unsent]) -> None:
    """Mark rows the broker confirmed sent, and audit each: one UPDATE, one INSERT."""
    if not confirmed:
        return
    session.execute(
        update(OutboxRow)
        .where(OutboxRow.id.in_([row.id for row in confirmed]))
        .values(sent_at=datetime.now(UTC))
        .execution_options(synchronize_session=False)
    )
    audit.record_sent(session, confirmed)


class Relay:
    """Publishes unsent outbox rows in id order and marks them sent."""

    def __init__(
        self,
        database: Database,
        publisher: Publisher,
        *,
        batch_size: int = 200,
        idle_seconds: float = 0.2,
        wake: threading.Event | None = None,
        keyring: Keyring,
    ) -> None:
        self._database = database
        self._publisher = publisher
        self._keyring = keyring
        self._batch_size = batch_size
        self._idle_seconds = idle_seconds
        self.wake = wake or threading.Event()
        self._backoff = Backoff(0.2, 10.0)

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                published = self.publish_pending()
            except Exception as error:  # broker or database away: rows stay unsent, retry
                delay = self._backoff.next_delay()
                log.warning("relay.failed", error=repr(error), retry_in=round(delay, 2))
                published = 0
                stop.wait(delay)
            else:
                self._backoff.reset()
            if published < self._batch_size:
                self.wake.wait(self._idle_seconds)
                self.wake.clear()

    def publish_pending(self) -> int:
        """Publish one batch, pipelined; returns how many rows the broker confirmed.

        Every confirmed row is marked sent even when others in the batch failed, so an
        outage mid-batch does not publish them a second time. A crash after the confirm
        and before this commit publishes the batch again: consumers deduplicate.
        """
        failure: PublishFailed | None = None
        with self._database.transaction() as session:
            rows = [
                Unsent(*row)
                for row in session.execute(
                    select(*_UNSENT_COLUMNS)
                    .where(OutboxRow.sent_at.is_(None))
                    .order_by(OutboxRow.id)
                    .limit(self._batch_size)
                    .with_for_update(skip_locked=True)
                )
            ]
            if not rows:
                return 0
            failpoint("relay.before_publish")
            try:
                outgoing = [self._outgoing(row) for row in rows]
                parents = [row.traceparent for row in rows]
                with publishing("relay.publish", outgoing, parents) as traced:
                    self._publisher.publish_many(traced)
                confirmed = [True] * len(rows)
            except PublishFailed as error:
                failure = error
                confirmed = error.confirmed
            failpoint("relay.after_publish")
            mark_sent(session, [row for row, ok in zip(rows, confirmed, strict=True) if ok])
        if failure is not None:
            raise failure
        return len(rows)

    def _outgoing(self, row: Unsent) -> Outgoing:
        signature = self._keyring.sign(
            ROUTER_SIGNER,
            body=row.body,
            message_id=row.message_id,
            correlation_id=row.correlation_id,
        )
        return Outgoing(
            exchange=row.exchange,
            routing_key=row.routing_key,
            body=row.body,
            message_id=row.message_id,
            correlation_id=row.correlation_id,
            headers=signature,
        )
