"""Deadline clocks through simulated weeks (time-machine, never sleeps), on SQLite and
(connected) PostgreSQL: acceptance within a working day, the decision clock from 受理,
paused while the applicant corrects, 延期 and excluded time, 预警 and 超期 raised once,
the bundle's own promise, tolerated-gap commitments, supervision from the clocks.

Spring Festival 2026: 15–23 February off; Saturdays 14 and 28 February worked (调休).
"""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import httpx
import pytest
import time_machine
from harness import AUTH, KEYRING, new_project_no
from sqlalchemy import select, text
from sqlalchemy.orm import object_session

from contracts.api import AlertLevel, BundleStatus, DeadlineKind, ItemStatus
from contracts.application import MaterialRef
from contracts.catalog import Catalog
from contracts.messages import (
    Accepted,
    ClockResumed,
    ClockStopped,
    CorrectionRequested,
    Decided,
    ExclusionCause,
    Extended,
    ItemDispatch,
    ItemOutcome,
    OutcomeResult,
    ToleratedGap,
)
from contracts.samples import SAMPLE_PDF, sample_application, sample_material_ref
from lianban.settings import Settings
from lianban.stack import Role, Stack
from router.domain import deadlines as deadlines_module
from router.domain.calendar_watcher import CalendarWatcher
from router.domain.clocks import Clock
from router.domain.corrections import Resubmitted, resubmit
from router.domain.correlator import Applied, Correlator
from router.domain.deadlines import Alert, DeadlineWatcher, near_deadlines
from router.domain.intake import Intake, Received
from router.domain.timekeeping import deadlines, respond_by
from router.domain.views import bundle_status
from router.domain.workdays import on_change
from router.operations.supervision import (
    BundleFigures,
    bundle_figures_by_type,
    bundle_timings,
    figures_by,
    item_timings,
)
from router.store import Database, ItemRow, OutboxRow
from runtime.storage import LocalMaterialStore

CHINA = timezone(timedelta(hours=8))
BIRTH, VACCINATION = "birth_medical_certificate", "vaccination_certificate"


def at(month: int, day: int, hour: int = 10, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=CHINA)


def end_of(month: int, day: int, year: int = 2026) -> datetime:
    return datetime(year, month, day, 23, 59, 59, 999999, tzinfo=CHINA)


@dataclass
class Case:
    """One newborn bundle in a database, moved through simulated time."""

    database: Database
    catalog: Catalog
    correlator: Correlator
    bundle_id: uuid.UUID
    dispatches: dict[str, ItemDispatch]

    def answer(self, when: datetime, item: str, result: OutcomeResult) -> Applied:
        dispatch = self.dispatches.get(item) or self._dispatched_later(item)
        with time_machine.travel(when, tick=False):
            return self.correlator.apply(
                ItemOutcome(
                    bundle_id=dispatch.bundle_id,
                    item=item,
                    department=dispatch.department,
                    dispatch_id=dispatch.message_id,
                    occurred_at=when,
                    result=result,
                )
            )

    def _dispatched_later(self, item: str) -> ItemDispatch:
        """An item released by the bundle's progress after intake: its dispatch, as sent."""
        with self.database.transaction() as session:
            bodies = session.scalars(
                select(OutboxRow.body).where(OutboxRow.correlation_id == str(self.bundle_id))
            ).all()
        dispatches = [ItemDispatch.model_validate_json(body) for body in bodies]
        self.dispatches[item] = next(
            d for d in dispatches if d.kind == "dispatch" and d.item == item
        )
        return self.dispatches[item]

    def resubmit(self, when: datetime, item: str) -> None:
        material = MaterialRef.model_validate(sample_material_ref())
        with time_machine.travel(when, tick=False):
            assert resubmit(self.database, self.bundle_id, item, (material,)) is (
                Resubmitted.RESUBMITTED
            )

    def status(self, when: datetime) -> BundleStatus:
        with time_machine.travel(when, tick=False), self.database.transaction() as session:
            status = bundle_status(session, self.bundle_id, self.catalog)
        assert status is not None
        return status

    def item(self, when: datetime, code: str) -> ItemStatus:
        return next(item for item in self.status(when).items if item.item == code)

    def steps(self, item: str | None) -> list[tuple[str, str | None]]:
        timeline = self.status(at(2, 9)).timeline
        return [(step.state, step.detail) for step in timeline if step.item == item]


