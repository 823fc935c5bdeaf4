"""Where the official working-day years come from: chinesecalendar and year files.

A year is official once the State Council has published its holiday notice
(国务院办公厅关于<year>年部分节假日安排的通知, each November) and it has reached us,
either in a chinesecalendar release or in an operator's year file. Every source is
read into a `CalendarYear`, so the calendar compares and answers them alike.

Year files are read from `router/domain/workdays_data/`, then from the operator's
directory (LIANBAN_CALENDAR_DIR), which wins; both win over chinesecalendar. One file
per year, named `<year>.yaml`, transcribing the notice; it replaces that year entirely
(a missing 调休 day is then a holiday):

    year: 2027
    source: "国务院办公厅关于2027年部分节假日安排的通知"
    holidays:                       # each range inclusive, inside `year`
      - {name: 春节, from: 2027-02-05, to: 2027-02-11}
    working_weekends: [2027-02-14]  # Saturdays/Sundays worked (调休), inside `year`
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from dataclasses import dataclass
from datetime import date, datetime, timedelta
from enum import StrEnum
from functools import cache
from pathlib import Path
from types import ModuleType

import yaml

from contracts.errors import CalendarFileError

BUNDLED_DIR = Path(__file__).with_name("workdays_data")
FORMAT_HINT = (
    "a <year>.yaml file with `year`, `source` (the State Council notice), "
    "`holidays: [{name, from, to}]` and `working_weekends: [dates]` "
    "(see router/domain/workdays_data/README.md)"
)
_FILE_KEYS = {"year", "source", "holidays", "working_weekends"}


class Origin(StrEnum):
    """Where a year's working days come from."""

    PACKAGE = "package"
    """chinesecalendar, which transcribes the notices."""
    FILE = "file"
    """A year file (bundled or the operator's), transcribing the notice."""
    PROVISIONAL = "provisional"
    """No notice yet: the statutory holidays and weekends, without 调休."""


@dataclass(frozen=True)
class CalendarYear:
    """One year's days off and worked weekends, and where they come from."""

    year: int
    source: str
    holidays: frozenset[date]
    working_weekends: frozenset[date]
    origin: Origin

    def same_days(self, other: CalendarYear) -> bool:
        return (self.holidays, self.working_weekends) == (other.holidays, other.working_weekends)


def official_years(extra_dir: Path | None) -> dict[int, CalendarYear]:
    """chinesecalendar, overridden by bundled year files, overridden by `extra_dir`'s."""
    years = package_years()
    years.update(_read_dir(BUNDLED_DIR))
    if extra_dir is not None:
        years.update(_read_dir(extra_dir))
    return years


def package_years() -> dict[int, CalendarYear]:
    """The years of the chinesecalendar installed now, which may be newer than the one
    imported when the process started: an upgrade is seen without a restart."""
    version = importlib.metadata.version("chinesecalendar")
    return dict(_package_years(version))


@cache
def _package_years(version: str) -> tuple[tuple[int, CalendarYear], ...]:
    constants = _fresh_constants()
    source = f"chinesecalendar {version}"
    by_year: dict[int, tuple[set[date], set[date]]] = {}
    for day in constants.holidays:
        by_year.setdefault(day.year, (set(), set()))[0].add(day)
    for day in constants.workdays:
        if day.weekday() >= 5:
            by_year.setdefault(day.year, (set(), set()))[1].add(day)
    return tuple(
        (year, CalendarYear(year, source, frozenset(off), frozenset(on), Origin.PACKAGE))
        for year, (off, on) in sorted(by_year.items())
    )


def _fresh_constants() -> ModuleType:
    """chinesecalendar's data module as it is on disk now, loaded apart from the one
    imported (which keeps the release of the process's start)."""
    spec = importlib.util.find_spec("chinese_calendar")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("chinesecalendar is not installed")
    path = Path(next(iter(spec.submodule_search_locations))) / "constants.py"
    loader_spec = importlib.util.spec_from_file_location("_lianban_chinesecalendar_data", path)
    if loader_spec is None or loader_spec.loader is None:
        raise ModuleNotFoundError(f"cannot load {path}")
    module = importlib.util.module_from_spec(loader_spec)
    loader_spec.loader.exec_module(module)
    return module


def _read_dir(directory: Path) -> dict[int, CalendarYear]:
    files: dict[int, CalendarYear] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        year_file = _read_year_file(path)
        if year_file.year in files:
            raise CalendarFileError(f"{path}: year {year_file.year} has two files")
        files[year_file.year] = year_file
    return files


def _read_year_file(path: Path) -> CalendarYear:
    def fail(problem: str) -> CalendarFileError:
        return CalendarFileError(f"{path}: {problem}; expected {FORMAT_HINT}")

    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise fail(f"not valid YAML ({exc})") from exc
    if not isinstance(data, dict):
        raise fail("not a mapping")
    # A misspelt key (say `working_weekend`) would silently drop every 调休 day.
    if unknown := set(data) - _FILE_KEYS:
        raise fail(f"unknown keys {sorted(map(str, unknown))}")
    year = data.get("year")
    if type(year) is not int or path.stem != str(year):
        raise fail(f"`year` must be an integer matching the file name, got {year!r}")
    source = data.get("source")
    if not isinstance(source, str) or not source.strip():
        raise fail("`source` must name the State Council notice")

    def parse(value: object, entry: str) -> date:
        day = value if isinstance(value, date) else None
        if isinstance(value, str):
            try:
                day = date.fromisoformat(value)
            except ValueError:
                day = None
        if day is None or isinstance(day, datetime):
            raise fail(f"{entry}: {value!r} is not a date (YYYY-MM-DD)")
        if day.year != year:
            raise fail(f"{entry}: {day} is outside {year}")
        return day

    entries = data.get("holidays")
    if not isinstance(entries, list) or not entries:
        raise fail("`holidays` must be a non-empty list")
    holidays: set[date] = set()
    for index, item in enumerate(entries):
        if not isinstance(item, dict) or set(item) != {"name", "from", "to"}:
            raise fail(f"holidays[{index}]: needs exactly `name`, `from` and `to`")
        entry = f"holidays[{index}] ({item['name']})"
        first, last = parse(item["from"], entry), parse(item["to"], entry)
        if first > last:
            raise fail(f"{entry}: from {first} is after to {last}")
        holidays.update(first + timedelta(days=n) for n in range((last - first).days + 1))

    weekends = data.get("working_weekends") or []
    if not isinstance(weekends, list):
        raise fail("`working_weekends` must be a list of dates")
    working: set[date] = set()
    for index, value in enumerate(weekends):
        entry = f"working_weekends[{index}]"
        day = parse(value, entry)
        if day.weekday() < 5:
            raise fail(f"{entry}: {day} is a {day:%A}, not a Saturday or Sunday")
        if day in holidays:
            raise fail(f"{entry}: {day} is also listed as a holiday")
        working.add(day)
    return CalendarYear(year, source.strip(), frozenset(holidays), frozenset(working), Origin.FILE)
