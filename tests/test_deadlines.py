"""Deadlines in Chinese working days, stored at dispatch and watched for overdue items."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta, timezone

import httpx
import pytest
from harness import AUTH, new_project_no
from sqlalchemy import text

from contracts.catalog import Catalog
from contracts.errors import UnknownYearError
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.settings import Settings
from lianban.stack import Role, Stack
from router.domain.deadlines import DeadlineWatcher, deadlines_for, overdue_candidates
from router.domain.workdays import WorkingCalendar
from router.store import Database

BEIJING = timezone(timedelta(hours=8))
END_OF_DAY = (23, 59, 59, 999999)


def test_deadlines_skip_national_day_and_count_the_makeup_saturday() -> None:
    # 国办发明电〔2023〕7号: 2024-10-01..07 off; Saturday 2024-10-12 is worked (调休).
    calendar = WorkingCalendar.load()
    due = deadlines_for(calendar, datetime(2024, 9, 30, 10, 0, tzinfo=BEIJING), promise_days=5)
    assert due.accept_due_at == datetime(2024, 10, 8, *END_OF_DAY, tzinfo=BEIJING)
    # Oct 8, 9, 10, 11 and the make-up Saturday Oct 12 are the five working days.
    assert due.decide_due_at == datetime(2024, 10, 12, *END_OF_DAY, tzinfo=BEIJING)


def test_no_deadline_is_guessed_beyond_the_known_years() -> None:
    calendar = WorkingCalendar.load()
    last_known = max(calendar.known_years())
    with pytest.raises(UnknownYearError):
        deadlines_for(calendar, datetime(last_known, 12, 31, 10, tzinfo=BEIJING), promise_days=5)


def test_overdue_items_are_marked_once_and_the_mark_survives_a_restart(
    settings: Settings, catalog: Catalog
) -> None:
    # The intake alone: nothing answers, so the first items stay dispatched.
    stack = Stack(settings, catalog, {Role.SERVE})
    stack.start()
    try:
        stack.materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
        application = sample_application(catalog.bundle_types["newborn"], new_project_no())
        receipt = httpx.post(
            f"{stack.base_url}/v1/bundles",
            json=application,
            headers={"Idempotency-Key": application["project_no"], **AUTH},
        ).json()
        status_url = f"{stack.base_url}{receipt['status_url']}"
        before = httpx.get(status_url, headers=AUTH).json()
        dispatched = [item for item in before["items"] if item["state"] == "dispatched"]
        assert dispatched and all(item["accept_due_at"] for item in dispatched)

        in_a_month = datetime.now(UTC) + timedelta(days=30)
        watcher = DeadlineWatcher(stack.database, clock=lambda: in_a_month)
        first = watcher.mark_overdue()
        again = watcher.mark_overdue()
        restarted = DeadlineWatcher(stack.database, clock=lambda: in_a_month).mark_overdue()
        after = httpx.get(status_url, headers=AUTH).json()
    finally:
        stack.stop()

    ours = [item for item in after["items"] if item["overdue"]]
    assert first >= len(dispatched)  # other tests' bundles may share a connected database
    assert (again, restarted) == (0, 0)
    assert {item["item"] for item in ours} == {item["item"] for item in dispatched}
    assert {item["overdue"] for item in ours} == {"acceptance"}
    waiting = [item for item in after["items"] if item["state"] == "waiting"]
    assert waiting and not any(item["overdue"] for item in waiting)
    overdue_events = [event for event in after["timeline"] if event["state"] == "overdue"]
    assert len(overdue_events) == len(dispatched)


@pytest.mark.connected
def test_the_watcher_reads_only_open_items_through_their_partial_index(postgres_url: str) -> None:
    # Finished items pile up by the million; a scan of them every round would grow with
    # history. PostgreSQL uses a partial index only when it can prove the query's
    # condition implies the index's: this fails if the two drift apart.
    database = Database(postgres_url)
    database.migrate()
    with database.transaction() as session:
        session.execute(text("SET LOCAL enable_seqscan = off"))
        query = overdue_candidates(datetime.now(UTC)).compile(database.engine)
        plan = session.connection().exec_driver_sql(f"EXPLAIN {query}", query.params)
        assert "ix_items_open_deadlines" in "\n".join(row[0] for row in plan)
    database.dispose()
