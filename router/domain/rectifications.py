"""整改: a 差评 obliges the department it is about to check it and reply to the applicant.

国办发〔2019〕51号 asks every 差评 to be verified, rectified and answered, and a case
too complex to settle at once to be put on a ledger and rectified within a limit; the
limit is counted in working days (`LIANBAN_RECTIFICATION_WORKING_DAYS`, 15 by default,
the period provincial 好差评 rules set for 差评整改). A rectification is open until its
department replies, through the ops API or its own staff's scope; the reply is what the
platform shows the applicant. The deadline watcher raises its 预警 and 超期 once each:
`warned_at` and `overdue_at` are set by an `UPDATE … WHERE … IS NULL`, which only one
watcher's transaction can win, with the timeline step in that same transaction.

    open ──reply──▶ closed          (overdue: open past due_at, or closed after it)
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from contracts.api import (
    AlertLevel,
    Rectification,
    RectificationState,
    Satisfaction,
    TimelineEvent,
)
from contracts.ids import new_id
from router.domain.clocks import alert_level
from router.domain.workdays import CHINA_TZ, WorkingCalendar
from router.store import BundleRow, Database, RectificationRow, audit
from router.store.tables import OPEN_RECTIFICATION
from router.store.timeline import department_actor, record_event

DEFAULT_WORKING_DAYS = 15


def open_rectification(
    session: Session,
    bundle: BundleRow,
    department: str,
    level: Satisfaction,
    comment: str | None,
    *,
    calendar: WorkingCalendar,
    working_days: int,
    at: datetime,
) -> RectificationRow:
    """Open 整改 for `department`, due at the end of the `working_days`-th working day
    after `at` (the day it opens is not counted, as for every other deadline)."""
    row = RectificationRow(
        id=new_id(),
        bundle_id=bundle.id,
        department=department,
        level=level,
        comment=comment,
        state=RectificationState.OPEN,
        opened_at=at,
        working_days=working_days,
        due_at=calendar.add_working_days(at, working_days),
    )
    session.add(row)
    record_event(
        session,
        bundle.id,
        None,
        TimelineEvent.RECTIFICATION_OPENED,
        f"{department} · {level.name_zh} · due {_china(row.due_at)}",
        actor=department_actor(department),
        at=at,
    )
    return row


class Replied(StrEnum):
    CLOSED = "closed"
    UNKNOWN = "unknown"  # no such rectification (or another department's)
    ALREADY_CLOSED = "already_closed"


def reply(
    database: Database,
    rectification_id: uuid.UUID,
    text: str,
    *,
    actor: str,
    at: datetime,
    department: str | None = None,
) -> Replied:
    """Close the rectification with the department's reply to the applicant; with
    `department`, only that department's own."""
    with database.transaction() as session:
        row = session.get(RectificationRow, rectification_id, with_for_update=True)
        if row is None or department not in (None, row.department):
            return Replied.UNKNOWN
        if row.state == RectificationState.CLOSED:
            return Replied.ALREADY_CLOSED
        row.state, row.reply, row.closed_at, row.closed_by = (
            RectificationState.CLOSED,
            text,
            at,
            actor[:128],
        )
        late = " (超期)" if at > row.due_at else ""
        record_event(
            session,
            row.bundle_id,
            None,
            TimelineEvent.RECTIFICATION_CLOSED,
            f"{row.department} replied{late}",
            actor=department_actor(row.department),
            at=at,
        )
        audit.record(
            session,
            actor=actor,
            event=audit.AuditEvent.RECTIFIED,
            outcome="closed late" if late else "closed",
            bundle_id=row.bundle_id,
            detail=row.department,
        )
        return Replied.CLOSED


