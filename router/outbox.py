"""Transactional outbox: messages are written with the state change that causes them,
and a relay publishes them with publisher confirms.

Several relays may run at once against PostgreSQL: each claims rows with
`FOR UPDATE SKIP LOCKED`, so none publishes a row another is publishing.
"""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime
from typing import Protocol

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from adapters.messaging import Outgoing, Publisher
from router.db import Database, OutboxRow

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
    session.add(
        OutboxRow(
            exchange=exchange,
            routing_key=routing_key,
            message_id=str(message.message_id),
            correlation_id=str(message.bundle_id),
            body=message.model_dump_json().encode(),
            created_at=datetime.now(UTC),
        )
    )


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
    ) -> None:
        self._database = database
        self._publisher = publisher
        self._batch_size = batch_size
        self._idle_seconds = idle_seconds
        self.wake = wake or threading.Event()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                published = self.publish_pending()
            except Exception as error:  # broker or database away: rows stay unsent, retry
                log.warning("relay.failed", error=repr(error))
                published = 0
                stop.wait(1.0)
            if published < self._batch_size:
                self.wake.wait(self._idle_seconds)
                self.wake.clear()

    def publish_pending(self) -> int:
        """Publish one batch; returns how many rows were published.

        Rows published before a failure are still marked sent, so a broker outage
        mid-batch does not publish them a second time.
        """
        failure: Exception | None = None
        with self._database.transaction() as session:
            rows = session.scalars(
                select(OutboxRow)
                .where(OutboxRow.sent_at.is_(None))
                .order_by(OutboxRow.id)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            published = 0
            for row in rows:
                try:
                    self._publisher.publish(
                        Outgoing(
                            exchange=row.exchange,
                            routing_key=row.routing_key,
                            body=row.body,
                            message_id=row.message_id,
                            correlation_id=row.correlation_id,
                        )
                    )
                except Exception as error:
                    failure = error
                    break
                row.sent_at = datetime.now(UTC)
                published += 1
        if failure is not None:
            raise failure
        return published
