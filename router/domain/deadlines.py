"""The deadline watcher: 预警 and 超期, raised once each, for every live deadline.

Acceptance, decision, tolerated-gap (容缺) commitments and the bundle's own promise (see
`router.domain.timekeeping` for when each runs), and the rectifications (整改) a 差评
opened (`router.domain.rectifications`, which marks its own rows once). A deadline at
most one working day away is 预警; a passed one is 超期. Each alert is a row of
`deadline_alerts` whose unique index (bundle, item, kind, level, due) lets `INSERT … ON
CONFLICT DO NOTHING RETURNING` say who raised it first: two watchers, or one restarted,
never raise it twice. The timeline step is written in the same transaction. A deadline
that moves (延期, a newer calendar) is a new deadline and may be warned about again.

Nothing here fails an item: an item past its deadline stays open, shown 超期, until its
department answers (item 7 of issue 14: an outage is lateness, not a refusal).
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime

import structlog
from sqlalchemy import Select, or_, select
from sqlalchemy.orm import Session

from contracts.api import AlertLevel, DeadlineKind, TimelineEvent
from router.domain.clocks import WARNING_WORKING_DAYS, alert_level
from router.domain.rectifications import raise_rectification_alerts, recompute_rectifications
from router.domain.timekeeping import Timekeeper, bundle_clock, deadlines
from router.domain.workdays import CHINA_TZ, WorkingCalendar, working_calendar
from router.store import OPEN_BUNDLE, OPEN_ITEM, BundleRow, Database, DeadlineAlertRow, ItemRow
from router.store.engine import insert_skipping_conflicts
from router.store.timeline import Actor, record_event
from runtime import clock

log = structlog.get_logger(__name__)

# Open rows read at a time: every item waiting at a department is looked at each round,
# and reading them all at once costs the relay ~5 KiB of peak memory per waiting item.
_CHUNK = 100

# An alert is raised once (ux_deadline_alerts_once): the same one again is skipped.
_RAISE_ONCE = insert_skipping_conflicts(DeadlineAlertRow.__table__)  # type: ignore[arg-type]

_STEP = {
    AlertLevel.WARNING: TimelineEvent.DEADLINE_WARNING,
    AlertLevel.MISSED: TimelineEvent.OVERDUE,
}


@dataclass(frozen=True)
class Alert:
    bundle_id: uuid.UUID
    item: str | None
    department: str | None
    kind: DeadlineKind
    level: AlertLevel
    due_at: datetime


class DeadlineWatcher:
    def __init__(
        self,
        database: Database,
        *,
        calendar: Callable[[], WorkingCalendar] = working_calendar,
        every_seconds: float = 30.0,
    ) -> None:
        self._database = database
        self._calendar = calendar
        self._every = every_seconds

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once(clock.now())
            except Exception as error:  # the database is away: look again next round
                log.warning("deadlines.failed", error=repr(error))
            stop.wait(self._every)

    def calendar_changed(self, calendar: WorkingCalendar, years: set[int]) -> None:
        """Registered with the live calendar's `on_change`: a year became official (or its
        file changed), so every open deadline is recomputed at once, not at a restart."""
        with self._database.transaction() as session:
            moved = recompute_deadlines(session, calendar)
        log.info("deadlines.recomputed", years=sorted(years), moved=moved)

    def run_once(self, now: datetime) -> list[Alert]:
        """Raise every 预警 and 超期 due at `now` not raised before; returns those raised."""
        calendar = self._calendar()
        horizon = calendar.add_working_days(now, WARNING_WORKING_DAYS)
        with self._database.transaction() as session:
            alerts = [*_item_alerts(session, calendar, now, horizon)]
            alerts += _bundle_alerts(session, calendar, now, horizon)
            raised = [alert for alert in alerts if _raise_once(session, alert, now)]
            raised += [
                Alert(
                    alert.bundle_id,
                    None,
                    alert.department,
                    DeadlineKind.RECTIFICATION,
                    alert.level,
                    alert.due_at,
                )
                for alert in raise_rectification_alerts(session, calendar, now, horizon)
            ]
        for alert in raised:
            log.warning(
                "deadline.alert",
                bundle_id=str(alert.bundle_id),
                item=alert.item,
                kind=alert.kind,
                level=alert.level,
                department=alert.department,
            )
        return raised


def recompute_deadlines(session: Session, calendar: WorkingCalendar) -> int:
    """Recompute every open clock's deadline with `calendar` (wired to the calendar's
    on_change); returns how many moved, each a `deadline_moved` step."""
    return Timekeeper(session, calendar).recompute() + recompute_rectifications(session, calendar)


def near_deadlines(horizon: datetime) -> Select[ItemRow]:
    """Open items with a live deadline by `horizon`: one partial index per deadline."""
    near = or_(
        ItemRow.accept_due_at <= horizon,
        ItemRow.decide_due_at <= horizon,
        ItemRow.gap_due_at <= horizon,
    )
    return select(ItemRow).where(OPEN_ITEM, near)


def _item_alerts(
    session: Session, calendar: WorkingCalendar, now: datetime, horizon: datetime
) -> list[Alert]:
    alerts = []
    for item in session.scalars(near_deadlines(horizon).execution_options(yield_per=_CHUNK)):
        for kind, due, item_clock in deadlines(item):
            level = (
                item_clock.alert_level(calendar, now, due)
                if item_clock is not None
                else alert_level(calendar, due, now)
            )
            if level is not None:
                alerts.append(Alert(item.bundle_id, item.code, item.department, kind, level, due))
    return alerts


def _bundle_alerts(
    session: Session, calendar: WorkingCalendar, now: datetime, horizon: datetime
) -> list[Alert]:
    alerts = []
    for bundle in session.scalars(
        select(BundleRow)
        .where(OPEN_BUNDLE, BundleRow.due_at <= horizon)
        .execution_options(yield_per=_CHUNK)
    ):
        bundle_promise = bundle_clock(bundle)
        if bundle_promise is None or bundle.due_at is None:
            continue
        level = bundle_promise.alert_level(calendar, now, bundle.due_at)
        if level is not None:
            alerts.append(Alert(bundle.id, None, None, DeadlineKind.BUNDLE, level, bundle.due_at))
    return alerts


def _raise_once(session: Session, alert: Alert, now: datetime) -> bool:
    statement = (
        _RAISE_ONCE[session.get_bind().dialect.name]
        .values(
            bundle_id=alert.bundle_id,
            item=alert.item or "",
            department=alert.department,
            kind=alert.kind,
            level=alert.level,
            due_at=alert.due_at,
            raised_at=now,
        )
        .returning(DeadlineAlertRow.id)
    )
    if session.scalar(statement) is None:
        return False
    record_event(
        session,
        alert.bundle_id,
        alert.item,
        _STEP[alert.level],
        f"{alert.kind} · due {alert.due_at.astimezone(CHINA_TZ).isoformat()}",
        actor=Actor.ROUTER,
        at=now,
    )
    return True
