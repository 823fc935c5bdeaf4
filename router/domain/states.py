"""The item state machine: which outcome moves an item where, and from which states.

Outcomes may arrive out of order or more than once; a transition that is not in the
table (for example "accepted" after "approved") is ignored and noted on the timeline,
so the state only ever moves forward. An item filed for pre-review (容缺预审) is
pre-reviewed, not accepted, and may not be decided before its prerequisites' results
have been forwarded (the router then moves it to accepted).
"""

from __future__ import annotations

from contracts.messages import (
    Accepted,
    CorrectionRequested,
    Decided,
    Failed,
    ItemState,
    OutcomeResult,
    Rejected,
)
from contracts.personal_data import mask_text

S = ItemState
_DECISIONS = {S.APPROVED, S.DENIED, S.FAILED}

TRANSITIONS: dict[ItemState, frozenset[ItemState]] = {
    S.WAITING: frozenset({S.DISPATCHED, S.CANCELLED}),
    S.DISPATCHED: frozenset(
        {S.PRE_REVIEWED, S.ACCEPTED, S.REJECTED, S.CORRECTION_REQUESTED, *_DECISIONS}
    ),
    S.PRE_REVIEWED: frozenset({S.CORRECTION_REQUESTED, S.REJECTED, S.FAILED}),
    S.ACCEPTED: frozenset({S.CORRECTION_REQUESTED, *_DECISIONS}),
    S.CORRECTION_REQUESTED: frozenset({S.PRE_REVIEWED, S.ACCEPTED, S.REJECTED, *_DECISIONS}),
    S.APPROVED: frozenset(),
    S.DENIED: frozenset(),
    S.REJECTED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}


def target_state(result: OutcomeResult, *, awaiting_prerequisites: bool) -> ItemState:
    match result:
        case Accepted():
            return S.PRE_REVIEWED if awaiting_prerequisites else S.ACCEPTED
        case Rejected():
            return S.REJECTED
        case CorrectionRequested():
            return S.CORRECTION_REQUESTED
        case Decided(approved=True):
            return S.APPROVED
        case Decided():
            return S.DENIED
        case Failed():
            return S.FAILED
    raise AssertionError(f"unhandled outcome {result!r}")


# What the applicant reads when a department's system fails an item: plain words, never the
# system's error (that is the operator's, on the timeline: `operator_detail_of`).
SYSTEM_FAILURE_REASON = "部门系统暂时无法办理本事项，请联系牵头部门或稍后重新申请"


def reason_of(result: OutcomeResult) -> str | None:
    """The applicant's reason: Chinese, with no exception text and no internals."""
    match result:
        case Accepted(tolerated_gaps=gaps) if gaps:
            return "容缺受理：" + "；".join(
                f"{gap.material}（{gap.commitment}，{gap.due_date.isoformat()}前补交）"
                for gap in gaps
            )
        case Rejected(reason=reason) | CorrectionRequested(reason=reason):
            return reason
        case Decided(reason=reason):
            return reason
        case Failed():
            return SYSTEM_FAILURE_REASON
    return None


def operator_detail_of(result: OutcomeResult) -> str | None:
    """What an operator needs to know beyond the applicant's reason: a failed item's
    technical error, masked, for the timeline and the ops page."""
    if isinstance(result, Failed):
        return mask_text(result.error)
    return None


def allowed(current: ItemState, target: ItemState, *, awaiting_prerequisites: bool) -> bool:
    if awaiting_prerequisites and target in (S.APPROVED, S.DENIED):
        return False  # decided without its prerequisites' results: not a decision to keep
    return target in TRANSITIONS[current]
