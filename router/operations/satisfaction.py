"""好差评 in the supervision figures: each group's ratings per level, its satisfaction
rate, and its rectifications (整改) still open or past due.

A department's figures count the ratings given to it by name and the rectifications it
owes; a bundle type's count the ratings of its bundles as a whole and every
rectification opened on them. The satisfaction rate is the share rated 基本满意 or
better, that is, not a 差评 (the share the national 好差评 reports call 满意率).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.api import RectificationState, Satisfaction
from router.store import BundleRow, RatingRow, RectificationRow

BUNDLE = ""  # the department of a bundle's own rating (router.domain.ratings)


@dataclass(frozen=True)
class RatingFigures:
    rated: int
    very_satisfied: int  # 非常满意
    satisfied: int  # 满意
    basically_satisfied: int  # 基本满意
    dissatisfied: int  # 不满意
    very_dissatisfied: int  # 非常不满意
    satisfaction_ratio: float | None  # 基本满意 or better ÷ rated
    rectifications_open: int  # 整改 not yet replied to
    rectifications_overdue: int  # open past due, or replied after it

    @classmethod
    def of(
        cls,
        levels: Iterable[Satisfaction],
        rectifications: Iterable[RectificationRow],
        now: datetime,
    ) -> RatingFigures:
        counts = {level: 0 for level in Satisfaction}
        for level in levels:
            counts[level] += 1
        rated = sum(counts.values())
        owed = list(rectifications)
        return cls(
            rated=rated,
            very_satisfied=counts[Satisfaction.VERY_SATISFIED],
            satisfied=counts[Satisfaction.SATISFIED],
            basically_satisfied=counts[Satisfaction.BASICALLY_SATISFIED],
            dissatisfied=counts[Satisfaction.DISSATISFIED],
            very_dissatisfied=counts[Satisfaction.VERY_DISSATISFIED],
            satisfaction_ratio=(
                sum(n for level, n in counts.items() if not level.is_bad) / rated if rated else None
            ),
            rectifications_open=sum(1 for r in owed if r.state == RectificationState.OPEN),
            rectifications_overdue=sum(1 for r in owed if (r.closed_at or now) > r.due_at),
        )


NO_RATINGS = RatingFigures(0, 0, 0, 0, 0, 0, None, 0, 0)


@dataclass(frozen=True)
class RatingGroups:
    by_department: dict[str, RatingFigures]
    by_bundle_type: dict[str, RatingFigures]


def rating_figures(
    session: Session, since: datetime, until: datetime, now: datetime
) -> RatingGroups:
    """The ratings and rectifications of the bundles received in [since, until)."""
    received = (BundleRow.received_at >= since) & (BundleRow.received_at < until)
    ratings = session.execute(
        select(BundleRow.bundle_type, RatingRow.department, RatingRow.level)
        .join(BundleRow, BundleRow.id == RatingRow.bundle_id)
        .where(received)
    ).all()
    owed = session.execute(
        select(BundleRow.bundle_type, RectificationRow)
        .join(BundleRow, BundleRow.id == RectificationRow.bundle_id)
        .where(received)
    ).all()
    levels: dict[tuple[str, str], list[Satisfaction]] = defaultdict(list)
    for bundle_type, department, level in ratings:
        key = ("type", bundle_type) if department == BUNDLE else ("department", department)
        levels[key].append(Satisfaction(level))
    rectifications: dict[tuple[str, str], list[RectificationRow]] = defaultdict(list)
    for bundle_type, row in owed:
        rectifications["type", bundle_type].append(row)
        rectifications["department", row.department].append(row)
    groups: dict[str, dict[str, RatingFigures]] = {"type": {}, "department": {}}
    for kind, code in sorted({*levels, *rectifications}):
        groups[kind][code] = RatingFigures.of(levels[kind, code], rectifications[kind, code], now)
    return RatingGroups(by_department=groups["department"], by_bundle_type=groups["type"])
