"""Departments that decide in working days: polled on their schedule, durably, never failed
while they say "pending". Time is moved with time-machine (frozen between moves); every
poll is a real round trip through the outbox, the broker, the adapter and the correlator."""

from __future__ import annotations

import asyncio
import json
from collections import Counter
from collections.abc import Iterator
from datetime import UTC, date, datetime, time, timedelta, timezone
from pathlib import Path
from typing import Any, ClassVar

import httpx
import pytest
import time_machine
from harness import (
    KEYRING,
    Running,
    eventually,
    intake_with_sample_material,
    new_project_no,
    running_stack,
)
from sqlalchemy import event, select

from adapters import AdapterContext, CalledBack, Polled, RetryPolicy
from adapters.decision_endpoint import SIGNATURE_HEADER, push_signature
from adapters.runner import AdapterRunner
from adapters.simulated import (
    DecisionLedger,
    Rule,
    Scenario,
    SimulatedDepartment,
    Verdict,
    simulated_adapter,
)
from adapters.testing.dispatches import dispatch_for
from contracts.catalog import Catalog
from contracts.errors import BadAnswerError, RetryableError
from contracts.messages import (
    Decided,
    DecisionPush,
    ItemDispatch,
    ItemOutcome,
    ItemPoll,
    OutcomeResult,
    Pending,
)
from contracts.polling import PollPhase, PollSchedule
from contracts.samples import sample_application
from lianban.cli import main
from lianban.settings import Settings
from router.domain.correlator import Applied, Correlator
from router.domain.intake import Received
from router.domain.polling import PollPlan, PollScheduler
from router.domain.workdays import WorkingCalendar
from router.store import Database, DecisionPollRow, ItemRow, OutboxRow
from runtime.storage import LocalMaterialStore

CHINA = timezone(timedelta(hours=8))
ITEM = "vaccination_certificate"  # health, no prerequisites
# Monday 2 March 2026, 10:00 in China; 2–20 March are 15 working days, no holiday among them.
FILED_AT = datetime(2026, 3, 2, 10, 0, tzinfo=CHINA)


@pytest.fixture
def clock() -> Iterator[time_machine.Coordinates]:
    with time_machine.travel(FILED_AT, tick=False) as traveller:
        yield traveller


def _polling_settings(settings: Settings) -> Settings:
    # Rounds in quick succession (wall time) and no jitter, so poll times are exact.
    return settings.model_copy(update={"poll_round_seconds": 0.02, "poll_jitter_seconds": 0})


def _item(running: Running, status_url: str) -> dict[str, Any]:
    items = {i["item"]: i for i in running.client.get(status_url).json()["items"]}
    return items[ITEM]


def _answered(running: Running, status_url: str, polls: int) -> dict[str, Any]:
    """The item once its department has answered poll number `polls` (or decided)."""

    def done(item: dict[str, Any]) -> bool:
        poll = item["decision_poll"]
        if poll is None:
            return item["state"] != "accepted"
        return poll["polls"] == polls and poll["answered_at"] == poll["last_poll_at"]

    return eventually(
        lambda: _item(running, status_url),
        done,
        timeout=30,
        every=0.01,
        message=f"poll {polls} was not answered",
    )


def _expected_polls() -> list[datetime]:
    """The default schedule written out: every 5 minutes for the first hour, hourly to
    the end of the first day, then 09:30 and 15:00 on working days (Mon–Fri here)."""
    polls = [FILED_AT + timedelta(minutes=5 * n) for n in range(1, 13)]
    polls += [FILED_AT + timedelta(hours=n) for n in range(2, 25)]
    polls.append(datetime(2026, 3, 3, 15, 0, tzinfo=CHINA))
    day = date(2026, 3, 4)
    while day <= date(2026, 3, 23):
        if day.weekday() < 5:
            polls += [datetime.combine(day, at, tzinfo=CHINA) for at in (time(9, 30), time(15))]
        day += timedelta(days=1)
    return polls[:-1]  # 23 March, the 16th working day: decided at 09:30


