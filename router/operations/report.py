"""The monthly supervision report (通报): 004 第二十四条 asks 办件量, 不予受理量, 收件时限,
办理时限, 办结率 to be reported, and 三(三) asks units to be "评价、排名、通报" with a
满意度调查. One row per department and per bundle type, ranked, as CSV and XLSX.

The period is a calendar month in China time: the bundles received from the 1st 00:00
to the next month's 1st 00:00 (UTC+8); its working days are counted with the working
calendar. Items are counted (事项), as in the supervision figures; on time means within
the clock's working days, paused time excluded. Rows are ranked within their group by
按时办结率 (higher first), then 满意率 (higher first), then 超期 (fewer first), then
办件量 (more first); a group with nothing decided yet ranks after those with decisions.
"""

from __future__ import annotations

import csv
import io
import re
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import date, datetime, timedelta

from contracts.catalog import Catalog
from router.domain.workdays import WorkingCalendar
from router.operations.overview import china_period
from router.operations.satisfaction import NO_RATINGS, RatingFigures, rating_figures
from router.operations.supervision import Figures, ItemTiming, item_timings
from router.store import Database

Cell = int | float | str | None


@dataclass(frozen=True)
class Month:
    year: int
    month: int

    @classmethod
    def parse(cls, text: str) -> Month:
        """`2026-11`; ValueError saying the format otherwise."""
        found = re.fullmatch(r"(\d{4})-(\d{2})", text.strip())
        if found is None or not 1 <= int(found[2]) <= 12:
            raise ValueError(f"month {text!r}: write it as YYYY-MM, e.g. 2026-11")
        return cls(int(found[1]), int(found[2]))

    @property
    def first_day(self) -> date:
        return date(self.year, self.month, 1)

    @property
    def last_day(self) -> date:
        following = date(self.year + self.month // 12, self.month % 12 + 1, 1)
        return following - timedelta(days=1)

    def __str__(self) -> str:
        return f"{self.year:04d}-{self.month:02d}"


# (header, what the row's figures give, XLSX number format)
_RATIO, _DAYS = "0.00%", "0.00"
COLUMNS: tuple[tuple[str, str | None], ...] = (
    ("排名", None),
    ("类别", None),
    ("代码", None),
    ("名称", None),
    ("办件量", None),
    ("受理", None),
    ("不予受理", None),
    ("按时受理", None),
    ("按时受理率", _RATIO),
    ("办结", None),
    ("按时办结", None),
    ("按时办结率", _RATIO),
    ("平均办理工作日", _DAYS),
    ("超期", None),
    ("撤回", None),
    ("评价数", None),
    ("非常满意", None),
    ("满意", None),
    ("基本满意", None),
    ("不满意", None),
    ("非常不满意", None),
    ("满意率", _RATIO),
    ("整改未结", None),
    ("整改超期", None),
)
HEADERS = tuple(header for header, _ in COLUMNS)
DEPARTMENT, BUNDLE_TYPE = "部门", "一件事"


@dataclass(frozen=True)
class Report:
    month: Month
    working_days: int
    generated_at: datetime
    rows: tuple[tuple[Cell, ...], ...]

    def csv(self) -> str:
        out = io.StringIO()
        writer = csv.writer(out, lineterminator="\n")
        writer.writerow(HEADERS)
        writer.writerows([_text(cell) for cell in row] for row in self.rows)
        return out.getvalue()

    def xlsx(self) -> bytes:
        # openpyxl (and the numpy it loads) only for the one who asks for a spreadsheet:
        # the intake API's process would otherwise hold them for its life.
        from openpyxl import Workbook
        from openpyxl.styles import Font

        book = Workbook()
        sheet = book.active
        assert sheet is not None
        sheet.title = f"通报 {self.month}"
        sheet.append(HEADERS)
        for cell in sheet[1]:
            cell.font = Font(bold=True)
        for row in self.rows:
            sheet.append(row)
        for index, (_, number_format) in enumerate(COLUMNS, start=1):
            if number_format is None:
                continue
            for (cell,) in sheet.iter_rows(min_row=2, min_col=index, max_col=index):
                cell.number_format = number_format
        sheet.freeze_panes = "E2"
        about = book.create_sheet("说明")
        for line in self.about():
            about.append(line)
        buffer = io.BytesIO()
        book.save(buffer)
        return buffer.getvalue()

    def about(self) -> list[tuple[str, str]]:
        return [
            (
                "统计期间",
                f"{self.month.first_day} 至 {self.month.last_day}（北京时间，按收件时间）",
            ),
            ("工作日数", str(self.working_days)),
            ("计数单位", "事项（办件中的每个联办事项）；评价按办件或按部门"),
            ("排名规则", "按时办结率高者在前，其次满意率高者、超期少者、办件量多者"),
            ("满意率", "基本满意及以上的评价数 ÷ 评价数"),
            ("生成时间", self.generated_at.isoformat()),
        ]


def _text(cell: Cell) -> str:
    return "" if cell is None else str(cell)


def monthly_report(
    database: Database, catalog: Catalog, month: Month, calendar: WorkingCalendar, now: datetime
) -> Report:
    start, end = china_period(month.first_day, month.last_day)
    with database.snapshot() as session:
        items = item_timings(session, start, end)
        ratings = rating_figures(session, start, end, now)
    names = {code: department.name_zh for code, department in catalog.departments.items()}
    names |= catalog.bundle_type_names()  # every region's: a month spans them all
    rows = _ranked(DEPARTMENT, items, lambda item: item.department, ratings.by_department, names)
    rows += _ranked(
        BUNDLE_TYPE, items, lambda item: item.bundle_type, ratings.by_bundle_type, names
    )
    days = [month.first_day + timedelta(days=n) for n in range(month.last_day.day)]
    return Report(
        month=month,
        working_days=sum(1 for day in days if calendar.is_working_day(day)),
        generated_at=now,
        rows=tuple(rows),
    )


def _ranked(
    kind: str,
    items: Sequence[ItemTiming],
    key: Callable[[ItemTiming], str],
    ratings: dict[str, RatingFigures],
    names: dict[str, str],
) -> list[tuple[Cell, ...]]:
    groups: dict[str, list[ItemTiming]] = defaultdict(list)
    for item in items:
        groups[key(item)].append(item)
    codes = sorted({*groups, *ratings})
    figures = {code: Figures.of(groups[code]) for code in codes}
    satisfaction = {
        code: ratings[code].satisfaction_ratio if code in ratings else None for code in codes
    }

    def rank_key(code: str) -> tuple[bool, float, float, int, int, str]:
        on_time, satisfied = figures[code].decision_on_time_ratio, satisfaction[code]
        return (
            on_time is None,
            -(on_time or 0.0),
            -(satisfied if satisfied is not None else -1.0),
            figures[code].overdue,
            -figures[code].volume,
            code,
        )

    ordered = sorted(codes, key=rank_key)
    return [
        _row(
            rank, kind, code, names.get(code, code), groups[code], figures[code], ratings.get(code)
        )
        for rank, code in enumerate(ordered, start=1)
    ]


def _row(
    rank: int,
    kind: str,
    code: str,
    name: str,
    items: Sequence[ItemTiming],
    figures: Figures,
    rated: RatingFigures | None,
) -> tuple[Cell, ...]:
    rated = rated or NO_RATINGS
    return (
        rank,
        kind,
        code,
        name,
        figures.volume,
        figures.accepted,
        figures.rejected,
        sum(1 for item in items if item.answered_on_time),
        _ratio(figures.intake_on_time_ratio),
        figures.completed,
        sum(1 for item in items if item.decided_on_time),
        _ratio(figures.decision_on_time_ratio),
        None
        if figures.decision_working_days_avg is None
        else round(figures.decision_working_days_avg, 2),
        figures.overdue,
        figures.withdrawn,
        rated.rated,
        rated.very_satisfied,
        rated.satisfied,
        rated.basically_satisfied,
        rated.dissatisfied,
        rated.very_dissatisfied,
        _ratio(rated.satisfaction_ratio),
        rated.rectifications_open,
        rated.rectifications_overdue,
    )


def _ratio(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