@pytest.fixture
def newborn(database: Database, catalog: Catalog, tmp_path: Path) -> Iterator[Case]:
    """A newborn bundle received on Monday 9 February 2026, 09:00 in China."""
    materials = LocalMaterialStore(tmp_path / "materials")
    materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    project_no = new_project_no()
    with time_machine.travel(at(2, 9, hour=9), tick=False):
        result = Intake(database, catalog, materials).submit(
            sample_application(catalog.bundle_types["newborn"], project_no), project_no
        )
    assert isinstance(result, Received)
    bundle_id = result.receipt.bundle_id
    with database.transaction() as session:
        rows = session.scalars(select(OutboxRow).where(OutboxRow.correlation_id == str(bundle_id)))
        dispatches = [ItemDispatch.model_validate_json(row.body) for row in rows]
    yield Case(
        database,
        catalog,
        Correlator(database, catalog, keyring=KEYRING),
        bundle_id,
        {dispatch.item: dispatch for dispatch in dispatches},
    )


def watch(database: Database, when: datetime, bundle_id: uuid.UUID) -> list[Alert]:
    """Two watchers look at the same moment: whatever is raised, is raised once."""
    with time_machine.travel(when, tick=False):
        first = DeadlineWatcher(database).run_once(when)
        assert DeadlineWatcher(database).run_once(when) == []
    return [alert for alert in first if alert.bundle_id == bundle_id]


def levels(
    alerts: list[Alert], items: tuple[str | None, ...] = (BIRTH, VACCINATION, None)
) -> set[tuple[str | None, DeadlineKind, AlertLevel]]:
    """The alerts about `items` (None: the bundle); the pre-reviewed insurance items,
    dispatched at once and never answered here, raise their own."""
    return {(alert.item, alert.kind, alert.level) for alert in alerts if alert.item in items}


def test_spring_festival_correction_pauses_the_decision_and_the_bundle(newborn: Case) -> None:
    case = newborn
    # Dispatched Monday 9 Feb: accepted by the end of the next working day.
    assert case.item(at(2, 9), BIRTH).accept_due_at == end_of(2, 10)
    assert case.status(at(2, 9)).clock is not None

    # 受理 Monday: 20 working days from 受理 (Friday 13 March without a pause).
    assert case.answer(at(2, 9, hour=11), BIRTH, Accepted()) is Applied.APPLIED
    accepted = case.item(at(2, 9, hour=12), BIRTH)
    assert accepted.decide_due_at == end_of(3, 13)
    assert accepted.accept_due_at is None  # met: no longer watched

    # The vaccination's department asks for a correction before 受理 …
    case.answer(at(2, 9, hour=11), VACCINATION, CorrectionRequested(reason="照片不清晰"))
    # … and the birth certificate's after one working day of its decision clock.
    case.answer(at(2, 10), BIRTH, CorrectionRequested(reason="补充父母结婚证"))
    paused = case.item(at(2, 12), BIRTH)
    [decision] = [clock for clock in paused.clocks if clock.kind is DeadlineKind.DECISION]
    assert (decision.running, decision.days_used, decision.days_left) == (False, 1, 19)
    assert decision.paused_cause == "等待申请人补齐补正" and paused.decide_due_at is None
    bundle = case.status(at(2, 12))
    assert bundle.clock is not None and not bundle.clock.running and bundle.due_at is None

    # The vaccination's correction answered on Friday 13 Feb: a new acceptance deadline,
    # Saturday 14 Feb (a 调休 working day), never its old one of 10 Feb.
    case.resubmit(at(2, 13), VACCINATION)
    assert case.item(at(2, 13), VACCINATION).accept_due_at == end_of(2, 14)
    assert levels(watch(case.database, at(2, 13, hour=20), case.bundle_id)) == set()

    # The birth certificate's correction answered four working days later (Sat 14 Feb):
    # the decision resumes with its day used, nineteen left across the festival.
    case.resubmit(at(2, 14), BIRTH)
    resumed = case.item(at(2, 14, hour=11), BIRTH)
    assert resumed.decide_due_at == end_of(3, 19)
    assert resumed.accept_due_at is None  # accepted before: no acceptance clock again
    # The bundle's promise: birth certificate → registration, each 1 + 20 working days
    # (insurance and card are pre-reviewed, beside them), 42 in all, resumed from
    # Saturday 14 Feb with none used (paused since the day of intake).
    assert case.status(at(2, 14, hour=11)).due_at == end_of(4, 22)

    # The vaccination's department does not answer: 预警 on its due day, 超期 after the
    # festival; the birth certificate, accepted already, gets no false acceptance overdue.
    assert levels(watch(case.database, at(2, 14, hour=12), case.bundle_id)) == {
        (VACCINATION, DeadlineKind.ACCEPTANCE, AlertLevel.WARNING)
    }
    assert levels(watch(case.database, at(2, 24, hour=9), case.bundle_id)) == {
        (VACCINATION, DeadlineKind.ACCEPTANCE, AlertLevel.MISSED)
    }
    assert case.item(at(2, 24), VACCINATION).overdue is DeadlineKind.ACCEPTANCE

    # Accepted again after the correction: the decision clock keeps its time.
    case.answer(at(2, 24, hour=11), BIRTH, Accepted())
    assert case.item(at(2, 24, hour=12), BIRTH).decide_due_at == end_of(3, 19)
    case.answer(at(2, 26), BIRTH, Decided(approved=True))
    decided = case.item(at(2, 26, hour=11), BIRTH)
    [decision] = [clock for clock in decided.clocks if clock.kind is DeadlineKind.DECISION]
    assert (decision.days_used, decision.running, decided.overdue) == (4, False, None)

    steps = [state for state, _ in case.steps(BIRTH)]
    assert steps == [
        "dispatched",
        "clock_started",  # acceptance
        "accepted",
        "clock_started",  # decision, from 受理
        "correction_requested",
        "clock_paused",
        "corrected",
        "clock_resumed",
        "accepted",
        "approved",
    ]
    bundle_steps = [state for state, _ in case.steps(None)]
    assert bundle_steps.count("clock_paused") == 1 and bundle_steps.count("clock_resumed") == 1

    with case.database.transaction() as session:
        [birth] = [timing for timing in item_timings(session) if timing.decided_at is not None]
    assert (birth.decided_on_time, birth.decision_working_days) == (True, 4)


