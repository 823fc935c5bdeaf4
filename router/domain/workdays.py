"""Chinese working days (工作日) for 承诺办结时限 deadlines and overdue checks.

Deadlines such as "5个工作日" skip statutory holidays and count the weekends the State
Council moves to working days (调休), so weekday arithmetic and the `holidays` package
(no 调休) are wrong. A year is official when its notice has reached us, in
chinesecalendar or a year file (`router/domain/year_sources.py`). Any other year from
1901 to 2099 is provisional: its statutory holidays and weekends
(`router/domain/statutory_holidays.py`), so an item dispatched in late December still
gets its deadlines, which callers mark provisional (`is_official`) and recompute when
the official year arrives.

The process's live calendar is `working_calendar()`; the CalendarWatcher
(`router/domain/calendar_watcher.py`) replaces it when a year file or a chinesecalendar
release changes a year, and then calls every `on_change` callback with the years changed.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable, Mapping
from datetime import date, datetime, time, timedelta, timezone
from functools import cache, lru_cache
from pathlib import Path

from contracts.errors import ConfigurationError, UnknownYearError
from router.domain.statutory_holidays import FIRST_YEAR, LAST_YEAR, statutory_holidays
from router.domain.year_sources import CalendarYear, Origin, official_years

# Asia/Shanghai has had no daylight saving time since 1991: a fixed offset is exact for
# every year a calendar exists and needs no tzdata on the host.
CHINA_TZ = timezone(timedelta(hours=8))
PROVISIONAL_SOURCE = "《全国年节及纪念日放假办法》 statutory holidays and weekends, without 调休"


def china_date(moment: datetime) -> date:
    """The calendar date of an aware `moment` in China (UTC+8)."""
    if moment.tzinfo is None or moment.utcoffset() is None:
        raise ValueError(f"{moment.isoformat()} is naive: pass an aware datetime")
    return moment.astimezone(CHINA_TZ).date()


def end_of_day(day: date) -> datetime:
    """The last instant of `day` in China, which is when "by day N" expires."""
    return datetime.combine(day, time.max, tzinfo=CHINA_TZ)


class WorkingCalendar:
    def __init__(self, official: Mapping[int, CalendarYear]) -> None:
        self._official = dict(official)
        self._provisional_asked: set[int] = set()
        # A calendar never changes (the watcher replaces it): its day counts are kept,
        # as every deadline moved counts the same few dates again, a day at a time.
        self._working_day_after = lru_cache(maxsize=4096)(self._count_working_days)
        self._working_days_from = lru_cache(maxsize=4096)(self._count_days_between)

    @classmethod
    def load(cls, extra_dir: Path | None = None) -> WorkingCalendar:
        """chinesecalendar, overridden by bundled year files, overridden by `extra_dir`'s."""
        if extra_dir is not None and not extra_dir.is_dir():
            raise ConfigurationError(f"calendar directory {extra_dir} does not exist")
        return cls(official_years(extra_dir))

    def is_official(self, year: int) -> bool:
        return year in self._official

    def official_years(self) -> list[int]:
        return sorted(self._official)

    def provisional_years(self, today: date | None = None) -> list[int]:
        """The provisional years asked about so far, and next year if it is not official."""
        next_year = (today or datetime.now(CHINA_TZ).date()).year + 1
        asked = set(self._provisional_asked)
        if not self.is_official(next_year):
            asked.add(next_year)
        return sorted(asked)

    def year(self, year: int) -> CalendarYear:
        """The year's days, official or provisional; UnknownYearError outside 1901–2099."""
        days = self._days(year)
        if days.origin is Origin.PROVISIONAL:
            self._provisional_asked.add(year)
        return days

    def _days(self, year: int) -> CalendarYear:
        official = self._official.get(year)
        if official is not None:
            return official
        if not FIRST_YEAR <= year <= LAST_YEAR:
            raise UnknownYearError(self._unknown_year_message(year))
        return provisional_year(year)

    def is_working_day(self, day: date) -> bool:
        if isinstance(day, datetime):
            # A datetime's own date depends on its zone; make the caller say which.
            raise TypeError("pass a date; use china_date() to convert a datetime")
        days = self.year(day.year)
        if day in days.working_weekends:
            return True
        return day.weekday() < 5 and day not in days.holidays

    def changed_years(self, other: WorkingCalendar) -> set[int]:
        """The years whose working days or officialness differ in `other`: the years
        whose deadlines must be recomputed (and unmarked provisional) after a swap."""
        years = set(self._official) | set(other._official)
        return {
            year
            for year in years
            if FIRST_YEAR <= year <= LAST_YEAR
            and (
                self.is_official(year) != other.is_official(year)
                or not self._days(year).same_days(other._days(year))
            )
        }

    def add_working_days(self, start: datetime, days: int) -> datetime:
        """The deadline `days` working days after `start`, as the end of that day (UTC+8).

        The counting starts from the anchor: `start`'s date in China if it is a working
        day, else the next working day (an application made on a holiday is accepted
        when the office reopens). As in 民法典 第二百零一条, the anchor day itself is not
        counted: the deadline is the end (23:59:59.999999+08:00) of the `days`-th working
        day after it, and `days=0` is the end of the anchor day. A year without official
        data is counted provisionally (see the module docstring).
        """
        if days < 0:
            raise ValueError(f"days must be >= 0, got {days}")
        return end_of_day(self._working_day_after(china_date(start), days))

    def _count_working_days(self, start: date, days: int) -> date:
        day = self._next_working_day(start)
        for _ in range(days):
            day = self._next_working_day(day + timedelta(days=1))
        return day

    def working_days_between(self, start: datetime, end: datetime) -> int:
        """Working days elapsed from `start` to `end`, counted as add_working_days does.

        Working days after the anchor up to and including `end`'s date in China, so
        `working_days_between(s, add_working_days(s, n)) == n`; a case is overdue once
        this exceeds its promised number of days.
        """
        if end < start:
            raise ValueError(f"end {end.isoformat()} is before start {start.isoformat()}")
        return self._working_days_from(china_date(start), china_date(end))

    def _count_days_between(self, start: date, last: date) -> int:
        anchor = self._next_working_day(start)
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
        return (
            f"no working-day calendar for {year}: official years are "
            f"{spans(self.official_years())}, and provisional ones can be computed for "
            f"{FIRST_YEAR}–{LAST_YEAR} only"
        )


