"""A deadline clock in working days: it starts, pauses, resumes, is extended, finishes.

A `Clock` is a value stored as JSON on its item or bundle. It never holds a due date
computed once and forgotten: the due date follows from the working days allowed, the
days already used in earlier runs and the start of the current run, so a pause keeps
the days used, and a newer calendar (an official year replacing an estimate) moves it.

    limit + extended − used = working days left when the current run started
    due = end of the (days left)-th working day after `running_since`

Working days are counted as `WorkingCalendar.add_working_days` counts them (民法典
第二百零一条: the start day is not counted), so a run from Monday to Wednesday uses two.
"""

from __future__ import annotations

from datetime import datetime

from pydantic import AwareDatetime, BaseModel, ConfigDict

from contracts.api import AlertLevel, ClockStatus, DeadlineKind
from router.domain.workdays import WorkingCalendar, china_date

WARNING_WORKING_DAYS = 1
"""预警 once the deadline is at most this many working days away."""


class Pause(BaseModel):
    """A stop: waiting for the applicant, or time the law excludes (听证, 鉴定 …)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    since: AwareDatetime
    until: AwareDatetime | None = None
    cause: str


class Clock(BaseModel):
    """One deadline's working days: allowed, used, and the current run if running."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: DeadlineKind
    limit: int
    started_at: AwareDatetime | None = None  # None: armed, waiting for its start (受理)
    used: int = 0
    running_since: AwareDatetime | None = None
    finished_at: AwareDatetime | None = None
    extendable_days: int = 0
    extended_days: int = 0
    extension_reason: str | None = None
    pauses: tuple[Pause, ...] = ()

    def start(self, at: datetime) -> Clock:
        """Start an armed clock; a clock started before keeps its time."""
        if self.started_at is not None:
            return self
        return self.model_copy(update={"started_at": at, "running_since": at})

    @property
    def allowed(self) -> int:
        return self.limit + self.extended_days

    @property
    def running(self) -> bool:
        return self.running_since is not None

    @property
    def paused_cause(self) -> str | None:
        return self.pauses[-1].cause if self.pauses and self.pauses[-1].until is None else None

    @property
    def finished(self) -> bool:
        return self.finished_at is not None

    @property
    def on_time(self) -> bool | None:
        """None until finished; then whether it finished within the days allowed."""
        return None if self.finished_at is None else self.used <= self.allowed

    def due(self, calendar: WorkingCalendar) -> datetime | None:
        """The deadline while running; None while paused. Raises UnknownYearError when
        the calendar cannot reach it."""
        if self.running_since is None:
            return None
        return calendar.add_working_days(self.running_since, max(self.allowed - self.used, 0))

    def days_used(self, calendar: WorkingCalendar, at: datetime) -> int:
        if self.running_since is None or at <= self.running_since:
            return self.used
        return self.used + calendar.working_days_between(self.running_since, at)

    def pause(self, calendar: WorkingCalendar, at: datetime, cause: str) -> Clock:
        """Stop the clock, keeping the working days this run used."""
        if not self.running:
            return self
        return self.model_copy(
            update={
                "used": self.days_used(calendar, at),
                "running_since": None,
                "pauses": (*self.pauses, Pause(since=at, cause=cause)),
            }
        )

    def resume(self, at: datetime) -> Clock:
        if self.running or self.finished or self.paused_cause is None:
            return self
        last = self.pauses[-1]
        return self.model_copy(
            update={
                "running_since": at,
                "pauses": (*self.pauses[:-1], last.model_copy(update={"until": at})),
            }
        )

    def extend(self, days: int, reason: str) -> Clock:
        """延期, once, within the days the item may be extended by; raises ValueError
        otherwise (the caller notes the refused extension on the timeline)."""
        if self.extended_days:
            raise ValueError("the deadline was extended already: 延期 is allowed once")
        if days > self.extendable_days:
            raise ValueError(
                f"延期 by {days} working days exceeds the {self.extendable_days} allowed"
            )
        return self.model_copy(update={"extended_days": days, "extension_reason": reason})

    def finish(self, calendar: WorkingCalendar, at: datetime) -> Clock:
        """Stop for good (decided, answered); the days used are kept for supervision."""
        if self.finished:
            return self
        used = self.days_used(calendar, at)
        return self.model_copy(update={"used": used, "running_since": None, "finished_at": at})

    def alert_level(
        self, calendar: WorkingCalendar, now: datetime, due_at: datetime
    ) -> AlertLevel | None:
        """A 预警 needs a working day used: a one-day acceptance clock is not a warning
        the moment it starts, only on its last day."""
        return alert_level(calendar, due_at, now, may_warn=self.days_used(calendar, now) > 0)

    def status(
        self, calendar: WorkingCalendar, now: datetime, due_at: datetime | None
    ) -> ClockStatus:
        used = self.days_used(calendar, self.finished_at or now)
        return ClockStatus(
            kind=self.kind,
            due_at=due_at,
            limit_days=self.allowed,
            days_used=used,
            days_left=self.allowed - used,
            running=self.running,
            paused_cause=self.paused_cause,
            finished_at=self.finished_at,
            provisional=is_provisional(calendar, due_at),
        )


def alert_level(
    calendar: WorkingCalendar, due_at: datetime, now: datetime, *, may_warn: bool = True
) -> AlertLevel | None:
    """超期 past the deadline; 预警 when at most one working day is left and `may_warn`."""
    if now > due_at:
        return AlertLevel.MISSED
    if may_warn and calendar.working_days_between(now, due_at) <= WARNING_WORKING_DAYS:
        return AlertLevel.WARNING
    return None


def is_provisional(calendar: WorkingCalendar, due_at: datetime | None) -> bool:
    return due_at is not None and not calendar.is_official(china_date(due_at).year)
