"""The issue's newborn through the whole running stack in simulated weeks (time-machine,
frozen between moves, never sleeps), embedded (memory://, SQLite) and connected
(RabbitMQ, PostgreSQL): intake → relay → department queues → simulated departments →
correlator → poll scheduler → deadline watcher, each on its own thread, looking at the
simulated moment. Time moves through each day's 09:00, 12:00 and 16:00 and every poll the
scheduler has planned; after each move the stack is left to settle.

The medical insurance asks for a correction, answered four working days later; police
answers "pending" until its fifth working day after 受理.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine
from harness import Running, eventually, new_project_no, running_stack
from sqlalchemy import func, select

from adapters.simulated import DecisionLedger, Rule, Scenario, Verdict, simulated_adapter
from contracts.catalog import Catalog
from contracts.samples import sample_application, sample_material_ref
from lianban.settings import Settings
from router.operations.supervision import bundle_timings, figures_by, item_timings
from router.store import DecisionPollRow, OutboxRow
from runtime import clock

CHINA = timezone(timedelta(hours=8))
POLICE, INSURANCE = "birth_registration", "medical_insurance_nonlocal_parents"
SCENARIO = Scenario(
    rules={
        INSURANCE: Rule(Verdict.CORRECT, reason="缺少父母居住证"),
        # Filed (and 受理) on its first working day; pending through its fifth after it.
        POLICE: Rule(pending_working_days=5),
    }
)
WORKING_HOURS = (time(9), time(12), time(16))


def china(month: int, day: int, hour: int = 9, minute: int = 0, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=CHINA)


@dataclass
class Journey:
    """One newborn bundle in a running stack, taken through simulated days."""

    settings: Settings
    catalog: Catalog
    traveller: time_machine.Coordinates
    stack: ExitStack
    running: Running
    receipt: dict[str, Any] = field(default_factory=dict)
    polled: list[datetime] = field(default_factory=list)

    @property
    def bundle_id(self) -> uuid.UUID:
        return uuid.UUID(self.receipt["bundle_id"])

    def restart(self, when: datetime) -> None:
        """Stop the stack, move to `when` while it is down, start a new one on the same
        database and broker (and the same departments, whose filings outlive it)."""
        adapters = self.running.stack.adapters
        self.stack.close()
        self.traveller.move_to(when)
        self.polled += [when] * self._polls_due(when)  # sent once, by the new stack
        self.running = self.stack.enter_context(
            running_stack(self.settings, self.catalog, SCENARIO, adapters)
        )
        self.settle()

    def status(self) -> dict[str, Any]:
        status: dict[str, Any] = self.running.client.get(self.receipt["status_url"]).json()
        return status

    def item(self, code: str) -> dict[str, Any]:
        return next(item for item in self.status()["items"] if item["item"] == code)

    def travel(self, until: datetime, actions: dict[datetime, Callable[[], None]]) -> None:
        """Move to each working hour, action and planned poll up to `until`, in order."""
        while (when := self._next_moment(actions)) is not None and when <= until:
            polls_due = self._polls_due(when)
            self.traveller.move_to(when)
            if when in actions:
                actions.pop(when)()
            self.polled += [when] * polls_due
            self.settle()

    def settle(self) -> None:
        """Wait until the threads are done with this moment: nothing left to send, every
        poll answered, and the timeline unchanged between two looks."""
        last: list[tuple[int, int, int]] = []

        def quiet(now: tuple[int, int, int]) -> bool:
            settled = bool(last) and now == last[-1] and now[1:] == (0, 0)
            last.append(now)
            return settled

        eventually(self._activity, quiet, timeout=60, every=0.15, message="the stack kept busy")

    def _activity(self) -> tuple[int, int, int]:
        with self.running.stack.database.transaction() as session:
            unsent = session.scalar(
                select(func.count())
                .select_from(OutboxRow)
                .where(OutboxRow.correlation_id == str(self.bundle_id), OutboxRow.sent_at.is_(None))
            )
            polls = session.scalars(
                select(DecisionPollRow).where(DecisionPollRow.bundle_id == self.bundle_id)
            ).all()
        now = datetime.now(UTC)
        unanswered = sum(
            1
            for poll in polls
            if (poll.next_poll_at is not None and poll.next_poll_at <= now)
            or (poll.last_poll_at is not None and poll.last_answer_at < poll.last_poll_at)
        )
        return len(self.status()["timeline"]), unsent or 0, unanswered

    def _polls_due(self, when: datetime) -> int:
        with self.running.stack.database.transaction() as session:
            return len(
                session.scalars(
                    select(DecisionPollRow).where(
                        DecisionPollRow.bundle_id == self.bundle_id,
                        DecisionPollRow.next_poll_at <= when,
                    )
                ).all()
            )

    def _next_moment(self, actions: dict[datetime, Callable[[], None]]) -> datetime | None:
        now = datetime.now(UTC)
        today = now.astimezone(CHINA).date()
        hours = [
            datetime.combine(today + timedelta(days=days), hour, tzinfo=CHINA)
            for days in (0, 1)
            for hour in WORKING_HOURS
        ]
        with self.running.stack.database.transaction() as session:
            poll = session.scalar(
                select(func.min(DecisionPollRow.next_poll_at)).where(
                    DecisionPollRow.bundle_id == self.bundle_id
                )
            )
        moments = [*hours, *actions, *([poll] if poll is not None else [])]
        return min((moment for moment in moments if moment > now), default=None)

    def correct(self, item: str) -> None:
        response = self.running.client.post(
            f"/v1/bundles/{self.bundle_id}/items/{item}/corrections",
            json={"materials": [sample_material_ref()]},
        )
        assert response.status_code == 202, response.text


@contextmanager
def newborn_journey(settings: Settings, catalog: Catalog, start: datetime) -> Iterator[Journey]:
    """A newborn bundle received at `start` by a stack whose roles look often (wall time)
    at the frozen moment, polling exactly on schedule."""
    settings = settings.model_copy(
        update={
            "poll_round_seconds": 0.02,
            "poll_jitter_seconds": 0,
            "deadline_check_seconds": 0.02,
            "calendar_check_seconds": 0.05,
        }
    )
    ledger = DecisionLedger()
    departments = [
        simulated_adapter(department, catalog, SCENARIO, ledger)
        for department in ("police", "medical_insurance")
    ]
    with time_machine.travel(start, tick=False) as traveller, ExitStack() as stack:
        running = stack.enter_context(running_stack(settings, catalog, SCENARIO, departments))
        journey = Journey(settings, catalog, traveller, stack, running)
        application = sample_application(catalog.bundle_types["newborn"], new_project_no())
        journey.receipt = running.submit(application).json()
        journey.settle()
        yield journey


def print_timeline(title: str, status: dict[str, Any]) -> None:
    print(f"\n{title}\n{'China time':<17} {'event':<23} {'item':<36} detail")
    for step in status["timeline"]:
        when = datetime.fromisoformat(step["at"]).astimezone(CHINA).strftime("%m-%d %a %H:%M")
        item, detail = step["item"] or "(bundle)", step["detail"] or ""
        print(f"{when:<17} {step['state']:<23} {item:<36} {detail}")


def clock_steps(status: dict[str, Any]) -> list[tuple[str, str, str | None, str | None]]:
    """The steps that start, pause, resume, move or raise a deadline (预警, 超期), and the
    reply: (China time, step, item, the due date it names). Every department here answers
    in time, so an expected list without 预警 or 超期 asserts that none was raised."""
    watched = {
        "clock_started",
        "clock_paused",
        "clock_resumed",
        "deadline_moved",
        "deadline_warning",
        "overdue",
        "replied",
    }
    steps = [
        (
            datetime.fromisoformat(step["at"]).astimezone(CHINA).strftime("%m-%d %H:%M"),
            step["state"],
            step["item"],
            due.group(1)
            if (due := re.search(r"due (\d{4}-\d{2}-\d{2})", step["detail"] or ""))
            else None,
        )
        for step in status["timeline"]
        if step["state"] in watched
    ]
    # Departments answer on threads of their own: steps of one moment come in any order.
    return sorted_steps(steps)


def sorted_steps(
    steps: list[tuple[str, str, str | None, str | None]],
) -> list[tuple[str, str, str | None, str | None]]:
    return sorted(steps, key=lambda step: tuple(part or "" for part in step))


def poll_times(pending_since: datetime, working_days: list[date]) -> list[datetime]:
    """The default schedule (`PollSchedule()`): every 5 minutes for the first hour, hourly
    to the end of the first day, then 09:30 and 15:00 on the given working days."""
    polls = [pending_since + timedelta(minutes=5 * n) for n in range(1, 13)]
    polls += [pending_since + timedelta(hours=n) for n in range(2, 25)]
    polls += [
        datetime.combine(day, at, tzinfo=CHINA)
        for day in working_days
        for at in (time(9, 30), time(15))
    ]
    return polls


def assert_on_time(journey: Journey, police_days: int, bundle_days: int) -> None:
    """Supervision's figures for this bundle alone (a connected database is shared)."""
    received = datetime.fromisoformat(journey.receipt["received_at"])
    window = {"since": received, "until": received + timedelta(seconds=1)}
    with journey.running.stack.database.transaction() as session:
        items = item_timings(session, **window)
        [bundle] = bundle_timings(session, **window)
    figures = figures_by(items, lambda item: item.department)
    assert all(f.completed == f.volume for f in figures.values())
    assert all(f.intake_on_time_ratio == 1.0 for f in figures.values())
    assert all(f.decision_on_time_ratio == 1.0 for f in figures.values())
    assert figures["police"].decision_working_days_avg == police_days
    assert bundle.on_time is True and bundle.clock is not None
    assert bundle.clock.used == bundle_days


