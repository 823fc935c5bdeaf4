"""送达: how results reach the applicant, and the proof (送达凭证) that they did.

A handover is a row made in the transaction that makes results ready to hand over:

    delivery (领取)   method (送达方式)    handovers
    unified           window/electronic    one, with the reply
    per_item          window/electronic    one per item, as the item is decided
    either            post                 one, with the reply (004 第十七条: "申请人选择
                                           邮寄送达的，待所有联办事项全部办结后…统一邮寄送达")

Only decided items have something to hand over (a certificate, a decision, a 不予受理决定书):
a withdrawn or failed item has none, and a bundle with none stays `replied`.

    method        starts as              proof (source)
    window        awaiting_collection    window: the signed collection form
    electronic    awaiting_download      download: the platform's record of the download
    post          awaiting_waybill       courier: the signed receipt, on the waybill issued
                  → in_transit (the courier sender, router.channels.waybills, which
                  records the courier's proof itself once its tracking says signed)

A bundle is `delivered` once it is replied and every handover has its proof.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from contracts.api import (
    BundleState,
    DeliveryProof,
    HandoverState,
    HandoverStatus,
    ProofSource,
    TimelineEvent,
)
from contracts.application import Delivery, Handover, HandoverMethod
from contracts.messages import ItemState
from contracts.personal_data import mask_name
from router.store import BundleRow, HandoverRow, ItemRow
from router.store.audit import AuditEvent, record
from router.store.engine import insert_skipping_conflicts
from router.store.timeline import Actor, record_event
from runtime import clock

BUNDLE = ""
"""The `item` of the bundle's own handover."""

HANDED_OVER_STATES = frozenset({ItemState.APPROVED, ItemState.DENIED, ItemState.REJECTED})
"""Items whose result is a document the applicant receives."""

_FIRST_STATE = {
    HandoverMethod.WINDOW: HandoverState.AWAITING_COLLECTION,
    HandoverMethod.ELECTRONIC: HandoverState.AWAITING_DOWNLOAD,
    HandoverMethod.POST: HandoverState.AWAITING_WAYBILL,
}
_HANDOVERS: Table = HandoverRow.__table__  # type: ignore[assignment]
_MAKE_ONCE = {
    name: insert.returning(_HANDOVERS.c.id)
    for name, insert in insert_skipping_conflicts(_HANDOVERS).items()
}
_PROOF_SOURCE = {
    HandoverMethod.WINDOW: ProofSource.WINDOW,
    HandoverMethod.ELECTRONIC: ProofSource.DOWNLOAD,
    HandoverMethod.POST: ProofSource.COURIER,
}


def handover_of(bundle: BundleRow) -> Handover:
    return Handover.model_validate(bundle.application.get("handover", {}))


def item_decided(session: Session, bundle: BundleRow, item: ItemRow) -> None:
    """分别领取 by window or download: the item's result is handed over on its own."""
    if (
        bundle.application.get("delivery") == Delivery.PER_ITEM
        and handover_of(bundle).method is not HandoverMethod.POST
        and ItemState(item.state) in HANDED_OVER_STATES
    ):
        _ready(session, bundle, item.code)


def bundle_replied(session: Session, bundle: BundleRow) -> None:
    """The reply exists: the bundle's handover, unless its items went one by one."""
    per_item = bundle.application.get("delivery") == Delivery.PER_ITEM
    if (per_item and handover_of(bundle).method is not HandoverMethod.POST) or not any(
        ItemState(item.state) in HANDED_OVER_STATES for item in bundle.items
    ):
        _settle(session, bundle)
        return
    _ready(session, bundle, BUNDLE)


def _ready(session: Session, bundle: BundleRow, item: str) -> None:
    """Make the handover, unless it is made already: one handover, one waybill, whatever
    is redelivered. One INSERT that skips the row `ux_handovers_once` holds, and says
    whether it wrote one: no lookup first."""
    method = handover_of(bundle).method
    now = clock.now()
    connection = session.connection()
    made = connection.scalar(
        _MAKE_ONCE[connection.dialect.name],
        {
            "bundle_id": bundle.id,
            "item": item,
            "method": method.value,
            "state": _FIRST_STATE[method].value,
            "ready_at": now,
            "courier_attempts": 0,
            "next_attempt_at": now if method is HandoverMethod.POST else None,
        },
    )
    if made is None:
        return
    record_event(
        session,
        bundle.id,
        item or None,
        TimelineEvent.HANDOVER_READY,
        method.value,
        actor=Actor.ROUTER,
        at=now,
    )


