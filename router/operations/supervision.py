"""Supervision figures (电子监察): 办件量, 不予受理量, 收件时限, 办理时限, 办结率, 按时率.

Milestones come from the timeline, which is append-only: when an item was dispatched,
first accepted (受理, or 容缺预审), rejected (不予受理) and decided (办结). Whether it was
on time comes from its clocks (`router.domain.clocks`): the working days its acceptance
and its decision used, time paused for the applicant or excluded (听证, 鉴定 …) left
out, against the days allowed (an extension included). Bundles are counted apart, by
their own promise. The same timings feed the Prometheus metrics
(`router.operations.metrics`) and the ops page's figures for a chosen period, grouped
by department or by bundle type.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import and_, case, func, select, type_coerce
from sqlalchemy.orm import Session
from sqlalchemy.sql import ColumnElement

from contracts.api import AlertLevel, DeadlineKind, TimelineEvent, TimelineStep
from contracts.messages import ItemState
from router.domain.clocks import Clock
from router.store import BundleRow, DeadlineAlertRow, EventRow, ItemRow
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
    acceptance: Clock | None
    decision: Clock | None
    overdue_kinds: frozenset[DeadlineKind]  # the deadlines it was raised 超期 for
    withdrawn: bool = False  # cancelled because the applicant withdrew the bundle (撤回)

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
        """Whether the (last) acceptance clock was met by an answer. An item cancelled
        (withdrawn) before its department answered is late if it was raised 超期 for
        acceptance, and not counted otherwise: a withdrawal is no on-time 受理."""
        if self.answered_at is None:
            return False if DeadlineKind.ACCEPTANCE in self.overdue_kinds else None
        return None if self.acceptance is None else self.acceptance.on_time

    @property
    def decided_on_time(self) -> bool | None:
        """None until decided; then whether the decision clock was met, paused time excluded."""
        if self.decided_at is None or self.decision is None:
            return None
        return self.decision.on_time

    @property
    def decision_working_days(self) -> int | None:
        """Working days from 受理 to 办结, paused time excluded."""
        return self.decision.used if self.decided_at and self.decision else None


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    return None if start is None or end is None else max((end - start).total_seconds(), 0.0)


def item_timings(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> list[ItemTiming]:
    """Every item of the bundles received in [since, until), with its milestones."""

    def first(*steps: TimelineStep) -> Any:
        matches: ColumnElement[bool] = EventRow.state.in_(steps)
        return type_coerce(func.min(case((matches, EventRow.at))), UtcDateTime())

    steps = select(
        EventRow.bundle_id,
        EventRow.item,
        first(S.DISPATCHED).label("dispatched_at"),
        first(*_ACCEPTED).label("accepted_at"),
        first(S.REJECTED).label("rejected_at"),
        first(*_DECIDED).label("decided_at"),
    ).where(EventRow.item.is_not(None))
    if since is not None:  # a bundle's events all come after it was received
        steps = steps.where(EventRow.at >= since)
    milestones = steps.group_by(EventRow.bundle_id, EventRow.item).subquery()
    query = (
        select(
            BundleRow.bundle_type,
            ItemRow.department,
            ItemRow.bundle_id,
            ItemRow.code,
            ItemRow.state,
            ItemRow.accept_clock,
            ItemRow.decide_clock,
            milestones.c.dispatched_at,
            milestones.c.accepted_at,
            milestones.c.rejected_at,
            milestones.c.decided_at,
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
    missed = _missed_kinds(session)
    withdrawals = select(EventRow.bundle_id).where(
        EventRow.item.is_(None), EventRow.state == TimelineEvent.WITHDRAWN
    )
    if since is not None:
        withdrawals = withdrawals.where(EventRow.at >= since)
    withdrawn = set(session.scalars(withdrawals))
    return [
        ItemTiming(
            bundle_type=row.bundle_type,
            department=row.department,
            state=ItemState(row.state),
            dispatched_at=row.dispatched_at,
            accepted_at=row.accepted_at,
            rejected_at=row.rejected_at,
            decided_at=row.decided_at,
            acceptance=_finished(row.accept_clock),
            decision=_finished(row.decide_clock),
            overdue_kinds=frozenset(missed.get((row.bundle_id, row.code), ())),
            withdrawn=row.bundle_id in withdrawn and row.state == S.CANCELLED,
        )
        for row in session.execute(query)
    ]


def _finished(document: dict[str, Any] | None) -> Clock | None:
    clock = None if document is None else Clock.model_validate(document)
    return clock if clock is not None and clock.finished else None


def _missed_kinds(session: Session) -> dict[tuple[uuid.UUID, str], set[DeadlineKind]]:
    kinds: dict[tuple[uuid.UUID, str], set[DeadlineKind]] = defaultdict(set)
    for bundle_id, item, kind in session.execute(
        select(DeadlineAlertRow.bundle_id, DeadlineAlertRow.item, DeadlineAlertRow.kind)
        .where(DeadlineAlertRow.level == AlertLevel.MISSED)
        .distinct()
    ):
        kinds[bundle_id, item].add(DeadlineKind(kind))
    return kinds


@dataclass(frozen=True)
class BundleTiming:
    """One bundle against its own promise (its longest chain of items)."""

    bundle_type: str
    clock: Clock | None

    @property
    def on_time(self) -> bool | None:
        return None if self.clock is None else self.clock.on_time


def bundle_timings(
    session: Session, since: datetime | None = None, until: datetime | None = None
) -> list[BundleTiming]:
    query = select(BundleRow.bundle_type, BundleRow.clock)
    if since is not None:
        query = query.where(BundleRow.received_at >= since)
    if until is not None:
        query = query.where(BundleRow.received_at < until)
    return [BundleTiming(row.bundle_type, _finished(row.clock)) for row in session.execute(query)]


@dataclass(frozen=True)
class Figures:
    """The supervision figures of one group of items (a department, or a bundle type)."""

    volume: int  # 办件量: items received
    accepted: int  # 受理 (including 容缺预审)
    rejected: int  # 不予受理量
    completed: int  # 办结: approved or denied
    failed: int  # the department could not handle it
    overdue: int  # marked past a deadline at least once
    withdrawn: int  # cancelled by the applicant's withdrawal (撤回)
    intake_hours_avg: float | None  # 收件时限: dispatch → accepted or rejected
    intake_on_time_ratio: float | None  # answered within 1 working day
    decision_hours_avg: float | None  # 办理时限: dispatch → decided
    decision_on_time_ratio: float | None  # decided within the promised limit, pauses excluded
    decision_working_days_avg: float | None  # 受理 → 办结 in working days, pauses excluded
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
            withdrawn=sum(1 for item in items if item.withdrawn),
            intake_hours_avg=_hours(_mean(item.intake_seconds for item in items)),
            intake_on_time_ratio=_mean(_flag(item.answered_on_time) for item in items),
            decision_hours_avg=_hours(_mean(item.decision_seconds for item in items)),
            decision_on_time_ratio=_mean(_flag(item.decided_on_time) for item in items),
            decision_working_days_avg=_mean(item.decision_working_days for item in items),
            completion_ratio=completed / accepted if accepted else None,
        )


@dataclass(frozen=True)
class BundleFigures:
    """One bundle type's bundles against their own promise, counted apart from items."""

    bundles: int
    replied: int
    on_time_ratio: float | None

    @classmethod
    def of(cls, bundles: Sequence[BundleTiming]) -> BundleFigures:
        return cls(
            bundles=len(bundles),
            replied=sum(1 for bundle in bundles if bundle.clock is not None),
            on_time_ratio=_mean(_flag(bundle.on_time) for bundle in bundles),
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


def bundle_figures_by_type(bundles: Iterable[BundleTiming]) -> dict[str, BundleFigures]:
    groups: dict[str, list[BundleTiming]] = defaultdict(list)
    for bundle in bundles:
        groups[bundle.bundle_type].append(bundle)
    return {name: BundleFigures.of(groups[name]) for name in sorted(groups)}
