"""Withdrawal (撤回): the applicant takes the bundle back before it is decided.

Every item not yet final is cancelled: waiting ones at once, filed ones by asking their
department to withdraw the filing (an `ItemCancel` through the outbox, so the request
is sent exactly when the cancellation commits). The bundle then ends with its one reply,
which says what was cancelled and what had already been decided.

A department that had decided before the cancel reached it cannot withdraw its decision
and refuses (`CancelRefused`). That decision stands, and the reply must not go on saying
"cancelled": the item takes the decision (its certificates kept like any other's) and
the platform gets a corrected reply, a new version that says what it corrects. The
refusal and the decision may arrive in either order:

    arrives first       the item (cancelled)                   then, when the other comes
    decision            holds it in `result`, still cancelled  refusal: the decision stands
    refusal             notes `cancel_refused_at`              decision: it stands

A decision after a cancel the department did not refuse stays held and changes nothing.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from sqlalchemy.orm import Session

from contracts.api import BundleState, TimelineEvent
from contracts.messages import BundleOutcome, CancelRefused, Decided, ItemState
from router.domain.progress import (
    assemble_reply,
    cancel_at_department,
    correct_reply,
    set_item_state,
)
from router.domain.states import reason_of
from router.store import BundleRow, Database, ItemRow, audit
from router.store.timeline import Actor, department_actor, record_event
from runtime import clock

DEFAULT_REASON = "申请人撤回申请"


class Withdrawn(StrEnum):
    WITHDRAWN = "withdrawn"
    UNKNOWN = "unknown"
    ALREADY_REPLIED = "already_replied"


def withdraw(
    database: Database,
    bundle_id: uuid.UUID,
    actor: str = Actor.PLATFORM,
    reason: str = DEFAULT_REASON,
) -> Withdrawn:
    """Withdraw the bundle on `actor`'s request (the token that asked, audited)."""
    with database.transaction() as session:
        bundle = session.get(BundleRow, bundle_id, with_for_update=True)
        if bundle is None:
            return Withdrawn.UNKNOWN
        if bundle.state != BundleState.IN_PROGRESS:
            return Withdrawn.ALREADY_REPLIED
        record_event(
            session, bundle.id, None, TimelineEvent.WITHDRAWN, reason, actor=Actor.PLATFORM
        )
        audit.record(
            session,
            actor=actor,
            event=audit.AuditEvent.WITHDRAWN,
            outcome="withdrawn",
            bundle_id=bundle.id,
            detail=reason,
        )
        for item in bundle.items:
            if ItemState(item.state).is_final:
                continue
            cancel_at_department(session, bundle, item, reason)
            set_item_state(session, item, ItemState.CANCELLED, actor=Actor.ROUTER, reason=reason)
        assemble_reply(session, bundle, BundleOutcome.WITHDRAWN)
        return Withdrawn.WITHDRAWN


def cancel_refused(
    session: Session, bundle: BundleRow, item: ItemRow, refused: CancelRefused
) -> None:
    """The department refused to withdraw the cancelled `item`: a decision it holds (now,
    or when it arrives) stands."""
    item.cancel_refused_at = clock.now()
    record_event(
        session,
        bundle.id,
        item.code,
        TimelineEvent.CANCEL_REFUSED,
        f"部门未撤回本事项（已作出决定），其决定有效：{refused.reason}",
        actor=department_actor(item.department),
    )
    if item.result is not None and item.result.get("status") == "decided":
        _stands(session, bundle, item, Decided.model_validate(item.result))


def decided_after_cancel(
    session: Session, bundle: BundleRow, item: ItemRow, decision: Decided
) -> bool:
    """A decision for the cancelled `item`: it stands if the department refused the
    cancel (True), else it is held until the department does (False)."""
    item.result = decision.model_dump(mode="json")
    if item.cancel_refused_at is not None:
        _stands(session, bundle, item, decision)
        return True
    record_event(
        session,
        bundle.id,
        item.code,
        TimelineEvent.IGNORED,
        "撤回后收到部门决定：部门若拒绝撤回，该决定有效；否则不予采用",
        actor=department_actor(item.department),
    )
    return False


def _stands(session: Session, bundle: BundleRow, item: ItemRow, decision: Decided) -> None:
    state = ItemState.APPROVED if decision.approved else ItemState.DENIED
    verdict = "准予办理" if decision.approved else "不予办理"
    set_item_state(
        session,
        item,
        state,
        actor=department_actor(item.department),
        reason=reason_of(decision),
        event=TimelineEvent.DECISION_STANDS,
        operator_detail=f"撤回未获部门同意，{verdict}的决定有效",
    )
    if bundle.state == BundleState.REPLIED:
        correct_reply(
            session,
            bundle,
            f"“{item.name_zh}”部门已作出{verdict}决定、无法撤回，该决定有效（原答复为已取消）",
        )
