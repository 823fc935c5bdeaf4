"""Chinese working days (工作日) for 承诺办结时限 deadlines and overdue checks.

Deadlines such as "5个工作日" skip statutory holidays and count the weekends the State
Council moves to working days (调休), so weekday arithmetic and the `holidays` package
(no 调休) are wrong. The years chinesecalendar knows come from it; a year it does not
know yet (the notice is published each November, a release follows later) or one it
has wrong comes from a year file. Any other year raises UnknownYearError: a deadline
is never computed from a guess.

Year files are read from `router/domain/workdays_data/`, then from the operator's directory
(LIANBAN_CALENDAR_DIR), which wins. One file per year, named `<year>.yaml`, transcribing
the notice; it replaces that year entirely (a missing 调休 day is then a holiday):

    year: 2027
    source: "国务院办公厅关于2027年部分节假日安排的通知"
    holidays:                       # each range inclusive, inside `year`
      - {name: 春节, from: 2027-02-05, to: 2027-02-11}
    working_weekends: [2027-02-14]  # Saturdays/Sundays worked (调休), inside `year`
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta, timezone
from functools import cache
from pathlib import Path

import chinese_calendar
import yaml

from contracts.errors import CalendarFileError, ConfigurationError, UnknownYearError

# Asia/Shanghai has had no daylight saving time since 1991: a fixed offset is exact for
# every year a calendar exists and needs no tzdata on the host.
CHINA_TZ = timezone(timedelta(hours=8))
BUNDLED_DIR = Path(__file__).with_name("workdays_data")
_FORMAT_HINT = (
    "a <year>.yaml file with `year`, `source` (the State Council notice), "
    "`holidays: [{name, from, to}]` and `working_weekends: [dates]` "
    "(see router/domain/workdays_data/README.md)"
)
_FILE_KEYS = {"year", "source", "holidays", "working_weekends"}


@dataclass(frozen=True)
class YearFile:
    """One year transcribed from a State Council notice."""

    year: int
    source: str
    holidays: frozenset[date]
    working_weekends: frozenset[date]


def china_date(moment: datetime) -> date:
    """The calendar date of an aware `moment` in China (UTC+8)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} is naive: pass an aware datetime")
    return moment.astimezone(CHINA_TZ).date()


def end_of_day(day: date) -> datetime:
    """The last instant of `day` in China, which is when "by day N" expires."""
    return datetime.combine(day, time.max, tzinfo=CHINA_TZ)


class WorkingCalendar:
    def __init__(self, files: Mapping[int, YearFile], extra_dir: Path | None = None) -> None:
        self._files = dict(files)
        self._extra_dir = extra_dir
        # The library's coverage is read from its data, so an upgrade extends it.
        self._library = range(
            min(chinese_calendar.holidays).year, max(chinese_calendar.holidays).year + 1
        )

    @classmethod
    def load(cls, extra_dir: Path | None = None) -> WorkingCalendar:
        """chinesecalendar, overridden by bundled year files, overridden by `extra_dir`'s."""
        if extra_dir is not None and not extra_dir.is_dir():
            raise ConfigurationError(f"calendar directory {extra_dir} does not exist")
        files = _read_dir(BUNDLED_DIR)
        if extra_dir is not None:
            files.update(_read_dir(extra_dir))
        return cls(files, extra_dir)

    def known_years(self) -> list[int]:
        return sorted(set(self._library) | set(self._files))

    def is_official(self, year: int) -> bool:
        """Whether `year` comes from a State Council notice rather than an estimate."""
        return year in self.known_years()

    def is_working_day(self, day: date) -> bool:
        if isinstance(day, datetime):
            # A datetime's own date depends on its zone; make the caller say which.
            raise TypeError("pass a date; use china_date() to convert a datetime")
        year_file = self._files.get(day.year)
        if year_file is not None:
            if day in year_file.working_weekends:
                return True
            return day.weekday() < 5 and day not in year_file.holidays
        if day.year in self._library:
            return bool(chinese_calendar.is_workday(day))
        raise UnknownYearError(self._unknown_year_message(day.year))

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The deadline `days` working days after `start`, as the end of that day (UTC+8).

        The counting starts from the anchor: `start`'s date in China if it is a working
        day, else the next working day (an application made on a holiday is accepted
        when the office reopens). As in 民法典 第二百零一条, the anchor day itself is not
        counted: the deadline is the end (23:59:59.999999+08:00) of the `days`-th working
        day after it, and `days=0` is the end of the anchor day. Raises UnknownYearError
        if the walk reaches a year without a calendar.
        """
        if days < 0:
            raise ValueError(f"days must be >= 0, got {days}")
        day = self._next_working_day(china_date(start))
        for _ in range(days):
            day = self._next_working_day(day + timedelta(days=1))
        return end_of_day(day)

    def working_days_between(self, start: datetime, end: datetime) -> int:
        """Working days elapsed from `start` to `end`, counted as add_working_days does.

        Working days after the anchor up to and including `end`'s date in China, so
        `working_days_between(s, add_working_days(s, n)) == n`; a case is overdue once
        this exceeds its promised number of days.
        """
        if end < start:
            raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
        anchor, last = self._next_working_day(china_date(start)), china_date(end)
        return sum(
            1
            for offset in range(1, (last - anchor).days + 1)
            if self.is_working_day(anchor + timedelta(days=offset))
        )

    def _next_working_day(self, day: date) -> date:
        while not self.is_working_day(day):
            day += timedelta(days=1)
        return day

    def _unknown_year_message(self, year: int) -> str:
        where = (
            str(self._extra_dir)
            if self._extra_dir is not None
            else "the directory named by LIANBAN_CALENDAR_DIR (not set)"
        )
        return (
            f"no working-day calendar for {year}: known years are "
            f"{_spans(self.known_years())} (chinesecalendar {chinese_calendar.__version__}). "
            f"Once the State Council notice for {year} is out, add {year}.yaml to {where} "
            f"as {_FORMAT_HINT}, or upgrade chinesecalendar."
        )


def _spans(years: list[int]) -> str:
    """2004–2026, 2028: ranges of consecutive years, so a gap is visible."""
    spans: list[list[int]] = []
    for year in years:
        if spans and spans[-1][1] == year - 1:
            spans[-1][1] = year
        else:
            spans.append([year, year])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in spans)


def _read_dir(directory: Path) -> dict[int, YearFile]:
    files: dict[int, YearFile] = {}
    for path in sorted([*directory.glob("*.yaml"), *directory.glob("*.yml")]):
        year_file = _read_year_file(path)
        if year_file.year in files:
            raise CalendarFileError(f"{path}: year {year_file.year} has two files")
        files[year_file.year] = year_file
    return files


def _read_year_file(path: Path) -> YearFile:
    def fail(problem: str) -> CalendarFileError:
        return CalendarFileError(f"{path}: {problem}; expected {_FORMAT_HINT}")

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
    return YearFile(year, source.strip(), frozenset(holidays), frozenset(working))


@cache
def working_calendar() -> WorkingCalendar:
    """The process's calendar: bundled data plus the operator's LIANBAN_CALENDAR_DIR."""
    directory = os.environ.get("LIANBAN_CALENDAR_DIR")
    return WorkingCalendar.load(Path(directory) if directory else None)