def test_an_unanswered_item_is_late_not_failed(newborn: Case) -> None:
    # Item 7, the router's side: an unreachable department makes the item late, never failed.
    alerts = watch(newborn.database, at(2, 11), newborn.bundle_id)
    assert levels(alerts) == {
        (BIRTH, DeadlineKind.ACCEPTANCE, AlertLevel.MISSED),
        (VACCINATION, DeadlineKind.ACCEPTANCE, AlertLevel.MISSED),
    }
    status = newborn.status(at(2, 11))
    for code in (BIRTH, VACCINATION):
        item = next(item for item in status.items if item.item == code)
        assert (item.state, item.overdue) == ("dispatched", DeadlineKind.ACCEPTANCE)
        assert [alert.level for alert in item.alerts] == [AlertLevel.MISSED]
    overdue = [step.item for step in status.timeline if step.state == "overdue"]
    assert {BIRTH, VACCINATION} <= set(overdue) and len(overdue) == len(set(overdue))


def test_extension_once_and_excluded_time_move_the_decision(newborn: Case) -> None:
    case = newborn
    case.answer(at(2, 9, hour=11), BIRTH, Accepted())
    assert case.item(at(2, 9, hour=12), BIRTH).decide_due_at == end_of(3, 13)

    assert case.answer(at(2, 10), BIRTH, Extended(days=5, reason="经负责人批准延期")) is (
        Applied.APPLIED
    )
    assert case.item(at(2, 10), BIRTH).decide_due_at == end_of(3, 20)
    # 延期 is allowed once; a second is noted and changes nothing.
    assert case.answer(at(2, 11), BIRTH, Extended(days=2, reason="再次延期")) is Applied.STALE
    assert case.item(at(2, 11), BIRTH).decide_due_at == end_of(3, 20)

    # 鉴定 from Thursday 12 Feb to Tuesday 24 Feb: its working days (13, 14, 24) do not count.
    case.answer(at(2, 12), BIRTH, ClockStopped(cause=ExclusionCause.APPRAISAL))
    stopped = case.item(at(2, 13), BIRTH)
    assert stopped.decide_due_at is None
    assert [clock.paused_cause for clock in stopped.clocks] == [None, "鉴定"]
    case.answer(at(2, 24), BIRTH, ClockResumed())
    assert case.item(at(2, 24), BIRTH).decide_due_at == end_of(3, 25)

    details = [detail or "" for state, detail in case.steps(BIRTH) if state == "ignored"]
    assert len(details) == 1 and "once" in details[0]
    states = [state for state, _ in case.steps(BIRTH)]
    assert states.count("deadline_extended") == 1
    assert tuple(state for state in states if state in ("clock_paused", "clock_resumed")) == (
        "clock_paused",
        "clock_resumed",
    )


