"""A provisional year: the statutory holidays, for a year whose notice is not out yet.

《全国年节及纪念日放假办法》 (as amended in 2024, in force from 2025) gives every
citizen these days off:

    元旦   1 January                               1 day
    春节   农历除夕, 正月初一, 初二, 初三               4 days
    清明节 the day of the 清明 solar term              1 day
    劳动节 1 and 2 May                              2 days
    端午节 农历五月初五                               1 day
    中秋节 农历八月十五                               1 day
    国庆节 1, 2 and 3 October                       3 days

plus Saturdays and Sundays. Which weekends are worked (调休) and how holidays are
bridged is decided each year by the State Council's notice, so a provisional year has
no working weekend and is usually shorter on days off than the real one: deadlines
computed from it can only move later once the notice arrives. The rules in force since
2025 are applied to every year; the lunar dates and solar terms come from lunar-python,
which covers 1901–2099.
"""

from __future__ import annotations

from datetime import date, timedelta

from lunar_python import Lunar, Solar

FIRST_YEAR, LAST_YEAR = 1901, 2099

_SOLAR_HOLIDAYS = {
    "元旦": [(1, 1)],
    "劳动节": [(5, 1), (5, 2)],
    "国庆节": [(10, 1), (10, 2), (10, 3)],
}


def statutory_holidays(year: int) -> dict[date, str]:
    """Every statutory day off in `year` (Gregorian), named."""
    if not FIRST_YEAR <= year <= LAST_YEAR:
        raise ValueError(f"statutory holidays are known for {FIRST_YEAR}–{LAST_YEAR}, not {year}")
    days = {
        date(year, month, day): name
        for name, month_days in _SOLAR_HOLIDAYS.items()
        for month, day in month_days
    }
    new_year = _date(Lunar.fromYmd(year, 1, 1).getSolar())
    # 正月初一 falls between 21 January and 20 February: 除夕 to 初三 stay inside `year`.
    for offset in range(-1, 3):
        days[new_year + timedelta(days=offset)] = "春节"
    days[_date(Lunar.fromYmd(year, 5, 5).getSolar())] = "端午节"
    days[_date(Lunar.fromYmd(year, 8, 15).getSolar())] = "中秋节"
    # The solar-term table of lunar year `year` holds the 清明 of Gregorian `year`.
    days[_date(Lunar.fromYmd(year, 3, 1).getJieQiTable()["清明"])] = "清明节"
    return days


def _date(solar: Solar) -> date:
    return date(solar.getYear(), solar.getMonth(), solar.getDay())
