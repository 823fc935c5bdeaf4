"""Moves a bundle forward after any change: cancel what is blocked, dispatch what is
free, file for pre-review what may be pre-reviewed (容缺预审), forward prerequisites'
results to pre-reviewed items, and assemble the one reply once every item is final.

Called inside the transaction that made the change, so the new states, their timeline
events and the messages they cause commit together (or not at all).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from contracts import topology
from contracts.api import BundleState, TimelineEvent
from contracts.application import Application, Delivery, MaterialRef
from contracts.catalog import BundleType, Item
from contracts.ids import new_id
from contracts.messages import (
    AcceptanceNotice,
    BundleOutcome,
    BundleReply,
    Certificate,
    Decided,
    ItemCancel,
    ItemDispatch,
    ItemNotice,
    ItemPoll,
    ItemResult,
    ItemState,
    ItemSupplement,
    PrerequisiteResult,
    SupplementPurpose,
    ToleratedGap,
    filing_key,
)
from router.domain import handovers, planner
from router.domain.evidence import Evidence
from router.domain.timekeeping import Timekeeper, respond_by
from router.domain.workdays import working_calendar
from router.store import BundleRow, CallbackRow, ItemNoticeRow, ItemRow, ReplyRow
from router.store.appended import append
from router.store.outbox import enqueue
from router.store.timeline import Actor, record_event
from runtime import clock

_ITEM_NOTICES: Table = ItemNoticeRow.__table__  # type: ignore[assignment]
_CALLBACKS: Table = CallbackRow.__table__  # type: ignore[assignment]
_REPLIES: Table = ReplyRow.__table__  # type: ignore[assignment]


def set_item_state(
    session: Session,
    item: ItemRow,
    state: ItemState,
    *,
    actor: str,
    reason: str | None = None,
    event: TimelineEvent | None = None,
    operator_detail: str | None = None,
) -> None:
    """Move the item and record the step (as `event` when the state alone does not say
    what happened, e.g. corrected). The item keeps the applicant's `reason`; the timeline
    records the `operator_detail` instead when there is one."""
    now = clock.now()
    item.state = state.value
    item.reason = reason
    item.updated_at = now
    detail = operator_detail or reason
    record_event(session, item.bundle_id, item.code, event or state, detail, actor=actor, at=now)
    Timekeeper(session, working_calendar()).moved(item, state, now)
    bundle = item.bundle
    if state.is_final and bundle.application.get("delivery") == Delivery.PER_ITEM:
        _notify(session, bundle, item)
    if state.is_final:
        handovers.item_decided(session, bundle, item)


def _notify(session: Session, bundle: BundleRow, item: ItemRow) -> None:
    """分别领取: tell the platform this item is final, before the bundle's reply."""
    notice = ItemNotice(
        bundle_id=bundle.id,
        project_no=bundle.project_no,
        bundle_type=bundle.bundle_type,
        result=_item_result(item),
    )
    tell_platform(session, bundle, notice, topology.notice_routing_key(bundle.bundle_type))
    # Kept for the file drop's export (router.channels.filedrop_export).
    append(
        session,
        _ITEM_NOTICES,
        {
            "bundle_id": bundle.id,
            "item": item.code,
            "body": notice.model_dump(mode="json"),
            "created_at": clock.now(),
        },
    )


def tell_platform(
    session: Session,
    bundle: BundleRow,
    message: ItemNotice | BundleReply | AcceptanceNotice,
    routing_key: str,
) -> None:
    """Everything the platform is told goes both ways, in the caller's transaction: on
    the replies exchange (the outbox publishes it) and to the callback URL, if any."""
    enqueue(session, exchange=topology.REPLIES_EXCHANGE, routing_key=routing_key, message=message)
    _push_to_callback(session, bundle, message)


def _push_to_callback(
    session: Session, bundle: BundleRow, message: ItemNotice | BundleReply | AcceptanceNotice
) -> None:
    """A row for the callback sender, when the platform gave a callback URL (written at
    commit: the sender reads it in transactions of its own)."""
    url = bundle.application.get("callback_url")
    if url:
        now = datetime.now(UTC)
        append(
            session,
            _CALLBACKS,
            {
                "bundle_id": bundle.id,
                "url": url,
                "kind": message.kind,
                "body": message.model_dump_json().encode(),
                "attempts": 0,
                "next_attempt_at": now,
                "delivered_at": None,
                "last_error": None,
                "created_at": now,
            },
        )


