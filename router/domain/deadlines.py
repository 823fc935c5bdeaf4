"""Deadlines in Chinese working days, and the watcher that marks overdue items.

Seeds: acceptance (受理) within 1 working day of dispatch; decision within the item's
promised time limit (承诺办结时限, the catalog service's `promise_days`). Deadlines are stored
on the item when it is dispatched, so they survive restarts; the watcher compares them
with the clock and marks an item overdue once per kind, with a timeline event.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from sqlalchemy import Select, or_, select

from contracts.api import OverdueKind, TimelineEvent
from contracts.catalog import ACCEPTANCE_WORKING_DAYS
from contracts.messages import ItemState
from router.domain.workdays import WorkingCalendar
from router.store import OPEN_ITEM, Database, ItemRow
from router.store.timeline import Actor, record_event

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Deadlines:
    accept_due_at: datetime
    decide_due_at: datetime | None


def deadlines_for(
    calendar: WorkingCalendar, dispatched_at: datetime, promise_days: int | None
) -> Deadlines:
    """When a just-dispatched item must be accepted and decided; raises UnknownYearError
    rather than guess across a year the calendar does not know."""
    return Deadlines(
        accept_due_at=calendar.add_working_days(dispatched_at, ACCEPTANCE_WORKING_DAYS),
        decide_due_at=None
        if promise_days is None
        else calendar.add_working_days(dispatched_at, promise_days),
    )


class DeadlineWatcher:
    def __init__(
        self,
        database: Database,
        *,
        clock: Callable[[], datetime] = lambda: datetime.now(UTC),
        every_seconds: float = 30.0,
    ) -> None:
        self._database = database
        self._clock = clock
        self._every = every_seconds

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.mark_overdue()
            except Exception as error:  # the database is away: look again next round
                log.warning("deadlines.failed", error=repr(error))
            stop.wait(self._every)

    def mark_overdue(self) -> int:
        """Mark every item past a deadline it has not met; returns how many were marked."""
        now = self._clock()
        with self._database.transaction() as session:
            rows = session.scalars(overdue_candidates(now)).all()
            marked = 0
            for item in rows:
                kind = _missed(item, now)
                if kind is None or kind == item.overdue:
                    continue
                item.overdue = kind
                record_event(
                    session,
                    item.bundle_id,
                    item.code,
                    TimelineEvent.OVERDUE,
                    kind,
                    actor=Actor.ROUTER,
                    at=now,
                )
                log.warning(
                    "item.overdue", bundle_id=str(item.bundle_id), item=item.code, kind=kind
                )
                marked += 1
            return marked


def overdue_candidates(now: datetime) -> Select[ItemRow]:
    """Open items past a deadline they may not have been marked for yet (locked)."""
    return (
        select(ItemRow)
        .where(
            OPEN_ITEM,
            or_(ItemRow.overdue.is_(None), ItemRow.overdue == OverdueKind.ACCEPTANCE),
            or_(ItemRow.accept_due_at < now, ItemRow.decide_due_at < now),
        )
        .with_for_update(skip_locked=True)
    )


def _missed(item: ItemRow, now: datetime) -> OverdueKind | None:
    if item.decide_due_at is not None and item.decide_due_at < now:
        return OverdueKind.DECISION
    if item.state == ItemState.DISPATCHED and item.accept_due_at and item.accept_due_at < now:
        return OverdueKind.ACCEPTANCE
    return None