def assert_no_item_failed(status: dict[str, Any]) -> None:
    assert status["state"] == "replied"
    assert {item["state"] for item in status["items"]} == {"approved"}
    assert "failed" not in {step["state"] for step in status["timeline"]}


def test_newborn_across_spring_festival_2026(settings: Settings, catalog: Catalog) -> None:
    # Received Thursday 12 February 2026; 15–23 February off, Saturday 14 February worked.
    with newborn_journey(settings, catalog, china(2, 12)) as journey:
        journey.travel(china(3, 2, 16), {china(2, 25, 10): lambda: journey.correct(INSURANCE)})
        status = journey.status()
        assert_on_time(journey, police_days=5, bundle_days=1)
    print_timeline("新生儿出生 across Spring Festival 2026 (embedded and connected alike)", status)

    health_and_police = ("birth_medical_certificate", "vaccination_certificate", POLICE)
    dispatched = (*health_and_police[:2], INSURANCE, "social_security_card_application")
    assert clock_steps(status) == sorted_steps(
        [
            ("02-12 09:00", "clock_started", None, "2026-04-20"),  # 42 working days
            # Accepted by the end of the next working day …
            *(("02-12 09:00", "clock_started", item, "2026-02-13") for item in dispatched),
            # … and decided within 20 working days from 受理, counted past the festival.
            ("02-12 09:00", "clock_started", "birth_medical_certificate", "2026-03-18"),
            ("02-12 09:00", "clock_started", POLICE, "2026-02-13"),
            ("02-12 09:00", "clock_paused", None, None),  # the insurance asks for a correction
            ("02-12 09:00", "clock_started", "vaccination_certificate", "2026-03-18"),
            ("02-12 09:00", "clock_started", POLICE, "2026-03-18"),
            # Answered four working days later (13, 14, 24, 25 Feb): a new acceptance
            # deadline, and the bundle resumes with none of its days used.
            ("02-25 10:00", "clock_started", INSURANCE, "2026-02-26"),
            ("02-25 10:00", "clock_resumed", None, "2026-04-24"),
            # Police decides on its fifth working day (13, 14, 24, 25, 26 Feb), at its poll.
            ("02-26 09:30", "clock_started", INSURANCE, "2026-03-25"),
            ("02-26 09:30", "clock_started", "social_security_card_application", "2026-03-25"),
            ("02-26 09:30", "replied", None, None),
        ]
    )
    # Polled on schedule, on Saturday 14 February too, never during the festival.
    working_days = [date(2026, 2, day) for day in (13, 14, 24, 25)]
    polls = [*poll_times(china(2, 12), working_days), china(2, 26, 9, 30)]
    assert [at.astimezone(UTC) for at in journey.polled] == [at.astimezone(UTC) for at in polls]
    assert_no_item_failed(status)


