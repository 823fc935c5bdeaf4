"""Working-day arithmetic for 承诺办结时限, against real State Council notices.

Facts cited:
- 国务院办公厅关于2024年部分节假日安排的通知 (国办发明电〔2023〕7号, 2023-10-25):
  国庆节 10月1日至7日放假调休; 9月29日(星期日)、10月12日(星期六)上班.
- 国务院办公厅关于2025年部分节假日安排的通知 (国办发明电〔2024〕12号, 2024-11-12):
  春节 1月28日至2月4日放假调休; 1月26日(周日)、2月8日(周六)上班.
"""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import chinese_calendar
import pytest

from contracts.errors import CalendarFileError, ConfigurationError, UnknownYearError
from router.domain.workdays import CHINA_TZ, WorkingCalendar
from router.domain.year_sources import Origin


@pytest.fixture(scope="module")
def calendar() -> WorkingCalendar:
    return WorkingCalendar.load()


def at(text: str) -> datetime:
    """An aware datetime in China: at("2024-09-30 10:00")."""
    return datetime.fromisoformat(text).replace(tzinfo=CHINA_TZ)


def end_of(text: str) -> datetime:
    return datetime.fromisoformat(f"{text} 23:59:59.999999").replace(tzinfo=CHINA_TZ)


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text, encoding="utf-8")
    return path


# Made-up test data in the year-file format; the real 2027 notice is not published yet.
YEAR_2027 = """\
year: 2027
source: "国务院办公厅关于2027年部分节假日安排的通知"
holidays:
  - {name: 元旦, from: 2027-01-01, to: 2027-01-03}
  - {name: 春节, from: 2027-02-05, to: 2027-02-11}
working_weekends: [2027-02-14]
"""


def test_official_years_come_from_chinesecalendar(calendar: WorkingCalendar) -> None:
    years = calendar.official_years()
    assert years == sorted(years)
    assert years[0] == 2004
    assert set(range(2004, 2027)) <= set(years)
    assert calendar.year(2025).origin == Origin.PACKAGE
    assert calendar.year(2025).source == f"chinesecalendar {chinese_calendar.__version__}"


@pytest.mark.parametrize(
    ("day", "working"),
    [
        ("2024-09-27", True),  # Friday
        ("2024-09-28", False),  # Saturday, ordinary weekend
        ("2024-09-29", True),  # Sunday, 调休
        ("2024-09-30", True),
        *((f"2024-10-0{n}", False) for n in range(1, 8)),  # 国庆节
        ("2024-10-08", True),
        ("2024-10-12", True),  # Saturday, 调休
        ("2024-10-13", False),
        ("2025-01-26", True),  # Sunday, 调休
        ("2025-01-27", True),
        ("2025-01-28", False),  # 除夕
        ("2025-02-04", False),  # 正月初七
        ("2025-02-05", True),
        ("2025-02-08", True),  # Saturday, 调休
        ("2025-02-09", False),
    ],
)
def test_notices_2024_and_2025(calendar: WorkingCalendar, day: str, working: bool) -> None:
    assert calendar.is_working_day(date.fromisoformat(day)) is working


def test_national_day_2024_is_skipped(calendar: WorkingCalendar) -> None:
    deadline = calendar.add_working_days(at("2024-09-30 10:00"), 1)
    assert deadline == end_of("2024-10-08")
    assert deadline.utcoffset() == timedelta(hours=8)


def test_adjusted_working_weekends_are_counted(calendar: WorkingCalendar) -> None:
    assert calendar.add_working_days(at("2024-10-11 09:00"), 1) == end_of("2024-10-12")
    assert calendar.add_working_days(at("2024-09-27 09:00"), 1) == end_of("2024-09-29")
    # Spring Festival 2025: Sun 01-26, Mon 01-27, then the holiday, then Wed 02-05.
    assert calendar.add_working_days(at("2025-01-24 16:00"), 3) == end_of("2025-02-05")
    assert calendar.add_working_days(at("2025-02-07 16:00"), 1) == end_of("2025-02-08")