def advance(session: Session, bundle: BundleRow, bundle_type: BundleType) -> None:
    items = {item.code: item for item in bundle.items}
    states = {code: ItemState(item.state) for code, item in items.items()}
    awaiting = {code for code, item in items.items() if item.awaiting_prerequisites}
    evidence = Evidence.of(bundle.evidence)
    satisfied = evidence.satisfied
    application: Application | None = None

    def dispatch(code: str, *, pre_review: bool) -> None:
        nonlocal application
        if application is None:
            # Validated once for all the items dispatched now (intake dispatches several),
            # and only when one is.
            application = Application.model_validate(bundle.application)
        _dispatch(
            session,
            bundle,
            bundle_type,
            items[code],
            items,
            application,
            evidence,
            pre_review=pre_review,
        )
        states[code] = ItemState.DISPATCHED

    for code, lost_prerequisite in planner.blocked(bundle_type, states, awaiting).items():
        lost = items[lost_prerequisite]
        reason = f"前置事项“{lost.name_zh}”未获办理（{lost.reason or lost.state}），本事项不再办理"
        if states[code] is not ItemState.WAITING:
            cancel_at_department(session, bundle, items[code], reason)
        set_item_state(session, items[code], ItemState.CANCELLED, actor=Actor.ROUTER, reason=reason)
        states[code] = ItemState.CANCELLED
    for code in planner.releasable(bundle_type, states, satisfied):
        dispatch(code, pre_review=False)
    for code in planner.pre_reviewable(bundle_type, states, satisfied):
        dispatch(code, pre_review=True)
    for code in planner.forwardable(bundle_type, states, awaiting, satisfied):
        _forward_prerequisites(session, bundle, bundle_type, items[code], items, evidence)
        states[code] = ItemState.ACCEPTED
    if bundle.state == BundleState.IN_PROGRESS and all(state.is_final for state in states.values()):
        assemble_reply(session, bundle)


def _dispatch(
    session: Session,
    bundle: BundleRow,
    bundle_type: BundleType,
    item: ItemRow,
    items: dict[str, ItemRow],
    application: Application,
    evidence: Evidence,
    *,
    pre_review: bool,
) -> None:
    catalog_item = bundle_type.item(item.code)
    message = ItemDispatch.for_item(
        application,
        bundle.id,
        item,
        form_fields=catalog_item.form_fields,
        prerequisite_results=()
        if pre_review
        else _prerequisite_results(catalog_item, items, evidence),
        pre_review=pre_review,
        fetched_materials=evidence.materials,
    )
    item.dispatch_id = message.message_id
    item.awaiting_prerequisites = pre_review
    set_item_state(
        session,
        item,
        ItemState.DISPATCHED,
        actor=Actor.ROUTER,
        reason="容缺预审：先行受理、预审，前置事项办结后再审批" if pre_review else None,
    )
    send_to_department(session, item, message)


def _forward_prerequisites(
    session: Session,
    bundle: BundleRow,
    bundle_type: BundleType,
    item: ItemRow,
    items: dict[str, ItemRow],
    evidence: Evidence,
) -> None:
    """A pre-reviewed item's prerequisites are all approved: give its department their
    results (certificates included), after which it may decide."""
    results = _prerequisite_results(bundle_type.item(item.code), items, evidence)
    supplement(session, bundle, item, SupplementPurpose.PREREQUISITES, prerequisite_results=results)
    item.awaiting_prerequisites = False
    done = "、".join(bundle_type.item(result.item).name_zh for result in results)
    set_item_state(
        session,
        item,
        ItemState.ACCEPTED,
        actor=Actor.ROUTER,
        reason=f"前置事项（{done}）已办结，结果已转递，进入审批",
        event=TimelineEvent.PREREQUISITES_FORWARDED,
    )


def supplement(
    session: Session,
    bundle: BundleRow,
    item: ItemRow,
    purpose: SupplementPurpose,
    *,
    prerequisite_results: tuple[PrerequisiteResult, ...] = (),
    materials: tuple[MaterialRef, ...] = (),
) -> None:
    """Add to the item's filing at its department (never a second filing)."""
    message = ItemSupplement(
        **filing_of(bundle, item),
        item_name_zh=item.name_zh,
        purpose=purpose,
        prerequisite_results=prerequisite_results,
        materials=materials,
    )
    send_to_department(session, item, message)


def cancel_at_department(session: Session, bundle: BundleRow, item: ItemRow, reason: str) -> None:
    """Ask the item's department to withdraw its filing (撤回), sent when this commits."""
    if item.dispatch_id is not None:  # never filed: nothing to withdraw
        send_to_department(session, item, ItemCancel(**filing_of(bundle, item), reason=reason))


def filing_of(bundle: BundleRow, item: ItemRow) -> dict[str, Any]:
    """The fields that address a message to the item's filing at its department."""
    if item.dispatch_id is None:
        raise ValueError(f"item {item.code} was never dispatched")
    return {
        "bundle_id": bundle.id,
        "project_no": bundle.project_no,
        "item": item.code,
        "service": item.service,
        "department": item.department,
        "dispatch_id": item.dispatch_id,
        "idempotency_key": filing_key(bundle.id, item.code),
        "receipt_no": item.receipt_no,
    }


