"""Which working-day years are official, which provisional, and whether to warn.

The State Council publishes next year's holiday notice each November. From 1 November
on, a next year that is still provisional is worth a warning: deadlines that reach into
it are computed without its 调休 and will move when the notice is added (a year file in
LIANBAN_CALENDAR_DIR, or a chinesecalendar upgrade). `lianban calendar status`, the
`lianban_calendar_next_year_official` metric and its alert all read this.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime

from router.domain.statutory_holidays import FIRST_YEAR, LAST_YEAR
from router.domain.workdays import CHINA_TZ, WorkingCalendar, spans
from router.domain.year_sources import CalendarYear

WARN_FROM_MONTH = 11  # the notice usually comes out in November


@dataclass(frozen=True)
class CalendarStatus:
    today: date
    official: list[CalendarYear]
    provisional: list[int]

    @property
    def next_year(self) -> int:
        return self.today.year + 1

    @property
    def next_year_official(self) -> bool:
        return any(year.year == self.next_year for year in self.official)

    @property
    def warning(self) -> str | None:
        if self.next_year_official or self.today.month < WARN_FROM_MONTH:
            return None
        return (
            f"{self.next_year} is not official yet: its deadlines are provisional "
            f"(statutory holidays, no 调休) and will move once its notice is added. "
            f"When 国务院办公厅关于{self.next_year}年部分节假日安排的通知 is out, add "
            f"{self.next_year}.yaml to LIANBAN_CALENDAR_DIR "
            f"(router/domain/workdays_data/README.md) or upgrade chinesecalendar."
        )

    def lines(self) -> list[str]:
        """What `lianban calendar status` prints."""
        by_source: dict[str, list[int]] = {}
        for year in self.official:
            by_source.setdefault(f"{year.origin.value}: {year.source}", []).append(year.year)
        lines = [
            f"years covered: {FIRST_YEAR}–{LAST_YEAR} (a year that is not official is "
            "provisional: statutory holidays and weekends, no 调休)",
            f"official years: {spans([year.year for year in self.official])}",
        ]
        lines += [f"  {spans(years)}  {source}" for source, years in by_source.items()]
        lines.append(f"provisional years: {spans(self.provisional) or 'none'}")
        if self.warning:
            lines.append(f"WARNING: {self.warning}")
        return lines


def calendar_status(calendar: WorkingCalendar, today: date | None = None) -> CalendarStatus:
    """The calendar's coverage as of `today` (China's date now, by default)."""
    today = today or datetime.now(CHINA_TZ).date()
    return CalendarStatus(
        today,
        [calendar.year(year) for year in calendar.official_years()],
        calendar.provisional_years(today),
    )
