"""Asks the courier about each post delivery (邮寄送达): first for its waybill (运单), then
for its tracking, until the parcel is signed for and the courier's proof is recorded.

The handover row is the outbox entry: written with the reply, in its transaction. The
sender claims rows whose `next_attempt_at` is due (SKIP LOCKED, so several relays may
run):

    state              asks      on an answer                       on a failure
    awaiting_waybill   ship      in_transit, tracked after          backoff, doubling to
                                 `tracking_seconds`                  10 min; last_error shown
    in_transit         track     signed: the courier's proof is      the same backoff
                                 recorded (the bundle may become
                                 delivered); else again later

A waybill is asked for under the handover's own reference as the idempotency key, so a
courier that issued one and whose answer was lost answers the same waybill when asked
again: one handover, one waybill.
"""

from __future__ import annotations

import threading
import uuid
from datetime import timedelta

import structlog
from sqlalchemy import select

from contracts.api import DeliveryProof, HandoverState, ProofSource, TimelineEvent
from contracts.courier import Shipment, TrackingStage
from router.channels.couriers import Courier, CourierUnavailable
from router.domain.handovers import handover_of, record_proof
from router.store import BundleRow, Database, HandoverRow
from router.store.timeline import Actor, record_event
from runtime import clock
from runtime.batches import drain_batches
from runtime.messaging.backoff import doubling_delay

log = structlog.get_logger(__name__)


def shipment_reference(row: HandoverRow) -> str:
    """The handover's key at the courier: `<bundle id>:<item or "bundle">`."""
    return f"{row.bundle_id}:{row.item or 'bundle'}"


class WaybillSender:
    def __init__(
        self,
        database: Database,
        courier: Courier,
        *,
        backoff_seconds: float = 1.0,
        max_backoff_seconds: float = 600.0,
        tracking_seconds: float = 600.0,
        idle_seconds: float = 0.2,
        batch_size: int = 20,
    ) -> None:
        self._database = database
        self._courier = courier
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._tracking = timedelta(seconds=tracking_seconds)
        self._idle = idle_seconds
        self._batch_size = batch_size

    @property
    def actor(self) -> str:
        return f"courier:{self._courier.name}"

    def run(self, stop: threading.Event) -> None:
        try:
            drain_batches(
                stop,
                self.ask_due,
                batch_size=self._batch_size,
                idle_seconds=self._idle,
                failed_event="waybills.failed",
            )
        finally:
            self._courier.close()

    def ask_due(self) -> int:
        """Ask the courier once about every due handover; returns how many were asked."""
        signed: list[tuple[uuid.UUID, DeliveryProof]] = []
        with self._database.transaction() as session:
            rows = session.scalars(
                select(HandoverRow)
                .where(HandoverRow.next_attempt_at <= clock.now())
                .order_by(HandoverRow.next_attempt_at)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                if row.state == HandoverState.AWAITING_WAYBILL:
                    if self._ship(row, session.get_one(BundleRow, row.bundle_id)):
                        record_event(
                            session,
                            row.bundle_id,
                            row.item or None,
                            TimelineEvent.WAYBILL_ISSUED,
                            f"{self._courier.name} {row.waybill_no}",
                            actor=Actor.ROUTER,
                        )
                elif (proof := self._track(row)) is not None:
                    signed.append((row.bundle_id, proof))
        # Recorded apart, taking the bundle's lock first as every other writer does.
        for bundle_id, proof in signed:
            with self._database.transaction() as session:
                bundle = session.get_one(BundleRow, bundle_id, with_for_update=True)
                refused = record_proof(
                    session, bundle, proof, self.actor, timeline_actor=Actor.ROUTER
                )
            if refused is not None:  # e.g. the platform recorded another proof first
                log.warning("courier.proof_refused", bundle_id=str(bundle_id), reason=refused)
        return len(rows)

    def _ship(self, row: HandoverRow, bundle: BundleRow) -> bool:
        """Whether the courier issued the waybill."""
        address = handover_of(bundle).address
        assert address is not None  # intake refuses a post delivery without one
        shipment = Shipment(
            reference=shipment_reference(row),
            project_no=bundle.project_no,
            contents=f"“一件事一次办”办理结果（{bundle.bundle_type}）",
            recipient=address,
        )
        row.courier_attempts += 1
        try:
            waybill = self._courier.ship(shipment)
        except CourierUnavailable as error:
            self._later(row, error, row.courier_attempts)
            return False
        now = clock.now()
        row.courier = self._courier.name
        row.waybill_no = waybill.waybill_no
        row.waybill_issued_at = now
        row.state = HandoverState.IN_TRANSIT.value
        row.next_attempt_at = now + self._tracking
        row.last_error = None
        log.info("waybill.issued", bundle_id=str(row.bundle_id), waybill_no=waybill.waybill_no)
        return True

    def _track(self, row: HandoverRow) -> DeliveryProof | None:
        """The courier's proof once the parcel is signed for; until then, None."""
        assert row.waybill_no is not None  # in transit: the waybill was issued
        try:
            tracking = self._courier.track(row.waybill_no)
        except CourierUnavailable as error:
            self._later(row, error, attempt=1)
            return None
        row.last_error = None
        if (
            tracking.stage is not TrackingStage.SIGNED
            or tracking.signer_name is None
            or tracking.signed_at is None
            or tracking.signature_ref is None
        ):
            row.next_attempt_at = clock.now() + self._tracking
            return None
        row.next_attempt_at = None  # asked no more, whatever the proof's fate
        return DeliveryProof(
            item=row.item or None,
            source=ProofSource.COURIER,
            recipient_name=tracking.signer_name,
            received_at=tracking.signed_at,
            signature_ref=tracking.signature_ref,
            waybill_no=row.waybill_no,
        )

    def _later(self, row: HandoverRow, error: CourierUnavailable, attempt: int) -> None:
        delay = doubling_delay(attempt, self._backoff, self._max_backoff)
        row.next_attempt_at = clock.now() + timedelta(seconds=delay)
        row.last_error = str(error)
        log.warning(
            "courier.failed", bundle_id=str(row.bundle_id), attempts=attempt, error=str(error)
        )