def recompute_rectifications(session: Session, calendar: WorkingCalendar) -> int:
    """Recompute open rectifications' due dates with `calendar` (a year became official);
    a moved one is a new deadline, warned about again, and a `deadline_moved` step."""
    moved = 0
    open_rows = select(RectificationRow).where(OPEN_RECTIFICATION).with_for_update()
    for row in session.scalars(open_rows):
        due = calendar.add_working_days(row.opened_at, row.working_days)
        if due == row.due_at:
            continue
        record_event(
            session,
            row.bundle_id,
            None,
            TimelineEvent.DEADLINE_MOVED,
            f"rectification · {row.department} · due {_china(due)}, from {_china(row.due_at)}",
            actor=department_actor(row.department),
        )
        row.due_at, row.warned_at, row.overdue_at = due, None, None
        moved += 1
    return moved


def rectification_view(row: RectificationRow, project_no: str, now: datetime) -> Rectification:
    return Rectification(
        id=row.id,
        bundle_id=row.bundle_id,
        project_no=project_no,
        department=row.department,
        level=Satisfaction(row.level),
        comment=row.comment,
        state=RectificationState(row.state),
        opened_at=row.opened_at,
        due_at=row.due_at,
        overdue=(row.closed_at or now) > row.due_at,
        reply=row.reply,
        closed_at=row.closed_at,
    )


def rectifications(
    session: Session,
    now: datetime,
    *,
    state: RectificationState | None = None,
    department: str | None = None,
    bundle_id: uuid.UUID | None = None,
    rectification_id: uuid.UUID | None = None,
) -> list[Rectification]:
    """Rectifications, the earliest due first."""
    query = select(RectificationRow, BundleRow.project_no).join(
        BundleRow, BundleRow.id == RectificationRow.bundle_id
    )
    if state is not None:
        query = query.where(RectificationRow.state == state)
    if department is not None:
        query = query.where(RectificationRow.department == department)
    if bundle_id is not None:
        query = query.where(RectificationRow.bundle_id == bundle_id)
    if rectification_id is not None:
        query = query.where(RectificationRow.id == rectification_id)
    rows = session.execute(query.order_by(RectificationRow.due_at, RectificationRow.department))
    return [rectification_view(row, project_no, now) for row, project_no in rows]


@dataclass(frozen=True)
class RectificationAlert:
    rectification_id: uuid.UUID
    bundle_id: uuid.UUID
    department: str
    level: AlertLevel
    due_at: datetime


def raise_rectification_alerts(
    session: Session, calendar: WorkingCalendar, now: datetime, horizon: datetime
) -> list[RectificationAlert]:
    """The deadline watcher's round for open rectifications due by `horizon`: each 预警
    and 超期 raised once, with its timeline step; returns those this call raised."""
    raised = []
    due = select(RectificationRow).where(OPEN_RECTIFICATION, RectificationRow.due_at <= horizon)
    for row in session.scalars(due):
        level = alert_level(calendar, row.due_at, now)
        for alert in _not_yet_raised(row, level):
            if _mark_once(session, row.id, alert, now):
                record_event(
                    session,
                    row.bundle_id,
                    None,
                    TimelineEvent.OVERDUE
                    if alert is AlertLevel.MISSED
                    else TimelineEvent.DEADLINE_WARNING,
                    f"rectification · {row.department} · due {_china(row.due_at)}",
                    actor=department_actor(row.department),
                    at=now,
                )
                raised.append(
                    RectificationAlert(row.id, row.bundle_id, row.department, alert, row.due_at)
                )
    return raised


def _not_yet_raised(row: RectificationRow, level: AlertLevel | None) -> Iterable[AlertLevel]:
    if level is AlertLevel.WARNING and row.warned_at is None:
        yield AlertLevel.WARNING
    if level is AlertLevel.MISSED and row.overdue_at is None:
        yield AlertLevel.MISSED


def _mark_once(
    session: Session, rectification_id: uuid.UUID, level: AlertLevel, now: datetime
) -> bool:
    column = (
        RectificationRow.overdue_at if level is AlertLevel.MISSED else RectificationRow.warned_at
    )
    marked = session.scalar(
        update(RectificationRow)
        .where(RectificationRow.id == rectification_id, column.is_(None))
        .values({column: now})
        .returning(RectificationRow.id)
        .execution_options(synchronize_session=False)
    )
    return marked is not None


def _china(moment: datetime) -> str:
    return moment.astimezone(CHINA_TZ).isoformat()
