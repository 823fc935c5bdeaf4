"""Polling departments that decide later: when to ask next, and the scheduler that asks.

A department that answers "pending" gets a `decision_polls` row, written with that
answer (`router.domain.correlator`). The scheduler sends an `ItemPoll` for each row that
is due, through the outbox and so signed and confirmed like every department message,
and moves the row's next poll along the department's schedule in the same transaction:
a restart loses no poll, and none is sent twice. A backlog (after an outage, say) is
spread: at most `per_department` polls per department per round, the rest wait for
the next round, and each next poll gets up to `jitter` of random delay so polls that
fell due together do not stay together.
"""

from __future__ import annotations

import random
import threading
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime, timedelta

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.api import TimelineEvent
from contracts.messages import ItemPoll, ItemState, Pending
from contracts.polling import PollSchedule
from router.domain.progress import filing_of, send_to_department
from router.domain.workdays import CHINA_TZ, WorkingCalendar, china_date, working_calendar
from router.store import Database, DecisionPollRow, ItemRow
from router.store.timeline import department_actor, record_event
from runtime import clock

log = structlog.get_logger(__name__)


class PollPlan:
    """Each department's declared schedule (the default for one that declared none),
    turned into poll times with the working-day calendar."""

    def __init__(
        self,
        schedules: Mapping[str, PollSchedule] | None = None,
        calendar: WorkingCalendar | None = None,
        *,
        called_back: frozenset[str] = frozenset(),
    ) -> None:
        """`called_back`: the departments that push their decisions (never polled)."""
        self._schedules = dict(schedules or {})
        self._calendar = calendar
        self._called_back = called_back

    def polls(self, department: str) -> bool:
        return department not in self._called_back

    def schedule_of(self, department: str) -> PollSchedule:
        return self._schedules.get(department) or PollSchedule()

    def next_poll_at(self, department: str, pending_since: datetime, after: datetime) -> datetime:
        """The first poll time strictly after `after`, in UTC."""
        schedule = self.schedule_of(department)
        elapsed = after - pending_since
        for phase in schedule.phases:
            if elapsed < phase.until:
                # Keep the phase's rhythm from `pending_since`, so a late round does not
                # shift every later poll.
                steps = elapsed // phase.every + 1
                return (pending_since + steps * phase.every).astimezone(UTC)
        calendar = self._calendar or working_calendar()
        day = china_date(after)
        while True:
            if calendar.is_working_day(day):
                for at in schedule.working_day_times:
                    candidate = datetime.combine(day, at, tzinfo=CHINA_TZ)
                    if candidate > after:
                        return candidate.astimezone(UTC)
            day += timedelta(days=1)


def record_pending(
    session: Session, plan: PollPlan, item: ItemRow, pending: Pending, at: datetime
) -> None:
    """Keep (or start) polling `item` after its department answered "pending"; the
    timeline shows the first answer and every change of the department's words."""
    at = at.astimezone(UTC)
    poll = item.decision_poll
    if poll is None:
        poll = item.decision_poll = DecisionPollRow(
            bundle_id=item.bundle_id,
            item=item.code,
            department=item.department,
            pending_since=at,
            next_poll_at=plan.next_poll_at(item.department, at, at)
            if plan.polls(item.department)
            else None,
            last_poll_at=None,
            last_answer="",
            last_answer_at=at,
            filing_ref=None,
            polls=0,
        )
    if poll.last_answer != pending.department_status:
        record_event(
            session,
            item.bundle_id,
            item.code,
            TimelineEvent.DECISION_PENDING,
            pending.department_status,
            actor=department_actor(item.department),
            at=at,
        )
    poll.last_answer = pending.department_status
    poll.last_answer_at = at
    poll.filing_ref = pending.filing_ref or poll.filing_ref
    if poll.next_poll_at is not None and (
        pending.next_poll_after is not None and pending.next_poll_after > poll.next_poll_at
    ):
        poll.next_poll_at = pending.next_poll_after.astimezone(UTC)


def resume_polling(plan: PollPlan, item: ItemRow, at: datetime) -> None:
    """Poll `item` again at once: its department refused a cancel (it has decided) and
    its decision has not come yet. The scheduler keeps polling on the department's
    schedule until the decision comes."""
    if not plan.polls(item.department):
        return  # it calls back
    at = at.astimezone(UTC)
    if item.decision_poll is None:
        item.decision_poll = DecisionPollRow(
            bundle_id=item.bundle_id,
            item=item.code,
            department=item.department,
            pending_since=at,
            next_poll_at=at,
            last_poll_at=None,
            last_answer="",
            last_answer_at=at,
            filing_ref=None,
            polls=0,
        )
    else:
        item.decision_poll.next_poll_at = at


def awaits_decision(item: ItemRow) -> bool:
    """Open, or cancelled with the cancel refused and the standing decision not in yet."""
    if item.state == ItemState.CANCELLED:
        return item.cancel_refused_at is not None
    return not ItemState(item.state).is_final


def stop_polling(item: ItemRow) -> bool:
    """Stop polling `item` (its department answered); True if it was being polled, that
    is, the department had the filing."""
    if item.decision_poll is None:
        return False
    item.decision_poll = None  # deleted with the item's next flush (delete-orphan)
    return True


class PollScheduler:
    def __init__(
        self,
        database: Database,
        plan: PollPlan,
        *,
        per_department: int = 50,
        jitter: timedelta = timedelta(seconds=30),
        every_seconds: float = 5.0,
    ) -> None:
        self._database = database
        self._plan = plan
        self._per_department = per_department
        self._jitter = jitter
        self._every = every_seconds

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.run_once(clock.now())
            except Exception as error:  # the database is away: try again next round
                log.warning("polls.failed", error=repr(error))
            stop.wait(self._every)

    def run_once(self, now: datetime) -> int:
        """Send the polls due at `now` (up to the cap per department); returns how many."""
        now = now.astimezone(UTC)  # SQLite compares stored times as text, all in UTC
        sent: Counter[str] = Counter()
        with self._database.transaction() as session:
            departments = session.scalars(
                select(DecisionPollRow.department)
                .where(DecisionPollRow.next_poll_at <= now)
                .distinct()
            ).all()
            # Each department's share of the round, not every poll due: a backlog of
            # thousands waiting is read a share at a time, so memory stays flat.
            due = [
                row
                for department in departments
                for row in session.execute(
                    select(DecisionPollRow, ItemRow)
                    .join(
                        ItemRow,
                        (ItemRow.bundle_id == DecisionPollRow.bundle_id)
                        & (ItemRow.code == DecisionPollRow.item),
                    )
                    .where(
                        DecisionPollRow.department == department,
                        DecisionPollRow.next_poll_at <= now,
                    )
                    .order_by(DecisionPollRow.next_poll_at)
                    .limit(self._per_department)
                    .with_for_update(of=DecisionPollRow, skip_locked=True)
                )
            ]
            for poll, item in due:
                if not awaits_decision(item):  # closed by the router (withdrawn, say)
                    session.delete(poll)
                    continue
                message = ItemPoll(
                    **filing_of(item.bundle, item),
                    item_name_zh=item.name_zh,
                    filing_ref=poll.filing_ref,
                )
                send_to_department(session, item, message)
                poll.last_poll_at = now
                poll.polls += 1
                poll.next_poll_at = (
                    self._plan.next_poll_at(poll.department, poll.pending_since, now)
                    + self._jitter * random.random()
                )
                sent[poll.department] += 1
        total = sum(sent.values())
        if total:
            log.info("polls.sent", by_department=dict(sent))
        return total
