"""The correlator: applies department outcomes to bundle state, exactly once each.

Each outcome's message id is recorded (inbox) in the same transaction as the change it
causes, and the bundle row is locked for that transaction, so redeliveries and
competing correlator replicas change nothing twice.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from enum import StrEnum

import structlog
from kombu import Message
from pydantic import ValidationError
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError

from adapters.failpoints import failpoint
from adapters.messaging import Refused
from adapters.messaging.signing import ROUTER, Keyring
from adapters.tracing import handling
from contracts.catalog import Catalog
from contracts.errors import TransientError
from contracts.messages import Accepted, Decided, ItemOutcome, ItemState
from router import audit, states
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
    def __init__(
        self,
        database: Database,
        catalog: Catalog,
        on_commit: Callable[[], None] = lambda: None,
        *,
        keyring: Keyring,
    ) -> None:
        self._database = database
        self._catalog = catalog
        self._on_commit = on_commit
        self._keyring = keyring

    def handle_message(self, body: bytes, message: Message) -> None:
        """Consumer callback: validate, apply, then acknowledge.

        The consumer loop parks what is refused (recorded in the audit log first) and
        holds the message (no requeue, no delivery count spent) while the database is
        unreachable.
        """
        try:
            self._handle(body, message)
        except Refused as refusal:
            self._record_refusal(message, refusal)
            raise

    def _record_refusal(self, message: Message, refusal: Refused) -> None:
        try:
            with self._database.transaction() as session:
                audit.record(
                    session,
                    actor=ROUTER,
                    event=audit.AuditEvent.REFUSED,
                    outcome="parked",
                    bundle_id=_uuid_or_none(message.properties.get("correlation_id")),
                    message_id=message.properties.get("message_id"),
                    detail=refusal.reason,
                )
        except (OperationalError, InterfaceError) as error:
            # Not parked before it is recorded: held until the database is back.
            raise TransientError(f"database unavailable: {error.orig!r}") from error

    def _handle(self, body: bytes, message: Message) -> None:
        signer = self._keyring.verify_delivery(body, message)
        try:
            outcome = ItemOutcome.model_validate_json(body)
        except ValidationError as error:
            raise Refused(f"breaks the outcome contract: {error}"[:500]) from error
        # A department answers for itself only; the router signs what its manual work
        # queue decided on a department's behalf.
        if signer not in (outcome.department, ROUTER):
            raise Refused(f"an outcome of {outcome.department} signed by {signer}")
        try:
            # The messages this outcome causes are written under this span: the next
            # dispatches and the reply stay in the bundle's trace.
            with handling("correlator.apply", outcome, message.headers):
                result = self.apply(outcome)
        except (OperationalError, InterfaceError) as error:
            # Connection-level trouble: nothing was committed; try the same message again.
            raise TransientError(f"database unavailable: {error.orig!r}") from error
        except DBAPIError as error:
            # Data the database refuses (too long, invalid) would fail every time.
            raise Refused(f"the database refuses this outcome: {error.orig!r}"[:500]) from error
        if result is Applied.UNKNOWN_BUNDLE:
            raise Refused(f"no bundle {outcome.bundle_id}")
        failpoint("correlator.after_commit")
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
            session.flush()
            failpoint("correlator.before_commit")
            audit.record_decided(session, outcome, target)
            bound.info("outcome.applied", state=target.value)
            return Applied.APPLIED


def _uuid_or_none(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
