"""How a department reports a decision it takes later: an adapter declares one of these
as `decisions` on its class.

    decisions = Polled(PollSchedule())   # the router sends ItemPoll; `poll` answers it
    decisions = CalledBack()             # the department pushes its decision

Either way `handle` returns `Pending` once the department has the filing, instead of
waiting for the decision inside the call.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from contracts.polling import PollSchedule


@dataclass(frozen=True)
class Polled:
    """The router polls the filing on `schedule` (in working-day time) until decided."""

    schedule: PollSchedule = field(default_factory=PollSchedule)


@dataclass(frozen=True)
class CalledBack:
    """The department calls the adapter's decision endpoint back when it has decided."""


DecisionReporting = Polled | CalledBack
