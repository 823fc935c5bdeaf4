"""Sends the applicant's messages (短信告知) through a notifier, from their rows.

A message row is written in the transaction that issued its notice (router.channels.
notice_desk), so it exists exactly when the notice does. This sender claims due rows
(SKIP LOCKED, so several may run), hands each to the notifier under its id as the
idempotency key, and marks it sent with a timeline step in the same transaction; a
refusal is retried with exponential backoff for as long as it takes. A crash after the
notifier took a message and before the commit sends it again under the same id, which
the gateway drops: the applicant gets it once.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.api import TimelineEvent
from contracts.personal_data import mask_phone
from router.channels.notifiers import ApplicantMessage, Notifier, NotifierRefused
from router.store import ApplicantMessageRow, Database
from router.store.timeline import Actor, record_event
from runtime import clock
from runtime.batches import drain_batches
from runtime.messaging.backoff import doubling_delay

log = structlog.get_logger(__name__)


class ApplicantMessageSender:
    def __init__(
        self,
        database: Database,
        notifier: Notifier,
        *,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 600.0,
        idle_seconds: float = 0.2,
        batch_size: int = 50,
    ) -> None:
        self._database = database
        self._notifier = notifier
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._idle = idle_seconds
        self._batch_size = batch_size

    def run(self, stop: threading.Event) -> None:
        try:
            drain_batches(
                stop,
                self.send_due,
                batch_size=self._batch_size,
                idle_seconds=self._idle,
                failed_event="applicant_messages.failed",
            )
        finally:
            self._notifier.close()

    def send_due(self) -> int:
        """Attempt every due message of this notifier's channel once; how many."""
        with self._database.transaction() as session:
            rows = session.scalars(
                select(ApplicantMessageRow)
                .where(
                    ApplicantMessageRow.sent_at.is_(None),
                    ApplicantMessageRow.channel == self._notifier.channel,
                    ApplicantMessageRow.next_attempt_at <= clock.now(),
                )
                .order_by(ApplicantMessageRow.next_attempt_at)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                self._attempt(session, row)
            return len(rows)

    def _attempt(self, session: Session, row: ApplicantMessageRow) -> None:
        row.attempts += 1
        recipient = mask_phone(row.recipient)
        try:
            self._notifier.send(ApplicantMessage(id=row.id, recipient=row.recipient, text=row.text))
        except NotifierRefused as refused:
            delay = doubling_delay(row.attempts, self._backoff, self._max_backoff)
            row.next_attempt_at = clock.now() + timedelta(seconds=delay)
            row.last_error = str(refused)
            log.warning(
                "applicant_message.refused",
                bundle_id=str(row.bundle_id),
                item=row.item,
                recipient=recipient,
                attempts=row.attempts,
                error=str(refused),
            )
            return
        row.sent_at = clock.now()
        row.last_error = None
        record_event(
            session,
            row.bundle_id,
            row.item,
            TimelineEvent.APPLICANT_MESSAGED,
            f"{row.channel} → {recipient}：{row.text}",
            actor=Actor.ROUTER,
        )
        log.info("applicant_message.sent", bundle_id=str(row.bundle_id), recipient=recipient)