def test_working_days_between_skips_the_holiday(calendar: WorkingCalendar) -> None:
    # After Fri 09-27: Sun 09-29 (调休), 09-30, then 10-08 and 10-09.
    assert calendar.working_days_between(at("2024-09-27 09:00"), at("2024-10-09 17:00")) == 4
    assert calendar.working_days_between(at("2024-09-30 10:00"), at("2024-10-07 23:00")) == 0
    assert calendar.working_days_between(at("2024-09-30 10:00"), at("2024-09-30 18:00")) == 0


def test_between_inverts_add(calendar: WorkingCalendar) -> None:
    for start in (at("2024-09-28 10:00"), at("2024-10-03 10:00"), at("2025-01-25 08:00")):
        for days in range(12):
            deadline = calendar.add_working_days(start, days)
            assert calendar.working_days_between(start, deadline) == days


def test_zero_days(calendar: WorkingCalendar) -> None:
    assert calendar.add_working_days(at("2024-09-30 10:00"), 0) == end_of("2024-09-30")
    assert calendar.add_working_days(at("2024-10-01 10:00"), 0) == end_of("2024-10-08")
    # Saturday 09-28 is off; the next day is the 调休 Sunday.
    assert calendar.add_working_days(at("2024-09-28 10:00"), 0) == end_of("2024-09-29")


def test_start_on_a_holiday_counts_from_the_next_working_day(calendar: WorkingCalendar) -> None:
    # Accepted when the office reopens on 10-08; one working day later is 10-09.
    assert calendar.add_working_days(at("2024-10-01 10:00"), 1) == end_of("2024-10-09")


def test_dates_are_read_in_utc_plus_8(calendar: WorkingCalendar) -> None:
    # 2024-09-30 17:30 UTC is already 10-01 01:30 in China: a holiday.
    late_utc = datetime(2024, 9, 30, 17, 30, tzinfo=UTC)
    assert calendar.add_working_days(late_utc, 0) == end_of("2024-10-08")
    # 2024-09-29 16:30 UTC is 09-30 00:30 in China; 15:30 UTC is still 09-29.
    assert calendar.add_working_days(datetime(2024, 9, 29, 16, 30, tzinfo=UTC), 1) == end_of(
        "2024-10-08"
    )
    assert calendar.add_working_days(datetime(2024, 9, 29, 15, 30, tzinfo=UTC), 1) == end_of(
        "2024-09-30"
    )
    assert calendar.working_days_between(at("2024-09-27 09:00"), late_utc) == 2


def test_misuse_is_refused(calendar: WorkingCalendar) -> None:
    with pytest.raises(ValueError, match="naive"):
        calendar.add_working_days(datetime(2024, 9, 30, 10, 0), 1)
    with pytest.raises(ValueError, match="days"):
        calendar.add_working_days(at("2024-09-30 10:00"), -1)
    with pytest.raises(ValueError, match="before"):
        calendar.working_days_between(at("2024-10-09 10:00"), at("2024-09-30 10:00"))
    with pytest.raises(TypeError):
        calendar.is_working_day(at("2024-09-30 10:00"))


def test_a_year_without_a_notice_is_provisional(calendar: WorkingCalendar) -> None:
    year = calendar.official_years()[-1] + 1
    assert year >= 2027  # chinesecalendar 1.11.0 stops at 2026
    assert not calendar.is_official(year)
    assert calendar.year(year).origin == Origin.PROVISIONAL
    assert calendar.year(year).working_weekends == frozenset()  # no 调休 can be known


def test_deadlines_cross_into_a_provisional_2027() -> None:
    calendar = WorkingCalendar.load()
    # 2027-01-01 (Friday, 元旦) off, then the weekend: the next working day is Monday.
    assert calendar.add_working_days(at("2026-12-31 10:00"), 1) == end_of("2027-01-04")
    # 春节 2027 (statutory): 除夕 Feb 5 (Fri) to 初三 Feb 8 (Mon), then Feb 9 is worked.
    assert calendar.add_working_days(at("2027-02-04 10:00"), 1) == end_of("2027-02-09")
    assert calendar.working_days_between(at("2026-12-28 10:00"), end_of("2027-01-29")) == 23
    assert calendar.provisional_years(today=date(2026, 12, 4)) == [2027]


def test_provisional_years_lists_the_years_asked_about_and_next_year() -> None:
    calendar = WorkingCalendar.load()
    assert calendar.provisional_years(today=date(2025, 3, 1)) == []  # 2026 is official
    assert calendar.provisional_years(today=date(2026, 12, 4)) == [2027]
    calendar.is_working_day(date(2031, 5, 1))
    assert calendar.provisional_years(today=date(2025, 3, 1)) == [2031]
    assert calendar.provisional_years(today=date(2026, 12, 4)) == [2027, 2031]