def test_pending_for_15_working_days_is_polled_on_schedule_and_decided_on_the_16th(
    settings: Settings,
    catalog: Catalog,
    clock: time_machine.Coordinates,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings = _polling_settings(settings)
    ledger = DecisionLedger()
    scenario = Scenario(rules={ITEM: Rule(Verdict.APPROVE, pending_working_days=15)})
    # One department across both runs of the router: its filings outlive the restart.
    health = simulated_adapter("health", catalog, scenario, ledger)
    application = sample_application(
        catalog.bundle_types["newborn"], new_project_no(), items=[ITEM]
    )
    polled: list[datetime] = []
    restart_after, missed_while_down = 40, timedelta(hours=2)

    def poll_until_decided(running: Running, status_url: str, stop_after: int | None) -> None:
        while stop_after is None or len(polled) < stop_after:
            item = _item(running, status_url)
            if item["state"] != "accepted":
                return
            assert item["decision_poll"]["department_answer"] == "审查中"
            clock.move_to(datetime.fromisoformat(item["decision_poll"]["next_poll_at"]))
            answered = _answered(running, status_url, len(polled) + 1)
            polled.append(datetime.now(UTC))
            assert answered["state"] in ("accepted", "approved"), answered

    with running_stack(settings, catalog, scenario, adapters=[health]) as running:
        receipt = running.submit(application).json()
        status_url = receipt["status_url"]
        first = eventually(
            lambda: _item(running, status_url),
            # Its 受理 and its "pending" are two messages: the correlator may apply either first.
            lambda item: item["decision_poll"] is not None and item["state"] == "accepted",
            timeout=30,
            message="the department's acceptance and pending answer were not both kept",
        )
        assert datetime.fromisoformat(first["decision_poll"]["pending_since"]) == FILED_AT
        poll_until_decided(running, status_url, stop_after=restart_after)
        due = datetime.fromisoformat(_item(running, status_url)["decision_poll"]["next_poll_at"])
        monkeypatch.setenv("LIANBAN_DATABASE_URL", settings.database_url)
        assert main(["bundle", "show", receipt["bundle_id"]]) == 0
        shown, last_polled = capsys.readouterr().out, polled[-1]
    # The router is down when the next poll falls due, and for two hours after.
    clock.move_to(due + missed_while_down)
    with running_stack(settings, catalog, scenario, adapters=[health]) as running:
        _answered(running, status_url, restart_after + 1)
        polled.append(datetime.now(UTC))
        poll_until_decided(running, status_url, stop_after=None)
        final = running.client.get(status_url).json()

    # What an operator reads while the department takes its time.
    assert f"department says “审查中” ({last_polled.isoformat()})" in shown
    assert f"last poll {last_polled.isoformat()} (#{restart_after})" in shown
    assert f"next poll {due.isoformat()}" in shown
    expected = _expected_polls()
    # The poll missed while the router was down is sent once, when it is back.
    expected[restart_after] += missed_while_down
    assert polled == expected
    assert len([at for at in expected if at >= datetime(2026, 3, 4, tzinfo=CHINA)]) == 2 * 13 + 1
    item = {i["item"]: i for i in final["items"]}[ITEM]
    assert item["state"] == "approved"
    assert item["decision_poll"] is None
    steps = [step["state"] for step in final["timeline"] if step["item"] == ITEM]
    assert "failed" not in steps
    assert steps.count("decision_pending") == 1
    [decision] = [r for r in ledger.records() if r.bundle_id == receipt["bundle_id"]]
    assert decision.decided_at == datetime(2026, 3, 23, 9, 30, tzinfo=CHINA)


def test_the_departments_failure_answer_fails_the_item_and_withdraws_the_filing(
    settings: Settings, catalog: Catalog, clock: time_machine.Coordinates
) -> None:
    ledger = DecisionLedger()
    scenario = Scenario(rules={ITEM: Rule(Verdict.FAIL, pending_working_days=1)})
    health = simulated_adapter("health", catalog, scenario, ledger)
    application = sample_application(
        catalog.bundle_types["newborn"], new_project_no(), items=[ITEM]
    )
    with running_stack(_polling_settings(settings), catalog, scenario, [health]) as running:
        receipt = running.submit(application).json()
        status_url = receipt["status_url"]
        eventually(
            lambda: _item(running, status_url)["decision_poll"],
            timeout=30,
            message="the department's pending answer was not kept",
        )
        # Pending through its first working day: polled, not failed.
        clock.move_to(FILED_AT + timedelta(hours=3))
        assert _answered(running, status_url, 1)["state"] == "accepted"
        clock.move_to(datetime(2026, 3, 3, 9, 30, tzinfo=CHINA))
        running.wait_for_item(status_url, ITEM, "failed")

        def ours() -> list[tuple[str, str, str]]:
            return [c for c in ledger.cancellations() if c[1] == receipt["bundle_id"]]

        eventually(ours, timeout=30, message="the filing was not withdrawn")
        final = running.client.get(status_url).json()
    assert ours() == [("health", receipt["bundle_id"], ITEM)]
    item = {i["item"]: i for i in final["items"]}[ITEM]
    assert item["decision_poll"] is None
    assert final["state"] == "replied"


def test_poll_times_follow_the_declared_schedule_in_working_days() -> None:
    """The plan keeps each phase's rhythm from the first pending, whatever the round."""
    schedule = PollSchedule(
        phases=(PollPhase(until=timedelta(hours=1), every=timedelta(minutes=10)),),
        working_day_times=(time(11, 0),),
    )
    plan = PollPlan({"health": schedule})
    since = datetime(2026, 3, 6, 16, 0, tzinfo=CHINA)  # a Friday afternoon
    # A late round (13 minutes in) keeps to the 10-minute grid.
    assert plan.next_poll_at("health", since, since + timedelta(minutes=13)) == (
        since + timedelta(minutes=20)
    )
    # After the phases: the next working day's 11:00, over the weekend.
    assert plan.next_poll_at("health", since, since + timedelta(hours=1)) == datetime(
        2026, 3, 9, 11, 0, tzinfo=CHINA
    )
    # Departments without a declared schedule get the default one.
    assert plan.schedule_of("police") == PollSchedule()
    # Into a year without an official calendar: its provisional working days, so 元旦
    # (Friday 1 January 2027) and the weekend are skipped.
    new_year = datetime(2026, 12, 31, 16, 0, tzinfo=CHINA)
    unknown = PollPlan({"health": schedule}, WorkingCalendar({}))
    assert unknown.next_poll_at("health", new_year, new_year + timedelta(hours=1)) == (
        datetime(2027, 1, 4, 11, 0, tzinfo=CHINA)
    )


def test_a_backlog_of_due_polls_is_spread_over_rounds_per_department(
    database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    intake = intake_with_sample_material(
        database, catalog, LocalMaterialStore(tmp_path / "materials")
    )
    newborn = catalog.bundle_types["newborn"]
    for _ in range(3):  # each files two health items, and one each for pre-review
        application = sample_application(newborn, new_project_no())
        assert isinstance(intake.submit(application, application["project_no"]), Received)
    correlator = Correlator(database, catalog, keyring=KEYRING)
    with database.transaction() as session:
        filed = session.scalars(select(ItemRow).where(ItemRow.state == "dispatched")).all()
        outcomes = [
            ItemOutcome(
                bundle_id=item.bundle_id,
                item=item.code,
                department=item.department,
                dispatch_id=item.dispatch_id,
                occurred_at=FILED_AT,
                result=Pending(department_status="审查中"),
            )
            for item in filed
        ]
    by_department = Counter(outcome.department for outcome in outcomes)
    assert by_department == {"health": 6, "hrss": 3, "medical_insurance": 3}
    with time_machine.travel(FILED_AT, tick=False):
        assert set(correlator.apply_all(outcomes)) == {Applied.APPLIED}
    scheduler = PollScheduler(database, PollPlan(), per_department=4, jitter=timedelta(minutes=1))
    # Every filing fell due together, an hour late (the router was away).
    late = FILED_AT + timedelta(hours=1)
    loaded: list[DecisionPollRow] = []

    def count(poll: DecisionPollRow, _context: object) -> None:
        loaded.append(poll)

    event.listen(DecisionPollRow, "load", count)
    rounds = [scheduler.run_once(late)]
    event.remove(DecisionPollRow, "load", count)
    rounds += [scheduler.run_once(late), scheduler.run_once(late)]

    # At most 4 a department a round: health's 6 take two rounds, the others' 3 one.
    assert rounds == [4 + 3 + 3, 2, 0]
    # A round reads only the polls it sends: a backlog waits in the database, not in memory.
    assert len(loaded) == rounds[0]
    with database.transaction() as session:
        polls = session.scalars(select(DecisionPollRow)).all()
        bodies = [json.loads(row.body) for row in session.scalars(select(OutboxRow))]
    sent = [body for body in bodies if body.get("kind") == "poll"]
    assert Counter(body["department"] for body in sent) == by_department
    assert {poll.polls for poll in polls} == {1}
    # Next polls keep the schedule (the hourly phase: 2 hours in), each with its jitter.
    starts = [poll.next_poll_at - (FILED_AT + timedelta(hours=2)) for poll in polls]
    assert all(timedelta(0) <= start <= timedelta(minutes=1) for start in starts)
    assert len(set(starts)) > 1, "polls due together stayed together"


class CallingBackHealth(SimulatedDepartment):
    """Health, deciding later and pushing its decision; keeps what it filed."""

    department = "health"
    services = frozenset({"vaccination_certificate_issuance"})
    decisions = CalledBack()
    scenario = Scenario(rules={ITEM: Rule(Verdict.APPROVE, pending_working_days=5)})
    filed: ClassVar[list[ItemDispatch]] = []

    async def handle(self, item: ItemDispatch, ctx: AdapterContext) -> OutcomeResult:
        self.filed.append(item)
        return await super().handle(item, ctx)


def test_a_department_that_calls_back_is_waited_for_and_its_signed_push_decides(
    settings: Settings, catalog: Catalog
) -> None:
    secret = "共享密钥-for-tests"
    settings = _polling_settings(settings).model_copy(
        update={"decisions_port": 0, "decisions_secret": secret}
    )
    CallingBackHealth.check_declaration(catalog)
    CallingBackHealth.filed = []
    application = sample_application(
        catalog.bundle_types["newborn"], new_project_no(), items=[ITEM]
    )
    with running_stack(settings, catalog, adapters=[CallingBackHealth()]) as running:
        receipt = running.submit(application).json()
        status_url = receipt["status_url"]
        waiting = eventually(
            lambda: _item(running, status_url),
            lambda item: item["decision_poll"] is not None and item["state"] == "accepted",
            timeout=30,
            message="the department's pending answer was not kept",
        )
        # A connected database is shared: other tests' unsent dispatches may reach it too.
        [dispatch] = [d for d in CallingBackHealth.filed if d.project_no == receipt["project_no"]]
        push = DecisionPush(
            bundle_id=dispatch.bundle_id,
            item=ITEM,
            dispatch_id=dispatch.message_id,
            result=Decided(approved=True),
        )
        body = push.model_dump_json().encode()
        url = f"{running.stack.decisions_url}/v1/decisions/health"
        unsigned = httpx.post(url, content=body)
        forged = httpx.post(
            url, content=body, headers={SIGNATURE_HEADER: push_signature("guessed", body)}
        )
        wrong_department = httpx.post(
            url.replace("health", "police"),
            content=body,
            headers={SIGNATURE_HEADER: push_signature(secret, body)},
        )
        still = _item(running, status_url)
        signed = httpx.post(
            url, content=body, headers={SIGNATURE_HEADER: push_signature(secret, body)}
        )
        running.wait_for_item(status_url, ITEM, "approved")

    assert waiting["state"] == "accepted"
    assert waiting["decision_poll"]["next_poll_at"] is None, (
        "a department that calls back was polled"
    )
    assert waiting["decision_poll"]["polls"] == 0
    assert (unsigned.status_code, forged.status_code) == (401, 401)
    assert wrong_department.status_code == 404
    assert still["state"] == "accepted"
    assert signed.status_code == 202, signed.text


class UnreadableHealth(CallingBackHealth):
    decisions = Polled()
    retry = RetryPolicy(max_attempts=2, initial_backoff=0.01, budget_seconds=1)
    answers: ClassVar[list[Exception]] = []

    async def poll(self, item: ItemPoll, ctx: AdapterContext) -> OutcomeResult:
        raise self.answers.pop(0)


@pytest.mark.parametrize(
    "trouble",
    [RetryableError("connection refused"), BadAnswerError("answer does not fit its WSDL")],
)
def test_a_poll_the_department_cannot_answer_is_a_missed_poll_never_a_failure(
    trouble: Exception,
) -> None:
    dispatch = dispatch_for("vaccination_certificate_issuance", department="health")
    poll = ItemPoll(
        **dispatch.filing(),
        item_name_zh=dispatch.item_name_zh,
    )
    UnreadableHealth.answers = [trouble, trouble]

    async def nothing(result: OutcomeResult) -> None:
        raise AssertionError(f"a poll reported {result}")

    async def run() -> OutcomeResult | None:
        runner = AdapterRunner(UnreadableHealth())
        try:
            return await runner.run(poll, 1, nothing)
        finally:
            await runner.aclose()

    assert asyncio.run(run()) is None
