"""The provisional calendar's statutory holidays (《全国年节及纪念日放假办法》, 2024 amendment).

Facts cited:
- 2026: 春节 除夕 2月16日, 清明 4月5日, 端午 6月19日, 中秋 9月25日 (农历); the 2026 notice
  (国办发明电〔2025〕7号) gives every one of these days off.
- 2027: 除夕 2月5日, 正月初一 2月6日, 清明 4月5日, 端午 6月9日, 中秋 9月15日.
"""

from __future__ import annotations

from datetime import date

import pytest

from router.domain.statutory_holidays import statutory_holidays
from router.domain.year_sources import package_years


def test_2027_follows_the_lunar_calendar() -> None:
    holidays = statutory_holidays(2027)
    assert len(holidays) == 13  # 1 + 4 + 1 + 2 + 1 + 1 + 3 days
    assert [day for day, name in sorted(holidays.items()) if name == "春节"] == [
        date(2027, 2, 5),
        date(2027, 2, 6),
        date(2027, 2, 7),
        date(2027, 2, 8),
    ]
    assert holidays[date(2027, 4, 5)] == "清明节"
    assert holidays[date(2027, 6, 9)] == "端午节"
    assert holidays[date(2027, 9, 15)] == "中秋节"
    assert holidays[date(2027, 5, 2)] == "劳动节"
    assert holidays[date(2027, 10, 3)] == "国庆节"


@pytest.mark.parametrize("year", [2025, 2026])
def test_every_statutory_day_is_off_in_the_official_notices(year: int) -> None:
    # The amended rules are in force from 2025: each notice since gives these days off.
    assert set(statutory_holidays(year)) <= package_years()[year].holidays


def test_every_year_keeps_its_own_days() -> None:
    for year in range(1901, 2100):
        holidays = statutory_holidays(year)
        # 13 days, or 12 when 中秋 falls on 1–3 October (2020: 1 October).
        assert len(holidays) in (12, 13), year
        assert {day.year for day in holidays} == {year}
    assert len(statutory_holidays(2020)) == 12


def test_years_outside_the_lunar_tables_are_refused() -> None:
    with pytest.raises(ValueError, match="1901–2099"):
        statutory_holidays(2100)
