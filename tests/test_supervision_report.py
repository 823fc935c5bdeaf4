"""The monthly supervision report (通报) against figures computed by hand, on SQLite and
(connected) PostgreSQL, each in a database of its own (a month's report reads every
bundle of the month, so a shared database would mix other tests' bundles in).

Four car-wash bundles (洗车场开办: 排水许可 at housing, 取水许可 at water resources), each
step at a simulated moment through the real intake, correlator, deadline watcher, rating
and rectification code. September 2025 has 23 working days (Sunday 28th is worked for
National Day); 1–8 October are off.

    B1  Mon 1 Sep   both accepted in time, decided in 2 and 3 working days; rated
                    满意, housing 非常满意, water 不满意 → water's 整改, replied in time
    B2  Wed 10 Sep  housing 不予受理 at once; water answers late (超期 raised 12 Sep),
                    decides in 1 day; rated 非常不满意 → 整改 for housing (the lead
                    department), due 15 Oct, still open on 20 Oct; water 基本满意
    B3  Mon 22 Sep  housing accepts; withdrawn (撤回) the next day, water unanswered
    B4  Thu 9 Oct   received in October: not in September's report
"""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine
from harness import KEYRING, new_project_no
from openpyxl import load_workbook
from sqlalchemy import select

from contracts.api import Rating
from contracts.catalog import Catalog
from contracts.messages import Accepted, Decided, ItemDispatch, ItemOutcome, OutcomeResult, Rejected
from contracts.samples import SAMPLE_PDF, sample_application
from lianban import cli
from router.domain import ratings
from router.domain.correlator import Applied, Correlator
from router.domain.deadlines import DeadlineWatcher
from router.domain.intake import Intake, Received
from router.domain.rectifications import Replied, reply
from router.domain.withdrawal import Withdrawn, withdraw
from router.domain.workdays import working_calendar
from router.operations.report import HEADERS, Month, monthly_report
from router.store import Database, OutboxRow
from runtime.storage import LocalMaterialStore

CHINA = timezone(timedelta(hours=8))
HOUSING, WATER = "sewage_discharge_permit", "water_abstraction_permit"


def at(month: int, day: int, hour: int = 10) -> datetime:
    return datetime(2025, month, day, hour, tzinfo=CHINA)


@dataclass
class CarWashes:
    database: Database
    catalog: Catalog
    intake: Intake
    correlator: Correlator

    def receive(self, when: datetime) -> tuple[uuid.UUID, dict[str, ItemDispatch]]:
        project_no = new_project_no()
        application = sample_application(self.catalog.bundle_types["open_car_wash"], project_no)
        with time_machine.travel(when, tick=False):
            received = self.intake.submit(application, project_no)
        assert isinstance(received, Received)
        bundle_id = received.receipt.bundle_id
        with self.database.transaction() as session:
            bodies = session.scalars(
                select(OutboxRow.body).where(OutboxRow.correlation_id == str(bundle_id))
            ).all()
        dispatches = [ItemDispatch.model_validate_json(body) for body in bodies]
        return bundle_id, {dispatch.item: dispatch for dispatch in dispatches}

    def answer(self, dispatch: ItemDispatch, when: datetime, result: OutcomeResult) -> None:
        with time_machine.travel(when, tick=False):
            outcome = ItemOutcome.answering(dispatch, result)
            assert self.correlator.apply(outcome) is Applied.APPLIED

    def rate(self, bundle_id: uuid.UUID, when: datetime, rating: dict[str, Any]) -> list[Any]:
        result = ratings.rate(
            self.database,
            self.catalog,
            bundle_id,
            Rating.model_validate(rating),
            actor="platform",
            at=when,
            calendar=working_calendar(),
            rectification_days=15,
        )
        assert isinstance(result, ratings.Rated)
        return list(result.record.rectifications)


@pytest.fixture
def september(database: Database, catalog: Catalog, tmp_path: Path) -> Database:
    """September 2025's car washes, as the module docstring tells them."""
    materials = LocalMaterialStore(tmp_path / "materials")
    materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    washes = CarWashes(
        database,
        catalog,
        Intake(database, catalog, materials),
        Correlator(database, catalog, keyring=KEYRING),
    )
    b1, items = washes.receive(at(9, 1, hour=9))
    washes.answer(items[HOUSING], at(9, 1), Accepted())
    washes.answer(items[WATER], at(9, 2), Accepted())
    washes.answer(items[HOUSING], at(9, 3), Decided(approved=True))
    washes.answer(items[WATER], at(9, 5), Decided(approved=True))
    [water_owes] = washes.rate(
        b1,
        at(9, 8),
        {
            "level": 4,
            "departments": [
                {"department": "housing", "level": 5},
                {"department": "water_resources", "level": 2, "comment": "窗口答复不清"},
            ],
        },
    )
    assert water_owes.due_at == datetime(2025, 9, 28, 23, 59, 59, 999999, tzinfo=CHINA)
    assert reply(database, water_owes.id, "已约谈窗口并答复", actor="ops", at=at(9, 26)) is (
        Replied.CLOSED
    )

    b2, items = washes.receive(at(9, 10, hour=9))
    washes.answer(items[HOUSING], at(9, 10, hour=11), Rejected(reason="不在排水许可范围内"))
    with time_machine.travel(at(9, 12, hour=9), tick=False):
        raised = DeadlineWatcher(database).run_once(at(9, 12, hour=9))
    assert [(a.item, a.kind, a.level) for a in raised] == [(WATER, "acceptance", "missed")]
    washes.answer(items[WATER], at(9, 16), Accepted())
    washes.answer(items[WATER], at(9, 17), Decided(approved=True))
    [housing_owes] = washes.rate(
        b2,
        at(9, 18),
        {
            "level": 1,
            "comment": "排水许可不予受理，未一次告知",
            "departments": [{"department": "water_resources", "level": 3}],
        },
    )
    assert (housing_owes.department, housing_owes.due_at) == (
        "housing",
        datetime(2025, 10, 15, 23, 59, 59, 999999, tzinfo=CHINA),
    )

    b3, items = washes.receive(at(9, 22, hour=9))
    washes.answer(items[HOUSING], at(9, 22), Accepted())
    with time_machine.travel(at(9, 23), tick=False):
        assert withdraw(database, b3) is Withdrawn.WITHDRAWN

    washes.receive(at(10, 9, hour=9))
    return database


