"""Supervision figures (电子监察): 办件量, 不予受理量, 收件时限, 办理时限, 办结率.

Every figure is counted per item (事项) from the timeline, which is append-only: when an
item was dispatched, first accepted (受理, or 容缺预审), rejected (不予受理), decided (办结)
and marked overdue. The same timings feed the Prometheus metrics (`router.operations.metrics`) and
the ops page's figures for a chosen period, grouped by department or by bundle type.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from contracts.api import OverdueKind, TimelineEvent, TimelineStep
from contracts.messages import ItemState
from router.store import BundleRow, EventRow, ItemRow
from router.store.tables import UtcDateTime

S = ItemState
_DECIDED = (S.APPROVED, S.DENIED)
# A department may decide without reporting acceptance first: deciding is accepting too.
_ACCEPTED = (S.ACCEPTED, S.PRE_REVIEWED, *_DECIDED)


@dataclass(frozen=True)
class ItemTiming:
    """One item's milestones, each the first time the timeline recorded it."""

    bundle_type: str
    department: str
    state: ItemState
    dispatched_at: datetime | None
    accepted_at: datetime | None  # 受理, pre-reviewed (容缺预审), or decided outright
    rejected_at: datetime | None  # 不予受理
    decided_at: datetime | None  # 办结: approved or denied
    accept_due_at: datetime | None
    decide_due_at: datetime | None
    overdue_kinds: frozenset[OverdueKind]  # the deadlines it was marked past

    @property
    def answered_at(self) -> datetime | None:
        """When the department accepted or rejected it (the 1-working-day rule)."""
        return min((at for at in (self.accepted_at, self.rejected_at) if at), default=None)

    @property
    def intake_seconds(self) -> float | None:
        return _seconds(self.dispatched_at, self.answered_at)

    @property
    def decision_seconds(self) -> float | None:
        return _seconds(self.dispatched_at, self.decided_at)

    @property
    def answered_on_time(self) -> bool | None:
        answered = self.answered_at
        if answered is None or self.accept_due_at is None:
            return None
        return answered <= self.accept_due_at and OverdueKind.ACCEPTANCE not in self.overdue_kinds

    @property
    def decided_on_time(self) -> bool | None:
        """None until decided; on time if it met the promised limit (or had none) and was
        never marked past it."""
        if self.decided_at is None:
            return None
        within = self.decide_due_at is None or self.decided_at <= self.decide_due_at
        return within and OverdueKind.DECISION not in self.overdue_kinds


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else max((end - start).total_seconds(), 0.0)


def item_timings(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> list[ItemTiming]:
    """Every item of the bundles received in [since, until), with its milestones."""

    def first(*steps: TimelineStep, detail: OverdueKind | None = None) -> Any:
        matches: ColumnElement[bool] = EventRow.state.in_(steps)
        if detail is not None:
            matches = and_(matches, EventRow.detail == detail)
        return type_coerce(func.min(case((matches, EventRow.at))), UtcDateTime())

    steps = select(
        EventRow.bundle_id,
        EventRow.item,
        first(S.DISPATCHED).label("dispatched_at"),
        first(*_ACCEPTED).label("accepted_at"),
        first(S.REJECTED).label("rejected_at"),
        first(*_DECIDED).label("decided_at"),
        first(TimelineEvent.OVERDUE, detail=OverdueKind.ACCEPTANCE).label("acceptance_overdue_at"),
        first(TimelineEvent.OVERDUE, detail=OverdueKind.DECISION).label("decision_overdue_at"),
    ).where(EventRow.item.is_not(None))
    if since is not None:  # a bundle's events all come after it was received
        steps = steps.where(EventRow.at >= since)
    milestones = steps.group_by(EventRow.bundle_id, EventRow.item).subquery()
    query = (
        select(
            BundleRow.bundle_type,
            ItemRow.department,
            ItemRow.state,
            ItemRow.accept_due_at,
            ItemRow.decide_due_at,
            milestones.c.dispatched_at,
            milestones.c.accepted_at,
            milestones.c.rejected_at,
            milestones.c.decided_at,
            milestones.c.acceptance_overdue_at,
            milestones.c.decision_overdue_at,
        )
        .join(BundleRow, BundleRow.id == ItemRow.bundle_id)
        .outerjoin(
            milestones,
            and_(milestones.c.bundle_id == ItemRow.bundle_id, milestones.c.item == ItemRow.code),
        )
    )
    if since is not None:
        query = query.where(BundleRow.received_at >= since)
    if until is not None:
        query = query.where(BundleRow.received_at < until)
    return [
        ItemTiming(
            bundle_type=row.bundle_type,
            department=row.department,
            state=ItemState(row.state),
            dispatched_at=row.dispatched_at,
            accepted_at=row.accepted_at,
            rejected_at=row.rejected_at,
            decided_at=row.decided_at,
            accept_due_at=row.accept_due_at,
            decide_due_at=row.decide_due_at,
            overdue_kinds=frozenset(
                kind
                for kind, at in (
                    (OverdueKind.ACCEPTANCE, row.acceptance_overdue_at),
                    (OverdueKind.DECISION, row.decision_overdue_at),
                )
                if at is not None
            ),
        )
        for row in session.execute(query)
    ]


@dataclass(frozen=True)
class Figures:
    """The supervision figures of one group of items (a department, or a bundle type)."""

    volume: int  # 办件量: items received
    accepted: int  # 受理 (including 容缺预审)
    rejected: int  # 不予受理量
    completed: int  # 办结: approved or denied
    failed: int  # the department could not handle it
    overdue: int  # marked past a deadline at least once
    intake_hours_avg: float | None  # 收件时限: dispatch → accepted or rejected
    intake_on_time_ratio: float | None  # answered within 1 working day
    decision_hours_avg: float | None  # 办理时限: dispatch → decided
    decision_on_time_ratio: float | None  # decided within the promised limit
    completion_ratio: float | None  # 办结率: completed ÷ accepted

    @classmethod
    def of(cls, items: Sequence[ItemTiming]) -> Figures:
        accepted = sum(1 for item in items if item.accepted_at is not None)
        completed = sum(1 for item in items if item.decided_at is not None)
        return cls(
            volume=len(items),
            accepted=accepted,
            rejected=sum(1 for item in items if item.rejected_at is not None),
            completed=completed,
            failed=sum(1 for item in items if item.state is S.FAILED),
            overdue=sum(1 for item in items if item.overdue_kinds),
            intake_hours_avg=_hours(_mean(item.intake_seconds for item in items)),
            intake_on_time_ratio=_mean(_flag(item.answered_on_time) for item in items),
            decision_hours_avg=_hours(_mean(item.decision_seconds for item in items)),
            decision_on_time_ratio=_mean(_flag(item.decided_on_time) for item in items),
            completion_ratio=completed / accepted if accepted else None,
        )


def _flag(value: bool | None) -> float | None:
    return None if value is None else float(value)


def _mean(values: Iterable[float | None]) -> float | None:
    known = [value for value in values if value is not None]
    return sum(known) / len(known) if known else None


def _hours(seconds: float | None) -> float | None:
    return None if seconds is None else seconds / 3600


def figures_by(items: Iterable[ItemTiming], key: Callable[[ItemTiming], str]) -> dict[str, Figures]:
    """The figures of each group, groups in name order."""
    groups: dict[str, list[ItemTiming]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    return {name: Figures.of(groups[name]) for name in sorted(groups)}