@cache
def provisional_year(year: int) -> CalendarYear:
    """A year without a notice: its statutory holidays and weekends, no 调休."""
    holidays = frozenset(statutory_holidays(year))
    return CalendarYear(year, PROVISIONAL_SOURCE, holidays, frozenset(), Origin.PROVISIONAL)


def spans(years: list[int]) -> str:
    """2004–2026, 2028: ranges of consecutive years, so a gap is visible."""
    runs: list[list[int]] = []
    for year in years:
        if runs and runs[-1][1] == year - 1:
            runs[-1][1] = year
        else:
            runs.append([year, year])
    return ", ".join(str(a) if a == b else f"{a}–{b}" for a, b in runs)


_live: WorkingCalendar | None = None
_live_lock = threading.Lock()
_callbacks: list[Callable[[WorkingCalendar, set[int]], None]] = []


def calendar_dir() -> Path | None:
    """The operator's year-file directory, LIANBAN_CALENDAR_DIR (optional)."""
    directory = os.environ.get("LIANBAN_CALENDAR_DIR")
    return Path(directory) if directory else None


def working_calendar() -> WorkingCalendar:
    """The process's live calendar: bundled data plus the operator's LIANBAN_CALENDAR_DIR,
    as the CalendarWatcher last read them. Ask again for each computation: it is replaced."""
    global _live
    with _live_lock:
        if _live is None:
            _live = WorkingCalendar.load(calendar_dir())
        return _live


def on_change(callback: Callable[[WorkingCalendar, set[int]], None]) -> Callable[[], None]:
    """Call `callback(new calendar, changed years)` after every swap; returns the undo."""
    _callbacks.append(callback)
    return lambda: _callbacks.remove(callback)


def replace_working_calendar(
    calendar: WorkingCalendar, changed: Iterable[int], *, replacing: WorkingCalendar
) -> bool:
    """Make `calendar` the live one if `replacing` still is, then tell every callback (on
    the caller's thread). False, and nothing called, when another watcher was first."""
    global _live
    with _live_lock:
        if _live is not replacing:
            return False
        _live = calendar
    years = set(changed)
    for callback in list(_callbacks):
        callback(calendar, years)
    return True