def send_to_department(
    session: Session, item: ItemRow, message: ItemDispatch | ItemSupplement | ItemPoll | ItemCancel
) -> None:
    if not isinstance(message, ItemCancel):
        # Each request carries the item's deadline as it stands now, so the adapter
        # retries an unreachable department no longer than the item has left.
        message = message.model_copy(update={"respond_by": respond_by(item)})
    # One routing key per item's department, route and service: dispatch, supplements
    # and cancel share the queue of the adapter serving the item's area.
    enqueue(
        session,
        exchange=topology.DISPATCH_EXCHANGE,
        routing_key=topology.dispatch_routing_key(item.department, item.service, item.route),
        message=message,
    )


def _prerequisite_results(
    catalog_item: Item, items: dict[str, ItemRow], evidence: Evidence
) -> tuple[PrerequisiteResult, ...]:
    """The approved prerequisites of this bundle, and the earlier results cited for the
    prerequisites applied for elsewhere."""
    needed = {code for prerequisite in catalog_item.prerequisites for code in prerequisite.any_of}
    decided_here = tuple(
        PrerequisiteResult(
            item=row.code, department=row.department, certificates=certificates_of(row)
        )
        for alternatives in planner.selected_prerequisites(catalog_item, items)
        for row in (items[code] for code in alternatives)
        if row.state == ItemState.APPROVED
    )
    cited = tuple(result for result in evidence.prior_results if result.item in needed)
    return decided_here + cited


def certificates_of(item: ItemRow) -> tuple[Certificate, ...]:
    # A cancelled item may hold a decision that came after its cancel (pending the
    # department's answer to it): not the item's result until it stands.
    if item.state != ItemState.APPROVED or item.result is None:
        return ()
    if item.result.get("status") != "decided":
        return ()
    return Decided.model_validate(item.result).certificates


def assemble_reply(
    session: Session, bundle: BundleRow, outcome: BundleOutcome | None = None
) -> None:
    """The one reply: kept for pull, published for AMQP consumers, pushed to the callback."""
    now = clock.now()
    reply = BundleReply(
        bundle_id=bundle.id,
        project_no=bundle.project_no,
        bundle_type=bundle.bundle_type,
        outcome=outcome or _outcome_of(bundle),
        items=tuple(_item_result(item) for item in bundle.items),
        replied_at=now,
    )
    bundle.state = BundleState.REPLIED
    bundle.replied_at = now
    Timekeeper(session, working_calendar()).replied(bundle, now)
    _send_reply(session, bundle, reply, TimelineEvent.REPLIED, reply.outcome.value)


def correct_reply(session: Session, bundle: BundleRow, correction: str) -> BundleReply:
    """A new version of the bundle's reply, saying which version it corrects and why, sent
    through every channel the reply went through (the platform must never find a changed
    reply it was not told about). A withdrawn bundle stays withdrawn; any other outcome
    is counted again."""
    previous = session.scalars(
        select(ReplyRow)
        .where(ReplyRow.bundle_id == bundle.id)
        .order_by(ReplyRow.version.desc())
        .limit(1)
    ).one()
    was = BundleReply.model_validate(previous.body)
    reply = was.model_copy(
        update={
            "message_id": new_id(),
            "outcome": was.outcome
            if was.outcome is BundleOutcome.WITHDRAWN
            else _outcome_of(bundle),
            "items": tuple(_item_result(item) for item in bundle.items),
            "replied_at": clock.now(),
            "version": previous.version + 1,
            "corrects": previous.version,
            "correction": correction,
        }
    )
    detail = f"第{reply.version}版更正第{previous.version}版：{correction}"
    _send_reply(session, bundle, reply, TimelineEvent.REPLY_CORRECTED, detail)
    return reply


def _outcome_of(bundle: BundleRow) -> BundleOutcome:
    approved = sum(item.state == ItemState.APPROVED for item in bundle.items)
    if approved == len(bundle.items):
        return BundleOutcome.ALL_APPROVED
    return BundleOutcome.PARTLY_APPROVED if approved else BundleOutcome.NONE_APPROVED


def _send_reply(
    session: Session, bundle: BundleRow, reply: BundleReply, event: TimelineEvent, detail: str
) -> None:
    """Keep `reply` (its version) for pull and the file drop, publish it, push it."""
    append(
        session,
        _REPLIES,
        {
            "bundle_id": bundle.id,
            "version": reply.version,
            "body": reply.model_dump(mode="json"),
            "created_at": reply.replied_at,
        },
    )
    record_event(session, bundle.id, None, event, detail, actor=Actor.ROUTER, at=reply.replied_at)
    tell_platform(session, bundle, reply, topology.reply_routing_key(bundle.bundle_type))
    handovers.bundle_replied(session, bundle)


def _item_result(item: ItemRow) -> ItemResult:
    return ItemResult(
        item=item.code,
        name_zh=item.name_zh,
        department=item.department,
        state=ItemState(item.state),
        reason=item.reason,
        certificates=certificates_of(item),
        tolerated_gaps=tolerated_gaps(item),
        finished_at=item.updated_at,
    )


def tolerated_gaps(item: ItemRow) -> tuple[ToleratedGap, ...]:
    return tuple(ToleratedGap.model_validate(gap) for gap in item.tolerated_gaps or ())