def test_no_year_from_1901_to_2099_raises(calendar: WorkingCalendar) -> None:
    start = at("1901-01-01 10:00")
    assert calendar.working_days_between(start, end_of("2099-12-31")) > 50_000
    for year in (1900, 2100):
        with pytest.raises(UnknownYearError, match="1901–2099") as caught:
            calendar.is_working_day(date(year, 6, 1))
        assert isinstance(caught.value, ConfigurationError)


def test_year_file_makes_2027_known(tmp_path: Path) -> None:
    write(tmp_path, "2027.yaml", YEAR_2027)
    calendar = WorkingCalendar.load(tmp_path)
    assert calendar.is_official(2027)
    assert calendar.year(2027).origin == Origin.FILE
    assert calendar.is_working_day(date(2027, 2, 5)) is False  # Friday, 春节
    assert calendar.is_working_day(date(2027, 2, 14)) is True  # Sunday, 调休
    assert calendar.is_working_day(date(2027, 2, 13)) is False  # Saturday
    assert calendar.add_working_days(at("2027-02-04 10:00"), 1) == end_of("2027-02-12")
    # 2026 still comes from chinesecalendar: the walk crosses the year boundary.
    assert calendar.add_working_days(at("2026-12-31 10:00"), 1) == end_of("2027-01-04")
    assert not calendar.is_official(2028)


def test_year_file_overrides_chinesecalendar(tmp_path: Path) -> None:
    assert chinese_calendar.is_workday(date(2025, 2, 3)) is False
    write(
        tmp_path,
        "2025.yaml",
        'year: 2025\nsource: "corrected notice"\n'
        "holidays: [{name: 春节, from: 2025-01-28, to: 2025-01-31}]\n"
        "working_weekends: [2025-02-08]\n",
    )
    calendar = WorkingCalendar.load(tmp_path)
    assert calendar.is_working_day(date(2025, 2, 3)) is True  # no longer a holiday
    assert calendar.is_working_day(date(2025, 1, 26)) is False  # 调休 not in the file
    assert calendar.is_working_day(date(2025, 2, 8)) is True
    assert calendar.is_working_day(date(2025, 10, 1)) is True  # the file replaces the year
    assert calendar.is_working_day(date(2024, 10, 1)) is False  # other years untouched


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        (YEAR_2027.replace("to: 2027-01-03", "to: 2028-01-03"), "2028-01-03 is outside 2027"),
        (YEAR_2027.replace("[2027-02-14]", "[2026-12-27]"), "working_weekends[0]"),
        (YEAR_2027.replace("[2027-02-14]", "[2027-02-15]"), "2027-02-15 is a Monday"),
        (YEAR_2027.replace("[2027-02-14]", "[2027-01-02]"), "also listed as a holiday"),
        (YEAR_2027.replace("from: 2027-02-05", "from: 2027-02-12"), "holidays[1] (春节)"),
        (YEAR_2027.replace("year: 2027", "year: 2026"), "matching the file name"),
        (YEAR_2027.replace("working_weekends", "working_weekend"), "unknown keys"),
        (
            YEAR_2027.replace('source: "国务院办公厅关于2027年部分节假日安排的通知"', ""),
            "`source` must name",
        ),
        (YEAR_2027.replace("2027-02-05", "Feb 5"), "not a date"),
        ("- 2027-01-01\n", "not a mapping"),
    ],
)
def test_bad_year_file_is_refused(tmp_path: Path, text: str, problem: str) -> None:
    path = write(tmp_path, "2027.yaml", text)
    with pytest.raises(CalendarFileError) as caught:
        WorkingCalendar.load(tmp_path)
    assert str(path) in str(caught.value)
    assert problem in str(caught.value)


def test_directory_problems_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="does not exist"):
        WorkingCalendar.load(tmp_path / "missing")
    write(tmp_path, "2027.yaml", YEAR_2027)
    write(tmp_path, "2027.yml", YEAR_2027)
    with pytest.raises(CalendarFileError, match="two files"):
        WorkingCalendar.load(tmp_path)
