"""The correlator: applies department outcomes to bundle state, exactly once each.

Each outcome's message id is recorded (inbox) in the same transaction as the change it
causes, and the bundle row is locked for that transaction, so redeliveries and
competing correlator replicas change nothing twice.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum

import structlog
from kombu import Message
from pydantic import ValidationError

from contracts.catalog import Catalog
from contracts.messages import Accepted, Decided, ItemOutcome, ItemState
from router import states
from router.db import BundleRow, Database, InboxRow
from router.progress import advance, set_item_state
from router.timeline import department, record_event

log = structlog.get_logger(__name__)


class Applied(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"  # answers a superseded dispatch, or would move the state backwards
    UNKNOWN_BUNDLE = "unknown_bundle"


class Correlator:
    retry_pause_seconds = 1.0

    def __init__(
        self, database: Database, catalog: Catalog, on_commit: Callable[[], None] = lambda: None
    ) -> None:
        self._database = database
        self._catalog = catalog
        self._on_commit = on_commit

    def handle_message(self, body: bytes, message: Message) -> None:
        """Consumer callback: validate, apply, then acknowledge."""
        try:
            outcome = ItemOutcome.model_validate_json(body)
        except ValidationError as error:
            log.error("outcome.invalid", errors=error.error_count(), detail=str(error)[:500])
            message.reject()  # dead-lettered to the parking lot, never processed
            return
        try:
            result = self.apply(outcome)
        except Exception:
            # The database is away or failed: nothing was committed, so the outcome goes
            # back to the queue after a pause (a tight requeue loop would spin).
            log.exception("outcome.apply_failed", message_id=str(outcome.message_id))
            time.sleep(self.retry_pause_seconds)
            message.requeue()
            return
        if result is Applied.UNKNOWN_BUNDLE:
            message.reject()
            return
        message.ack()
        if result is Applied.APPLIED:
            self._on_commit()

    def apply(self, outcome: ItemOutcome) -> Applied:
        bound = log.bind(
            bundle_id=str(outcome.bundle_id),
            item=outcome.item,
            department=outcome.department,
            message_id=str(outcome.message_id),
        )
        with self._database.transaction() as session:
            bundle = session.get(BundleRow, outcome.bundle_id, with_for_update=True)
            if bundle is None:
                bound.error("outcome.unknown_bundle")
                return Applied.UNKNOWN_BUNDLE
            if session.get(InboxRow, str(outcome.message_id)) is not None:
                bound.info("outcome.duplicate")
                return Applied.DUPLICATE
            session.add(
                InboxRow(
                    message_id=str(outcome.message_id),
                    bundle_id=bundle.id,
                    processed_at=datetime.now(UTC),
                )
            )
            item = next((row for row in bundle.items if row.code == outcome.item), None)
            awaiting = item is not None and item.awaiting_prerequisites
            target = states.target_state(outcome.result, awaiting_prerequisites=awaiting)
            if (
                item is None
                or item.dispatch_id != outcome.dispatch_id
                or not states.allowed(
                    ItemState(item.state), target, awaiting_prerequisites=awaiting
                )
            ):
                record_event(
                    session,
                    bundle.id,
                    outcome.item,
                    "ignored",
                    f"stale outcome {target.value} (item is {item.state if item else 'unknown'})",
                    actor=department(outcome.department),
                )
                bound.warning("outcome.stale", target=target.value)
                return Applied.STALE
            result = outcome.result
            if isinstance(result, Decided):
                item.result = result.model_dump(mode="json")
            if isinstance(result, Accepted):
                item.receipt_no = result.receipt_no or item.receipt_no
                if result.tolerated_gaps:
                    item.tolerated_gaps = [
                        gap.model_dump(mode="json") for gap in result.tolerated_gaps
                    ]
            set_item_state(
                session,
                item,
                target,
                actor=department(outcome.department),
                reason=states.reason_of(result),
            )
            advance(session, bundle, self._catalog.bundle_types[bundle.bundle_type])
            bound.info("outcome.applied", state=target.value)
            return Applied.APPLIED