YEAR_2027 = """\
year: 2027
source: "test: the 2027 notice as an operator transcribes it"
holidays:
  - {name: 元旦, from: 2027-01-01, to: 2027-01-03}
  - {name: 春节, from: 2027-02-06, to: 2027-02-14}
working_weekends: [2027-02-20]
"""


def test_newborn_into_an_unofficial_2027_with_a_restart(
    settings: Settings, catalog: Catalog, year_dir: Path
) -> None:
    # Received Monday 21 December 2026; no official 2027: the statutory holidays and
    # weekends stand in for it (provisional) until the operator adds the year's file.
    def year_file_added() -> None:
        (year_dir / "2027.yaml").write_text(YEAR_2027, encoding="utf-8")

    with newborn_journey(settings, catalog, china(12, 21)) as journey:
        journey.travel(china(12, 24, 12), {})
        before = journey.item(POLICE)
        # The router is down when Thursday's 15:00 poll falls due.
        journey.restart(china(12, 24, 15, 30))
        after = journey.item(POLICE)
        journey.travel(china(12, 26, 9), {china(12, 25, 10): lambda: journey.correct(INSURANCE)})
        resumed = journey.status()
        journey.travel(china(12, 26, 12), {china(12, 26, 12): year_file_added})
        official = eventually(
            journey.status,
            lambda status: "deadline_moved" in {step["state"] for step in status["timeline"]},
            timeout=30,
            message="the 2027 file did not move the deadlines",
        )
        journey.travel(china(12, 28, 16), {})
        status = journey.status()
        assert_on_time(journey, police_days=5, bundle_days=1)
    print_timeline("新生儿出生 into an unofficial 2027 (its file added on 26 December)", status)

    assert (resumed["clock"]["provisional"], resumed["due_at"]) == (
        True,
        "2027-02-26T15:59:59.999999Z",
    )
    [decision] = [c for c in before["clocks"] if c["kind"] == "decision"]
    assert decision["provisional"] is True
    # Nothing lost to the restart: the same deadline, and the missed poll sent once.
    assert after["decide_due_at"] == before["decide_due_at"]
    polls = (before["decision_poll"]["polls"], after["decision_poll"]["polls"])
    assert polls == (before["decision_poll"]["polls"], before["decision_poll"]["polls"] + 1)
    assert datetime.fromisoformat(after["decision_poll"]["last_poll_at"]) == china(12, 24, 15, 30)

    assert official["clock"]["provisional"] is False
    [police] = [item for item in official["items"] if item["item"] == POLICE]
    assert [c["provisional"] for c in police["clocks"] if c["kind"] == "decision"] == [False]

    dispatched = ("birth_medical_certificate", "vaccination_certificate")
    assert clock_steps(status) == sorted_steps(
        [
            ("12-21 09:00", "clock_started", None, "2027-02-22"),  # provisional
            *(("12-21 09:00", "clock_started", item, "2026-12-22") for item in dispatched),
            *(
                ("12-21 09:00", "clock_started", item, "2026-12-22")
                for item in (INSURANCE, "social_security_card_application")
            ),
            ("12-21 09:00", "clock_started", "birth_medical_certificate", "2027-01-19"),
            ("12-21 09:00", "clock_started", POLICE, "2026-12-22"),
            ("12-21 09:00", "clock_paused", None, None),
            ("12-21 09:00", "clock_started", "vaccination_certificate", "2027-01-19"),
            ("12-21 09:00", "clock_started", POLICE, "2027-01-19"),
            # Corrected four working days later (22–25 December).
            ("12-25 10:00", "clock_started", INSURANCE, "2026-12-28"),
            ("12-25 10:00", "clock_resumed", None, "2027-02-26"),  # provisional
            # The file's Spring Festival (8–12 February off, Saturday 20th worked) is longer
            # than the statutory 除夕–初三: the promise moves two working days, at once.
            ("12-26 12:00", "deadline_moved", None, "2027-03-02"),
            # Police decides on its fifth working day (22–25, 28 December).
            ("12-28 09:30", "clock_started", INSURANCE, "2027-01-26"),
            ("12-28 09:30", "clock_started", "social_security_card_application", "2027-01-26"),
            ("12-28 09:30", "replied", None, None),
        ]
    )
    working_days = [date(2026, 12, day) for day in (22, 23, 24, 25)]
    expected = [*poll_times(china(12, 21), working_days), china(12, 28, 9, 30)]
    expected[expected.index(china(12, 24, 15))] = china(12, 24, 15, 30)
    assert [at.astimezone(UTC) for at in journey.polled] == [at.astimezone(UTC) for at in expected]
    assert_no_item_failed(status)


def test_case_time_steps_forward_for_the_demo_and_returns_to_the_wall_clock() -> None:
    with time_machine.travel(china(2, 12), tick=False):
        try:
            assert clock.advance(timedelta(days=6)) == china(2, 18)
            assert clock.now() == china(2, 18)
            with pytest.raises(ValueError, match="backwards"):
                clock.advance(timedelta(seconds=-1))
        finally:
            clock.reset()
        assert clock.now() == china(2, 12)