class ProofRefusal(StrEnum):
    """Why a proof was not recorded."""

    NOT_READY = "not_ready"  # no results to hand over (yet) for that item or bundle
    WRONG_SOURCE = "wrong_source"  # e.g. a window's form for a post delivery
    NO_SUCH_WAYBILL = "no_such_waybill"  # a courier's proof names another waybill
    ALREADY_DELIVERED = "already_delivered"  # delivered, with a different proof


def record_proof(
    session: Session,
    bundle: BundleRow,
    proof: DeliveryProof,
    actor: str,
    *,
    timeline_actor: Actor = Actor.PLATFORM,
) -> ProofRefusal | None:
    """Record the proof of a handover (repeating the recorded proof changes nothing).
    The caller holds the bundle's lock; `actor` is audited, `timeline_actor` shown."""
    row = _find(session, bundle, proof.item or BUNDLE)
    if row is None:
        return ProofRefusal.NOT_READY
    recorded = proof.model_dump(mode="json")
    if row.state == HandoverState.DELIVERED:
        return None if row.proof == recorded else ProofRefusal.ALREADY_DELIVERED
    method = HandoverMethod(row.method)
    if proof.source is not _PROOF_SOURCE[method]:
        return ProofRefusal.WRONG_SOURCE
    if method is HandoverMethod.POST and (
        row.waybill_no is None or proof.waybill_no != row.waybill_no
    ):
        return ProofRefusal.NO_SUCH_WAYBILL
    row.state = HandoverState.DELIVERED.value
    row.delivered_at = proof.received_at
    row.proof = recorded
    row.next_attempt_at = None  # nothing more to ask the courier
    detail = f"{proof.source.value} {proof.signature_ref}; {mask_name(proof.recipient_name)}"
    record_event(
        session, bundle.id, proof.item, TimelineEvent.DELIVERED, detail, actor=timeline_actor
    )
    record(
        session,
        actor=actor,
        event=AuditEvent.DELIVERED,
        outcome=proof.source.value,
        bundle_id=bundle.id,
        item=proof.item,
        detail=proof.signature_ref,
    )
    _settle(session, bundle)
    return None


def _settle(session: Session, bundle: BundleRow) -> None:
    """A replied bundle whose every handover is proved is delivered (None to deliver
    counts as not delivered: such a bundle stays `replied`)."""
    if bundle.state != BundleState.REPLIED:
        return
    rows = handovers_of(session, bundle.id)
    if rows and all(row.state == HandoverState.DELIVERED for row in rows):
        bundle.state = BundleState.DELIVERED.value


def _find(session: Session, bundle: BundleRow, item: str) -> HandoverRow | None:
    found: HandoverRow | None = session.scalar(
        select(HandoverRow)
        .where(HandoverRow.bundle_id == bundle.id, HandoverRow.item == item)
        .with_for_update()  # the courier sender may be asking about it
    )
    return found


def handovers_of(session: Session, bundle_id: Any) -> list[HandoverRow]:
    return list(
        session.scalars(
            select(HandoverRow).where(HandoverRow.bundle_id == bundle_id).order_by(HandoverRow.id)
        )
    )


def handover_status(row: HandoverRow) -> HandoverStatus:
    return HandoverStatus(
        item=row.item or None,
        method=HandoverMethod(row.method),
        state=HandoverState(row.state),
        ready_at=row.ready_at,
        courier=row.courier,
        waybill_no=row.waybill_no,
        waybill_issued_at=row.waybill_issued_at,
        courier_attempts=row.courier_attempts,
        last_error=row.last_error,
        delivered_at=row.delivered_at,
        proof=DeliveryProof.model_validate(row.proof) if row.proof else None,
    )
