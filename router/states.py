"""The item state machine: which outcome moves an item where, and from which states.

Outcomes may arrive out of order or more than once; a transition that is not in the
table (for example "accepted" after "approved") is ignored and noted on the timeline,
so the state only ever moves forward.
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

S = ItemState
_DECISIONS = {S.APPROVED, S.DENIED, S.FAILED}

TRANSITIONS: dict[ItemState, frozenset[ItemState]] = {
    S.WAITING: frozenset({S.DISPATCHED, S.CANCELLED}),
    S.DISPATCHED: frozenset({S.ACCEPTED, S.REJECTED, S.CORRECTION_REQUESTED, *_DECISIONS}),
    S.ACCEPTED: frozenset({S.CORRECTION_REQUESTED, *_DECISIONS}),
    S.CORRECTION_REQUESTED: frozenset({S.ACCEPTED, S.REJECTED, *_DECISIONS}),
    S.APPROVED: frozenset(),
    S.DENIED: frozenset(),
    S.REJECTED: frozenset(),
    S.FAILED: frozenset(),
    S.CANCELLED: frozenset(),
}


def target_state(result: OutcomeResult) -> ItemState:
    match result:
        case Accepted():
            return S.ACCEPTED
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


def reason_of(result: OutcomeResult) -> str | None:
    match result:
        case Rejected(reason=reason) | CorrectionRequested(reason=reason):
            return reason
        case Decided(reason=reason):
            return reason
        case Failed(error=error):
            return f"部门系统办理失败：{error}"
    return None


def allowed(current: ItemState, target: ItemState) -> bool:
    return target in TRANSITIONS[current]