def test_excluded_time_may_recur_on_one_filing(newborn: Case) -> None:
    dispatch = newborn.dispatches[BIRTH]
    stop = ClockStopped(cause=ExclusionCause.HEARING)
    with time_machine.travel(at(2, 10), tick=False):
        first, redelivered = (
            ItemOutcome.answering(dispatch, stop),
            ItemOutcome.answering(dispatch, stop),
        )
    with time_machine.travel(at(3, 10), tick=False):
        second = ItemOutcome.answering(dispatch, stop)
    assert first.message_id == redelivered.message_id != second.message_id
    # A stop while stopped changes nothing: applying a notice twice is harmless.
    newborn.answer(at(2, 9, hour=11), BIRTH, Accepted())
    newborn.answer(at(2, 10), BIRTH, stop)
    newborn.answer(at(2, 11), BIRTH, stop)
    newborn.answer(at(2, 12), BIRTH, ClockResumed())
    steps = [state for state, _ in newborn.steps(BIRTH)]
    assert (steps.count("clock_paused"), steps.count("clock_resumed")) == (1, 1)
    # 10 Feb used, 11 Feb excluded: 19 working days left counted after 12 Feb.
    assert newborn.item(at(2, 12), BIRTH).decide_due_at == end_of(3, 17)


def test_tolerated_gap_commitment_is_watched(newborn: Case) -> None:
    gap = ToleratedGap(
        material="父母身份证复印件", commitment="承诺5日内补交", due_date=date(2026, 2, 13)
    )
    newborn.answer(at(2, 9, hour=11), BIRTH, Accepted(tolerated_gaps=(gap,)))

    def commitment(when: datetime) -> list[AlertLevel]:
        alerts = watch(newborn.database, when, newborn.bundle_id)
        return [alert.level for alert in alerts if alert.kind is DeadlineKind.TOLERATED_GAP]

    # Due by the end of Friday 13 Feb: two working days ahead is quiet, one is 预警.
    assert commitment(at(2, 11)) == []
    assert commitment(at(2, 12)) == [AlertLevel.WARNING]
    assert commitment(at(2, 14)) == [AlertLevel.MISSED]


def test_bundle_promise_warns_and_is_missed_once(newborn: Case) -> None:
    # Nothing answers the bundle for months: its 42-working-day promise ends 15 April 2026.
    assert newborn.status(at(2, 9)).due_at == end_of(4, 15)
    late = watch(newborn.database, at(4, 14), newborn.bundle_id)
    assert (None, DeadlineKind.BUNDLE, AlertLevel.WARNING) in levels(late)
    missed = watch(newborn.database, at(4, 16), newborn.bundle_id)
    assert (None, DeadlineKind.BUNDLE, AlertLevel.MISSED) in levels(missed)
    status = newborn.status(at(4, 16))
    assert [alert.level for alert in status.alerts] == [AlertLevel.WARNING, AlertLevel.MISSED]
    with newborn.database.transaction() as session:
        [timing] = bundle_timings(session)
    assert timing.on_time is None  # not replied: not counted yet


