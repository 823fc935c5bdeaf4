"""Asks the courier for a waybill (运单) for each post delivery (邮寄送达) that is ready.

The handover row is the outbox entry: written with the reply, in its transaction. The
sender claims due `awaiting_waybill` rows (SKIP LOCKED, so several relays may run), asks
the courier under the handover's own reference as the idempotency key, and records the
waybill; a failure is logged, shown on the handover, and retried with exponential
backoff for as long as it takes. A courier that issued a waybill and whose answer was
lost is asked again under the same reference and answers the same waybill: one handover,
one waybill.
"""

from __future__ import annotations

import threading
from datetime import timedelta

import structlog
from sqlalchemy import select

from contracts.api import HandoverState, TimelineEvent
from contracts.courier import Shipment
from router.channels.couriers import Courier, CourierUnavailable
from router.domain.handovers import handover_of
from router.store import BundleRow, Database, HandoverRow
from router.store.timeline import Actor, record_event
from runtime import clock

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
        idle_seconds: float = 0.2,
        batch_size: int = 20,
    ) -> None:
        self._database = database
        self._courier = courier
        self._backoff = backoff_seconds
        self._max_backoff = max_backoff_seconds
        self._idle = idle_seconds
        self._batch_size = batch_size

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    asked = self.ask_due()
                except Exception as error:  # the database is away: try again shortly
                    log.warning("waybills.failed", error=repr(error))
                    asked = 0
                if asked < self._batch_size:
                    stop.wait(self._idle)
        finally:
            self._courier.close()

    def ask_due(self) -> int:
        """Ask the courier once for every due waybill; returns how many were asked for."""
        now = clock.now()
        with self._database.transaction() as session:
            rows = session.scalars(
                select(HandoverRow)
                .where(
                    HandoverRow.state == HandoverState.AWAITING_WAYBILL,
                    HandoverRow.next_attempt_at <= now,
                )
                .order_by(HandoverRow.next_attempt_at)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                bundle = session.get_one(BundleRow, row.bundle_id)
                self._ask(row, bundle)
                if row.waybill_no is not None:
                    record_event(
                        session,
                        row.bundle_id,
                        row.item or None,
                        TimelineEvent.WAYBILL_ISSUED,
                        f"{self._courier.name} {row.waybill_no}",
                        actor=Actor.ROUTER,
                    )
            return len(rows)

    def _ask(self, row: HandoverRow, bundle: BundleRow) -> None:
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
            delay = min(self._backoff * 2 ** (row.courier_attempts - 1), self._max_backoff)
            row.next_attempt_at = clock.now() + timedelta(seconds=delay)
            row.last_error = str(error)
            log.warning(
                "waybill.failed",
                bundle_id=str(row.bundle_id),
                attempts=row.courier_attempts,
                error=str(error),
            )
            return
        row.courier = self._courier.name
        row.waybill_no = waybill.waybill_no
        row.waybill_issued_at = clock.now()
        row.state = HandoverState.IN_TRANSIT.value
        row.next_attempt_at = None
        row.last_error = None
        log.info("waybill.issued", bundle_id=str(row.bundle_id), waybill_no=waybill.waybill_no)
