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

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import contextmanager
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


def end_of(month: int, day: int, year: int = 2026) -> datetime:
    return datetime(year, month, day, 23, 59, 59, 999999, tzinfo=CHINA)


@dataclass
class Journey:
    """One newborn bundle in a running stack, taken through simulated days."""

    running: Running
    traveller: time_machine.Coordinates
    receipt: dict[str, Any]
    polled: list[datetime] = field(default_factory=list)

    @property
    def bundle_id(self) -> str:
        return str(self.receipt["bundle_id"])

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
                .where(OutboxRow.correlation_id == self.bundle_id, OutboxRow.sent_at.is_(None))
            )
            polls = session.scalars(
                select(DecisionPollRow).where(DecisionPollRow.bundle_id == self.receipt_uuid)
            ).all()
        now = datetime.now(UTC)
        unanswered = sum(
            1
            for poll in polls
            if (poll.next_poll_at is not None and poll.next_poll_at <= now)
            or (poll.last_poll_at is not None and poll.last_answer_at < poll.last_poll_at)
        )
        return len(self.status()["timeline"]), unsent or 0, unanswered

    @property
    def receipt_uuid(self) -> Any:
        import uuid

        return uuid.UUID(self.bundle_id)

    def _polls_due(self, when: datetime) -> int:
        with self.running.stack.database.transaction() as session:
            return len(
                session.scalars(
                    select(DecisionPollRow).where(
                        DecisionPollRow.bundle_id == self.receipt_uuid,
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
                    DecisionPollRow.bundle_id == self.receipt_uuid
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


def _travel_settings(settings: Settings) -> Settings:
    # Every role looks often (wall time) at the frozen moment; polls exactly on schedule.
    return dataclasses.replace(
        settings,
        poll_round_seconds=0.02,
        poll_jitter_seconds=0,
        deadline_check_seconds=0.02,
        calendar_check_seconds=0.05,
    )


@contextmanager
def newborn_journey(
    settings: Settings, catalog: Catalog, start: datetime
) -> Iterator[Journey]:
    with time_machine.travel(start, tick=False) as traveller:
        ledger = DecisionLedger()
        police = simulated_adapter("police", catalog, SCENARIO, ledger)
        with running_stack(_travel_settings(settings), catalog, SCENARIO, [police]) as running:
            application = sample_application(catalog.bundle_types["newborn"], new_project_no())
            receipt = running.submit(application).json()
            journey = Journey(running, traveller, receipt)
            journey.settle()
            yield journey


def print_timeline(title: str, status: dict[str, Any]) -> None:
    print(f"\n{title}\n{'China time':<17} {'event':<22} {'item':<36} detail")
    for step in status["timeline"]:
        when = datetime.fromisoformat(step["at"]).astimezone(CHINA).strftime("%m-%d %a %H:%M")
        print(f"{when:<17} {step['state']:<22} {step['item'] or '(bundle)':<36} {step['detail'] or ''}")


def test_newborn_across_spring_festival_2026(settings: Settings, catalog: Catalog) -> None:
    start = china(2, 12)
    with newborn_journey(settings, catalog, start) as journey:
        journey.travel(china(3, 3, 16), {china(2, 25, 10): lambda: journey.correct(INSURANCE)})
        status = journey.status()
    print_timeline("新生儿出生 across Spring Festival 2026", status)
    print(journey.polled)
    print(status["due_at"], status["clock"])
    for item in status["items"]:
        print(item["item"], item["state"], item["accept_due_at"], item["decide_due_at"])