def test_a_provisional_deadline_is_recomputed_once_the_year_is_official(
    database: Database, catalog: Catalog, tmp_path: Path, year_dir: Path
) -> None:
    materials = LocalMaterialStore(tmp_path / "materials")
    materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    project_no = new_project_no()
    with time_machine.travel(at(12, 21), tick=False):
        result = Intake(database, catalog, materials).submit(
            sample_application(catalog.bundle_types["newborn"], project_no), project_no
        )
    assert isinstance(result, Received)
    bundle_id = result.receipt.bundle_id
    with database.transaction() as session:
        status = bundle_status(session, bundle_id, catalog)
    assert status is not None
    # Acceptance (22 Dec) is official; the bundle's promise reaches into 2027, which has
    # no holiday notice here: computed from the statutory holidays, marked provisional.
    assert status.items[0].accept_due_at == end_of(12, 22)
    assert status.clock is not None and status.clock.provisional
    provisional_due = status.due_at

    # The operator adds the year's notice while the router runs: the calendar watcher
    # swaps the live calendar and the deadline watcher recomputes every open clock.
    (year_dir / "2027.yaml").write_text(
        "year: 2027\nsource: test\nholidays:\n  - {name: 元旦, from: 2027-01-01, to: 2027-01-01}\n",
        encoding="utf-8",
    )
    undo = on_change(DeadlineWatcher(database).calendar_changed)
    try:
        with time_machine.travel(at(12, 22), tick=False):
            changed = CalendarWatcher().check_once()
            again = CalendarWatcher().check_once()
    finally:
        undo()
    with time_machine.travel(at(12, 22), tick=False), database.transaction() as session:
        status = bundle_status(session, bundle_id, catalog)
    assert 2027 in changed and again == set()
    assert status is not None
    # The file names 元旦 only: its 2027 has no Spring Festival break, so the promise
    # is due earlier than the provisional one.
    assert status.clock is not None and not status.clock.provisional
    assert status.due_at is not None and provisional_due is not None
    assert status.due_at.year == 2027 and status.due_at < provisional_due
    assert any(step.state == "deadline_moved" for step in status.timeline)


@pytest.mark.connected
def test_the_watcher_reads_only_open_items_through_a_partial_index(
    postgres_url: str,
) -> None:
    # Finished items pile up by the million; a scan of them every round would grow with
    # history. PostgreSQL uses a partial index only when it can prove the query's
    # condition implies the index's: this fails if the two drift apart.
    database = Database(postgres_url)
    database.migrate()
    with database.transaction() as session:
        session.execute(text("SET LOCAL enable_seqscan = off"))
        query = near_deadlines(at(2, 9)).compile(database.engine)
        plan = "\n".join(
            row[0] for row in session.connection().exec_driver_sql(f"EXPLAIN {query}", query.params)
        )
    database.dispose()
    # Which of the three partial indexes the planner prefers depends on the statistics.
    assert "Index Scan on ix_items_open_" in plan and "Seq Scan" not in plan


