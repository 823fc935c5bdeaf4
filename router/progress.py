"""Moves a bundle forward after any change: dispatch what is free, cancel what is blocked,
and assemble the one reply once every item is final.

Called inside the transaction that made the change, so the new states, their timeline
events and the messages they cause commit together (or not at all).
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from contracts import topology
from contracts.application import Application, Delivery
from contracts.catalog import BundleType
from contracts.messages import (
    BundleOutcome,
    BundleReply,
    Certificate,
    Decided,
    ItemDispatch,
    ItemNotice,
    ItemResult,
    ItemState,
    PrerequisiteResult,
)
from router import planner
from router.db import BundleRow, CallbackRow, ItemRow, ReplyRow
from router.deadlines import deadlines_for
from router.outbox import enqueue
from router.timeline import record_event
from router.workdays import UnknownYearError, working_calendar

REPLIED = "replied"
IN_PROGRESS = "in_progress"


def filing_key(bundle_id: uuid.UUID, item: str) -> str:
    """The idempotency key an item is filed under at its department, stable forever."""
    return f"{bundle_id}:{item}"


def set_item_state(
    session: Session, item: ItemRow, state: ItemState, *, reason: str | None = None
) -> None:
    now = datetime.now(UTC)
    item.state = state.value
    item.reason = reason
    item.updated_at = now
    record_event(session, item.bundle_id, item.code, state.value, reason, now)
    bundle = item.bundle
    if state.is_final and bundle.application.get("delivery") == Delivery.PER_ITEM:
        _notify(session, bundle, item)


def _notify(session: Session, bundle: BundleRow, item: ItemRow) -> None:
    """分别领取: tell the platform this item is final, before the bundle's reply."""
    notice = ItemNotice(
        bundle_id=bundle.id,
        project_no=bundle.project_no,
        bundle_type=bundle.bundle_type,
        result=_item_result(item),
    )
    enqueue(
        session,
        exchange=topology.REPLIES_EXCHANGE,
        routing_key=topology.notice_routing_key(bundle.bundle_type),
        message=notice,
    )
    _push_to_callback(session, bundle, notice)


def _push_to_callback(
    session: Session, bundle: BundleRow, message: ItemNotice | BundleReply
) -> None:
    url = bundle.application.get("callback_url")
    if url:
        now = datetime.now(UTC)
        session.add(
            CallbackRow(
                bundle_id=bundle.id,
                url=url,
                kind=message.kind,
                body=message.model_dump_json().encode(),
                attempts=0,
                next_attempt_at=now,
                delivered_at=None,
                last_error=None,
                created_at=now,
            )
        )


def advance(session: Session, bundle: BundleRow, bundle_type: BundleType) -> None:
    items = {item.code: item for item in bundle.items}
    states = {code: ItemState(item.state) for code, item in items.items()}
    for code, lost_prerequisite in planner.blocked(bundle_type, states).items():
        lost = items[lost_prerequisite]
        set_item_state(
            session,
            items[code],
            ItemState.CANCELLED,
            reason=f"前置事项“{lost.name_zh}”未获办理（{lost.reason or lost.state}），"
            "本事项不再办理",
        )
        states[code] = ItemState.CANCELLED
    for code in planner.releasable(bundle_type, states):
        _dispatch(session, bundle, bundle_type, items[code], items)
        states[code] = ItemState.DISPATCHED
    if bundle.state != REPLIED and all(state.is_final for state in states.values()):
        assemble_reply(session, bundle)


def _dispatch(
    session: Session,
    bundle: BundleRow,
    bundle_type: BundleType,
    item: ItemRow,
    items: dict[str, ItemRow],
) -> None:
    application = Application.model_validate(bundle.application)
    catalog_item = bundle_type.item(item.code)
    prerequisites = [
        items[code]
        for alternatives in planner.selected_prerequisites(catalog_item, items)
        for code in alternatives
        if items[code].state == ItemState.APPROVED
    ]
    message = ItemDispatch(
        bundle_id=bundle.id,
        project_no=bundle.project_no,
        bundle_type=bundle.bundle_type,
        item=item.code,
        item_name_zh=item.name_zh,
        service=item.service,
        department=item.department,
        idempotency_key=filing_key(bundle.id, item.code),
        area_code=application.area_code,
        applicant=application.applicant,
        form=application.form,
        materials=tuple(application.materials),
        prerequisite_results=tuple(
            PrerequisiteResult(
                item=row.code, department=row.department, certificates=_certificates(row)
            )
            for row in prerequisites
        ),
    )
    item.dispatch_id = message.message_id
    set_item_state(session, item, ItemState.DISPATCHED)
    try:
        due = deadlines_for(working_calendar(), item.updated_at, catalog_item.promise_days)
    except UnknownYearError as error:
        # Never a guessed deadline: the operator sees why there is none and adds the year.
        record_event(session, bundle.id, item.code, "deadline_unknown", str(error)[:1000])
    else:
        item.accept_due_at, item.decide_due_at = due.accept_due_at, due.decide_due_at
    enqueue(
        session,
        exchange=topology.DISPATCH_EXCHANGE,
        routing_key=topology.dispatch_routing_key(item.department, item.service),
        message=message,
    )


def _certificates(item: ItemRow) -> tuple[Certificate, ...]:
    if item.result is None or item.result.get("status") != "decided":
        return ()
    return Decided.model_validate(item.result).certificates


def assemble_reply(
    session: Session, bundle: BundleRow, outcome: BundleOutcome | None = None
) -> None:
    """The one reply: kept for pull, and published for AMQP consumers."""
    now = datetime.now(UTC)
    approved = sum(item.state == ItemState.APPROVED for item in bundle.items)
    outcome = outcome or (
        BundleOutcome.ALL_APPROVED
        if approved == len(bundle.items)
        else BundleOutcome.PARTLY_APPROVED
        if approved
        else BundleOutcome.NONE_APPROVED
    )
    reply = BundleReply(
        bundle_id=bundle.id,
        project_no=bundle.project_no,
        bundle_type=bundle.bundle_type,
        outcome=outcome,
        items=tuple(_item_result(item) for item in bundle.items),
        replied_at=now,
    )
    bundle.state = REPLIED
    bundle.replied_at = now
    session.add(ReplyRow(bundle_id=bundle.id, body=reply.model_dump(mode="json"), created_at=now))
    record_event(session, bundle.id, None, REPLIED, outcome.value, now)
    enqueue(
        session,
        exchange=topology.REPLIES_EXCHANGE,
        routing_key=topology.reply_routing_key(bundle.bundle_type),
        message=reply,
    )
    _push_to_callback(session, bundle, reply)


def _item_result(item: ItemRow) -> ItemResult:
    return ItemResult(
        item=item.code,
        name_zh=item.name_zh,
        department=item.department,
        state=ItemState(item.state),
        reason=item.reason,
        certificates=_certificates(item),
        finished_at=item.updated_at,
    )