# Every column, in the report's order, worked out from the module docstring:
# (rank, group, code, volume, 受理, 不予受理, 按时受理, 按时受理率, 办结, 按时办结, 按时办结率,
#  平均办理工作日, 超期, 撤回, 评价数, 非常满意, 满意, 基本满意, 不满意, 非常不满意, 满意率,
#  整改未结, 整改超期)
EXPECTED = {
    # B1 B2 B3: accepted B1 B3, rejected B2, all three answered in their day; decided
    # B1 in 2 days; B3 withdrawn; rated 非常满意 once; owes B2's open, overdue 整改.
    "housing": (1, "部门", 3, 2, 1, 3, 1.0, 1, 1, 1.0, 2.0, 0, 1, 1, 1, 0, 0, 0, 0, 1.0, 1, 1),
    # B1 on time, B2 late (超期), B3 never answered (withdrawn first, not counted);
    # decided B1 in 3, B2 in 1; rated 不满意 and 基本满意: half satisfied; its 整改 was
    # answered within its due date.
    "water_resources": (
        2,
        "部门",
        3,
        2,
        0,
        1,
        0.5,
        2,
        2,
        1.0,
        2.0,
        1,
        1,
        2,
        0,
        0,
        1,
        1,
        0,
        0.5,
        0,
        0,
    ),
    # Both departments' items; the bundles rated 满意 (B1) and 非常不满意 (B2); both 整改.
    "open_car_wash": (
        1,
        "一件事",
        6,
        4,
        1,
        4,
        0.8,
        3,
        3,
        1.0,
        2.0,
        1,
        2,
        2,
        0,
        1,
        0,
        0,
        1,
        0.5,
        1,
        1,
    ),
}
GENERATED = at(10, 20)


def expected_rows(catalog: Catalog) -> list[list[str]]:
    names = {code: d.name_zh for code, d in catalog.departments.items()}
    names |= {code: b.name_zh for code, b in catalog.bundle_types.items()}
    rows = []
    for code, (rank, group, *figures) in EXPECTED.items():
        rows.append([str(rank), group, code, names[code], *map(str, figures)])
    return rows


def value(cell: object) -> object:
    """A cell as a number where it is one (XLSX keeps 1.0 as 1), as text otherwise."""
    if cell is None or cell == "":
        return None
    try:
        return float(str(cell))
    except ValueError:
        return cell


def test_the_monthly_report_matches_the_figures_computed_by_hand(
    september: Database, catalog: Catalog
) -> None:
    made = monthly_report(september, catalog, Month.parse("2025-09"), working_calendar(), GENERATED)
    assert made.working_days == 23

    [header, *rows] = list(csv.reader(io.StringIO(made.csv())))
    assert tuple(header) == HEADERS
    assert rows == expected_rows(catalog)

    sheet = load_workbook(io.BytesIO(made.xlsx()))["通报 2025-09"]
    cells = [list(row) for row in sheet.iter_rows(values_only=True)]
    assert tuple(cells[0]) == HEADERS
    # The same rows, as numbers: a ratio is a fraction shown as a percentage.
    assert [[value(cell) for cell in row] for row in cells[1:]] == [
        [value(cell) for cell in row] for row in rows
    ]
    assert sheet.cell(row=2, column=HEADERS.index("满意率") + 1).number_format == "0.00%"


def test_an_operator_gets_the_report_from_the_cli(
    september: Database, catalog: Catalog, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("LIANBAN_DATABASE_URL", september.url)
    with time_machine.travel(GENERATED, tick=False):
        assert cli.main(["report", "--month", "2025-09", "--output", str(tmp_path / "r.xlsx")]) == 0
        assert (
            cli.main(
                [
                    "report",
                    "--month",
                    "2025-09",
                    "--format",
                    "csv",
                    "--output",
                    str(tmp_path / "r.csv"),
                ]
            )
            == 0
        )
    text = (tmp_path / "r.csv").read_bytes().decode("utf-8-sig")
    assert list(csv.reader(io.StringIO(text)))[1:] == expected_rows(catalog)
    sheet = load_workbook(tmp_path / "r.xlsx").worksheets[0]
    assert [row[2] for row in sheet.iter_rows(min_row=2, values_only=True)] == list(EXPECTED)
    assert cli.main(["report", "--month", "2025-13"]) == cli.USAGE_ERROR
