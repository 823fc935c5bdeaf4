"""The live calendar is replaced without a restart when an official year arrives."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from harness import eventually

from contracts.catalog import Catalog
from contracts.errors import CalendarFileError
from lianban.settings import Settings
from lianban.stack import Role, Stack
from router.domain.calendar_watcher import CalendarWatcher
from router.domain.workdays import (
    WorkingCalendar,
    on_change,
    replace_working_calendar,
    working_calendar,
)
from router.domain.year_sources import CalendarYear, Origin, package_years

# Made-up test data in the year-file format; the real 2027 notice is not published yet.
YEAR_2027 = """\
year: 2027
source: "国务院办公厅关于2027年部分节假日安排的通知"
holidays:
  - {name: 元旦, from: 2027-01-01, to: 2027-01-03}
  - {name: 春节, from: 2027-02-05, to: 2027-02-11}
working_weekends: [2027-02-14]
"""

Change = tuple[WorkingCalendar, set[int]]


@pytest.fixture
def changes() -> Iterator[list[Change]]:
    seen: list[Change] = []
    undo = on_change(lambda calendar, years: seen.append((calendar, years)))
    yield seen
    undo()


def test_a_year_file_added_while_running_is_used_at_once(
    settings: Settings, catalog: Catalog, year_dir: Path, changes: list[Change]
) -> None:
    assert not working_calendar().is_official(2027)
    assert working_calendar().is_working_day(date(2027, 2, 10))  # provisional: no 春节 bridge
    stack = Stack(
        settings.model_copy(update={"calendar_check_seconds": 0.05}), catalog, {Role.RELAY}
    )
    stack.start()
    try:
        (year_dir / "2027.yaml").write_text(YEAR_2027, encoding="utf-8")
        eventually(lambda: changes, timeout=10, message="the watcher did not see 2027.yaml")
    finally:
        stack.stop()
    [(calendar, years)] = changes
    assert years == {2027}
    assert calendar is working_calendar()
    assert working_calendar().is_official(2027)
    assert working_calendar().year(2027).origin == Origin.FILE
    assert not working_calendar().is_working_day(date(2027, 2, 10))
    assert working_calendar().is_working_day(date(2027, 2, 14))  # 调休 Sunday
    assert CalendarWatcher().check_once() == set()  # nothing new: no second call
    assert len(changes) == 1


def test_a_newer_chinesecalendar_year_is_noticed(year_dir: Path, changes: list[Change]) -> None:
    official = package_years()
    assert 2027 not in official  # chinesecalendar 1.11.0
    release_2027 = CalendarYear(
        2027,
        "chinesecalendar (a release with 2027)",
        frozenset({date(2027, 1, 1), date(2027, 2, 8)}),
        frozenset(),
        Origin.PACKAGE,
    )
    watcher = CalendarWatcher(load=lambda _: WorkingCalendar({**official, 2027: release_2027}))
    assert watcher.check_once() == {2027}
    assert working_calendar().year(2027) == release_2027
    assert [years for _, years in changes] == [{2027}]


def test_an_identical_official_year_still_counts_as_changed(
    year_dir: Path, changes: list[Change]
) -> None:
    # Deadlines computed from the provisional year lose their mark once it is official.
    provisional = working_calendar().year(2027)
    same_days = dataclasses.replace(provisional, source="notice", origin=Origin.FILE)
    watcher = CalendarWatcher(load=lambda _: WorkingCalendar({**package_years(), 2027: same_days}))
    assert watcher.check_once() == {2027}


def test_a_malformed_year_file_keeps_the_calendar_in_force(
    year_dir: Path, changes: list[Change]
) -> None:
    before = working_calendar()
    (year_dir / "2027.yaml").write_text(YEAR_2027.replace("year: 2027", "year: 27"), "utf-8")
    with pytest.raises(CalendarFileError):
        CalendarWatcher().check_once()
    assert working_calendar() is before
    assert changes == []


def test_two_watchers_seeing_the_same_change_report_it_once(
    year_dir: Path, changes: list[Change]
) -> None:
    before = working_calendar()
    (year_dir / "2027.yaml").write_text(YEAR_2027, encoding="utf-8")
    fresh = WorkingCalendar.load(year_dir)
    assert replace_working_calendar(fresh, {2027}, replacing=before)
    # A second watcher compared against the calendar already replaced: it must not swap.
    assert not replace_working_calendar(WorkingCalendar.load(year_dir), {2027}, replacing=before)
    assert working_calendar() is fresh
    assert [years for _, years in changes] == [{2027}]