def test_the_watcher_holds_a_chunk_of_the_open_items_at_a_time(
    newborn: Case, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Thousands of items wait at slow departments, each looked at every round: reading
    # them all into the session at once grew the relay's memory with the waiting.
    monkeypatch.setattr(deadlines_module, "_CHUNK", 1)
    held: list[int] = []

    def counting(item: ItemRow) -> Iterator[tuple[DeadlineKind, datetime, Clock | None]]:
        session = object_session(item)
        assert session is not None
        held.append(len(session.identity_map))
        return deadlines(item)

    monkeypatch.setattr(deadlines_module, "deadlines", counting)
    DeadlineWatcher(newborn.database).run_once(at(2, 9, hour=12))
    assert len(held) >= 3  # the newborn's items near their acceptance deadline
    assert max(held) < len(held)


def test_supervision_counts_working_days_paused_time_excluded_and_bundles_apart(
    database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    materials = LocalMaterialStore(tmp_path / "materials")
    materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    project_no = new_project_no()
    application = sample_application(
        catalog.bundle_types["newborn"], project_no, items=[BIRTH, VACCINATION]
    )
    with time_machine.travel(at(3, 2, hour=9), tick=False):
        result = Intake(database, catalog, materials).submit(application, project_no)
    assert isinstance(result, Received)
    with database.transaction() as session:
        rows = session.scalars(
            select(OutboxRow).where(OutboxRow.correlation_id == str(result.receipt.bundle_id))
        )
        dispatches = [ItemDispatch.model_validate_json(row.body) for row in rows]
    case = Case(
        database,
        catalog,
        Correlator(database, catalog, keyring=KEYRING),
        result.receipt.bundle_id,
        {dispatch.item: dispatch for dispatch in dispatches},
    )
    # Both accepted Monday 2 March. The birth certificate waits ten working days for the
    # applicant and is decided on its 20th working day of its own: on time. The
    # vaccination certificate is decided on its 21st: late.
    case.answer(at(3, 2, hour=11), BIRTH, Accepted())
    case.answer(at(3, 2, hour=11), VACCINATION, Accepted())
    case.answer(at(3, 4), BIRTH, CorrectionRequested(reason="补充材料"))  # 2 days used
    case.resubmit(at(3, 18), BIRTH)
    case.answer(at(3, 31, hour=11), VACCINATION, Decided(approved=True))  # 21st
    case.answer(at(4, 14), BIRTH, Decided(approved=True))  # 2 + 18 (清明 6 April off) = 20th
    status = case.status(at(4, 14, hour=11))
    assert status.state == "replied"

    with database.transaction() as session:
        items = figures_by(item_timings(session), lambda item: item.department)
        bundles = bundle_figures_by_type(bundle_timings(session))
    health = items["health"]
    assert (health.volume, health.completed) == (2, 2)
    assert health.decision_on_time_ratio == 0.5
    assert health.decision_working_days_avg == (20 + 21) / 2
    assert health.intake_on_time_ratio == 1.0
    # The bundle: 21 working days promised (one link each), 2 + 18 used, its pause for
    # the applicant excluded: on time, and counted once, apart from its items.
    assert bundles["newborn"] == BundleFigures(bundles=1, replied=1, on_time_ratio=1.0)


def test_two_watchers_at_once_raise_each_alert_once(newborn: Case) -> None:
    when = at(2, 11)
    barrier = threading.Barrier(2)
    raised: list[list[Alert]] = []

    def one_watcher() -> None:
        watcher = DeadlineWatcher(newborn.database)
        barrier.wait()
        raised.append(watcher.run_once(when))

    threads = [threading.Thread(target=one_watcher) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    together = [alert for alerts in raised for alert in alerts]
    assert together and len(together) == len(set(together))
    timeline = newborn.status(when).timeline
    assert len([step for step in timeline if step.state == "overdue"]) == len(together)


def test_newborn_through_spring_festival_2026(
    database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    """The issue's newborn: medical insurance asks for a correction answered four working
    days later; police decides on its fifth working day; a watcher looks every day at noon.
    """
    materials = LocalMaterialStore(tmp_path / "materials")
    materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    project_no = new_project_no()
    with time_machine.travel(at(2, 12, hour=9), tick=False):
        result = Intake(database, catalog, materials).submit(
            sample_application(catalog.bundle_types["newborn"], project_no), project_no
        )
    assert isinstance(result, Received)
    case = Case(
        database,
        catalog,
        Correlator(database, catalog, keyring=KEYRING),
        result.receipt.bundle_id,
        {},
    )
    police, insurance, card = (
        "birth_registration",
        "medical_insurance_nonlocal_parents",
        "social_security_card_application",
    )
    raised: list[tuple[datetime, str | None, DeadlineKind, AlertLevel]] = []

    def noon(month: int, day: int) -> None:
        for alert in watch(database, at(month, day, hour=12), case.bundle_id):
            raised.append((at(month, day, hour=12), alert.item, alert.kind, alert.level))

    case.answer(at(2, 12, hour=10), BIRTH, Accepted())
    case.answer(at(2, 12, hour=10), VACCINATION, Accepted())
    case.answer(at(2, 12, hour=10), insurance, CorrectionRequested(reason="缺少父母居住证"))
    case.answer(at(2, 12, hour=11), BIRTH, Decided(approved=True))
    case.answer(at(2, 12, hour=11), VACCINATION, Decided(approved=True))
    noon(2, 12)
    case.answer(at(2, 13), police, Accepted())  # 受理 Friday 13 Feb
    assert case.item(at(2, 13), police).decide_due_at == end_of(3, 19)
    noon(2, 13)  # the card's pre-review, due today, is not answered: 预警
    noon(2, 14)  # … and on Saturday 14 Feb (worked) it is late: 超期
    case.answer(at(2, 14, hour=15), card, Accepted())
    # The applicant answers four working days later (13, 14, 24, 25 Feb).
    case.resubmit(at(2, 25), insurance)
    assert case.item(at(2, 25), insurance).accept_due_at == end_of(2, 26)
    noon(2, 25)
    noon(2, 26)  # the insurance's new acceptance is due today: 预警, never a false 超期
    case.answer(at(2, 26, hour=15), insurance, Accepted())
    # Police decides on its fifth working day (14, 24, 25, 26, 27 Feb).
    case.answer(at(2, 27), police, Decided(approved=True))
    noon(2, 27)
    case.answer(at(3, 3), insurance, Decided(approved=True))
    case.answer(at(3, 5), card, Decided(approved=True))
    status = case.status(at(3, 5, hour=11))

    assert status.state == "replied"
    assert all(item.state == "approved" for item in status.items)
    assert raised == [
        (at(2, 13, hour=12), card, DeadlineKind.ACCEPTANCE, AlertLevel.WARNING),
        (at(2, 14, hour=12), card, DeadlineKind.ACCEPTANCE, AlertLevel.MISSED),
        (at(2, 26, hour=12), insurance, DeadlineKind.ACCEPTANCE, AlertLevel.WARNING),
    ]
    bundle_steps = [(step.at, step.state) for step in status.timeline if step.item is None]
    assert (at(2, 12, hour=10), "clock_paused") in bundle_steps
    assert (at(2, 25), "clock_resumed") in bundle_steps
    with database.transaction() as session:
        figures = figures_by(item_timings(session), lambda item: item.department)
        [bundle] = bundle_timings(session)
    assert figures["police"].decision_working_days_avg == 5
    assert figures["hrss"].intake_on_time_ratio == 0.0  # the card's late pre-review
    assert all(f.decision_on_time_ratio == 1.0 for f in figures.values())
    # Paused 12–25 Feb for the applicant; 26, 27, 28 (Saturday, worked), 2–5 March.
    assert bundle.on_time is True and bundle.clock is not None and bundle.clock.used == 7
    print_timeline(status)


def print_timeline(status: BundleStatus) -> None:
    """The timeline as `pytest -s` shows it (pasted in the issue's closing note)."""
    for step in status.timeline:
        when = step.at.astimezone(CHINA).strftime("%m-%d %a %H:%M")
        print(f"{when}  {step.state:<22} {step.item or '(bundle)':<36} {step.detail or ''}")


def test_respond_by_is_the_deadline_the_department_answers_against(newborn: Case) -> None:
    def respond_by_now() -> datetime | None:
        with newborn.database.transaction() as session:
            row = session.get(ItemRow, (newborn.bundle_id, BIRTH))
            assert row is not None
            return respond_by(row)

    assert respond_by_now() == end_of(2, 10)  # acceptance
    newborn.answer(at(2, 9, hour=11), BIRTH, Accepted())
    assert respond_by_now() == end_of(3, 13)  # the decision, from 受理


def test_an_item_dispatched_on_31_december_gets_its_deadlines_at_the_right_instant(
    settings: Settings, catalog: Catalog
) -> None:
    # No official 2027 yet (chinesecalendar 1.11.0): the acceptance deadline is computed
    # provisionally, past 元旦 (Friday) and the weekend, and stored as that instant on
    # SQLite too (it was once read back 8 hours late).
    stack = Stack(settings, catalog, {Role.SERVE})
    stack.start()
    try:
        stack.materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
        application = sample_application(catalog.bundle_types["newborn"], new_project_no())
        with time_machine.travel(datetime(2026, 12, 31, 15, 0, tzinfo=CHINA)):
            receipt = httpx.post(
                f"{stack.base_url}/v1/bundles",
                json=application,
                headers={"Idempotency-Key": application["project_no"], **AUTH},
            ).json()
        status = httpx.get(f"{stack.base_url}{receipt['status_url']}", headers=AUTH).json()
    finally:
        stack.stop()
    dispatched = [item for item in status["items"] if item["state"] == "dispatched"]
    assert dispatched
    expected = end_of(1, 4, year=2027)
    for item in dispatched:
        assert datetime.fromisoformat(item["accept_due_at"]) == expected, item["item"]
    assert not any(event["state"] == "deadline_unknown" for event in status["timeline"])
