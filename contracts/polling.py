"""How often a department that decides later is asked for its decision: data an adapter
declares (`decisions = Polled(PollSchedule(...))`) and the router's poll scheduler follows.

A schedule is a pace per phase, counted from the department's first "pending" answer,
then fixed times of day (China time) on working days only, for as long as the department
takes. The router owns the working-day calendar, so it, not the adapter, turns a schedule
into poll times.
"""

from __future__ import annotations

from datetime import time, timedelta

from pydantic import BaseModel, ConfigDict, Field, model_validator


class _Frozen(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class PollPhase(_Frozen):
    """Poll `every` so often while less than `until` has passed since the first pending."""

    until: timedelta = Field(gt=timedelta(0))
    every: timedelta = Field(gt=timedelta(0))


class PollSchedule(_Frozen):
    """The default: every 5 minutes in the first hour, hourly for the first day, then at
    09:30 and 15:00 on every working day."""

    phases: tuple[PollPhase, ...] = (
        PollPhase(until=timedelta(hours=1), every=timedelta(minutes=5)),
        PollPhase(until=timedelta(days=1), every=timedelta(hours=1)),
    )
    working_day_times: tuple[time, ...] = Field(
        default=(time(9, 30), time(15, 0)),
        min_length=1,
        description="Times of day in China (UTC+8), on working days, once the phases are over",
    )

    @model_validator(mode="after")
    def _ordered(self) -> PollSchedule:
        ends = [phase.until for phase in self.phases]
        if ends != sorted(set(ends)):
            raise ValueError("phases must end one after another")
        if list(self.working_day_times) != sorted(set(self.working_day_times)):
            raise ValueError("working_day_times must be distinct and in order")
        return self
