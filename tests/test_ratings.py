"""好差评 through the running stack, embedded and connected, in simulated time (time-machine,
frozen between moves, never sleeps): the platform rates a replied bundle once; a 差评
opens a rectification (整改) for its department, due 15 working days later, which the
deadline watcher raises 预警 and 超期 once, and which the department's staff close with
their reply to the applicant. A rating too early, twice, or of a bundle that does not
exist is a problem with its own code. A rectification due in a year without its holiday
notice is recomputed when the notice arrives, like every other deadline.

November 2026 has no holiday: opened Monday 2 November, due by the end of Monday 23rd.
"""

from __future__ import annotations

import csv
import hashlib
import io
import uuid
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest
import time_machine
from harness import Running, new_project_no, running_stack
from openpyxl import load_workbook
from sqlalchemy import select

from adapters.simulated import Rule, Scenario
from contracts.api import AlertLevel, DeadlineKind, Rating
from contracts.catalog import Catalog
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.settings import Settings
from router.domain import ratings
from router.domain.calendar_watcher import CalendarWatcher
from router.domain.deadlines import DeadlineWatcher
from router.domain.intake import Intake, Received
from router.domain.rectifications import rectifications
from router.domain.withdrawal import Withdrawn, withdraw
from router.domain.workdays import on_change, working_calendar
from router.http.auth import manual_scope, mint
from router.operations.report import HEADERS
from router.store import Database, EventRow
from runtime.storage import LocalMaterialStore

CHINA = timezone(timedelta(hours=8))
# The car wash (housing + water resources) is answered at once; the barbershop's fire
# inspection stays pending, so that bundle is never replied.
SCENARIO = Scenario(rules={"fire_safety_inspection": Rule(pending_working_days=30)})
STAFF_TOKEN, STAFF = mint("水利局 王五", [manual_scope("water_resources")])
BAD_RATING = {
    "level": 4,
    "reasons": ["办事效率"],
    "departments": [
        {"department": "housing", "level": 5},
        {
            "department": "water_resources",
            "level": 1,
            "reasons": ["服务态度"],
            "comment": "取水许可窗口多次要求重复提交材料",
        },
    ],
}


def china(month: int, day: int, hour: int = 10, year: int = 2026) -> datetime:
    return datetime(year, month, day, hour, tzinfo=CHINA)


@pytest.fixture
def stack(settings: Settings, catalog: Catalog) -> Iterator[tuple[Running, Any]]:
    """The stack from Monday 2 November 2026, 10:00 in China, with a department's staff
    token besides the platform's."""
    settings = settings.model_copy(update={"api_tokens": (*settings.api_tokens, STAFF)})
    with (
        time_machine.travel(china(11, 2), tick=False) as traveller,
        running_stack(settings, catalog, SCENARIO) as running,
    ):
        yield running, traveller


def replied_bundle(running: Running, catalog: Catalog, bundle_type: str) -> dict[str, Any]:
    receipt = running.submit(
        sample_application(catalog.bundle_types[bundle_type], new_project_no())
    )
    assert receipt.status_code == 202, receipt.text
    return receipt.json() | {"reply": running.wait_for_reply(receipt.json()["reply_url"])}


def rating_url(bundle_id: str | uuid.UUID) -> str:
    return f"/v1/bundles/{bundle_id}/rating"


def test_a_bad_rating_opens_a_rectification_raised_overdue_and_closed_by_the_department(
    stack: tuple[Running, Any], catalog: Catalog
) -> None:
    running, traveller = stack
    bundle = replied_bundle(running, catalog, "open_car_wash")
    assert bundle["reply"]["outcome"] == "all_approved"

    rated = running.client.post(rating_url(bundle["bundle_id"]), json=BAD_RATING)
    assert rated.status_code == 201, rated.text
    record = rated.json()
    assert (record["level"], record["level_zh"]) == (4, "满意")
    assert [d["department"] for d in record["departments"]] == ["housing", "water_resources"]
    # Only the department rated 非常不满意 owes a rectification; 15 working days from
    # Monday 2 November (the day it opens not counted) end on Monday 23 November.
    [owed] = record["rectifications"]
    assert (owed["department"], owed["level"], owed["state"]) == ("water_resources", 1, "open")
    assert datetime.fromisoformat(owed["due_at"]) == datetime(
        2026, 11, 23, 23, 59, 59, 999999, tzinfo=CHINA
    )
    assert owed["comment"] == "取水许可窗口多次要求重复提交材料" and owed["overdue"] is False

    # One rating per bundle: a second post is refused and changes nothing.
    again = running.client.post(rating_url(bundle["bundle_id"]), json={"level": 5})
    assert (again.status_code, again.json()["code"]) == (409, "already_rated")
    assert running.client.get(rating_url(bundle["bundle_id"])).json() == record

    bundle_id = uuid.UUID(bundle["bundle_id"])
    database = running.stack.database

    def watch(when: datetime) -> list[tuple[DeadlineKind, AlertLevel]]:
        traveller.move_to(when)
        first = DeadlineWatcher(database).run_once(when)
        assert DeadlineWatcher(database).run_once(when) == []  # raised once, by one watcher
        return [(a.kind, a.level) for a in first if a.bundle_id == bundle_id]

    assert watch(china(11, 19)) == []  # two working days left
    rectification = DeadlineKind.RECTIFICATION
    assert watch(china(11, 20)) == [(rectification, AlertLevel.WARNING)]  # 预警: one left
    assert watch(china(11, 23, hour=20)) == []  # due day, warned already
    assert watch(china(11, 24, hour=9)) == [(rectification, AlertLevel.MISSED)]  # 超期

    [late] = running.client.get("/v1/ops/rectifications").json()
    assert (late["id"], late["state"], late["overdue"]) == (owed["id"], "open", True)

    staff = {"Authorization": f"Bearer {STAFF_TOKEN.get_secret_value()}"}
    reply = {"reply": "已核实：窗口人员未执行一次告知，已批评教育并整改流程。"}
    other = running.client.post(
        f"/v1/manual/housing/rectifications/{owed['id']}/reply", json=reply, headers=staff
    )
    assert other.status_code == 403  # another department's staff scope
    closed = running.client.post(
        f"/v1/manual/water_resources/rectifications/{owed['id']}/reply", json=reply, headers=staff
    )
    assert closed.status_code == 200, closed.text
    assert (closed.json()["state"], closed.json()["reply"]) == ("closed", reply["reply"])
    assert closed.json()["overdue"] is True  # replied after its due date
    twice = running.client.post(f"/v1/ops/rectifications/{owed['id']}/reply", json=reply)
    assert (twice.status_code, twice.json()["code"]) == (409, "rectification_closed")

    assert running.client.get("/v1/ops/rectifications").json() == []
    assert watch(china(11, 25)) == []  # closed: watched no more
    platform_view = running.client.get(rating_url(bundle_id)).json()
    assert platform_view["rectifications"][0]["reply"] == reply["reply"]
    timeline = running.client.get(f"/v1/bundles/{bundle_id}/timeline").json()
    steps = [(s["state"], s["actor"]) for s in timeline if s["item"] is None]
    water = "department:water_resources"
    assert steps[-5:] == [
        ("rated", "platform"),
        ("rectification_opened", water),
        ("deadline_warning", water),
        ("overdue", water),
        ("rectification_closed", water),
    ]


def test_a_bad_rating_of_the_bundle_is_owed_by_its_lead_department(
    stack: tuple[Running, Any], catalog: Catalog
) -> None:
    running, _ = stack
    bundle = replied_bundle(running, catalog, "open_car_wash")
    rating = {"level": 2, "comment": "两个部门的结果前后不一致", "departments": []}
    record = running.client.post(rating_url(bundle["bundle_id"]), json=rating).json()
    lead = catalog.bundle_types["open_car_wash"].lead_department
    assert [(r["department"], r["level"]) for r in record["rectifications"]] == [(lead, 2)]


def test_a_rating_too_early_unknown_or_malformed_is_a_clear_problem(
    stack: tuple[Running, Any], catalog: Catalog
) -> None:
    running, _ = stack
    client: httpx.Client = running.client
    pending = running.submit(
        sample_application(catalog.bundle_types["open_barbershop"], new_project_no())
    ).json()

    early = client.post(rating_url(pending["bundle_id"]), json={"level": 5})
    assert (early.status_code, early.json()["code"]) == (409, "not_yet_replied")
    assert early.json()["title"] == "办件尚未办结答复，暂不能评价"
    unknown = client.post(rating_url(uuid.uuid4()), json={"level": 5})
    assert (unknown.status_code, unknown.json()["code"]) == (404, "bundle_not_found")
    assert client.get(rating_url(pending["bundle_id"])).json()["code"] == "rating_not_found"

    replied = replied_bundle(running, catalog, "open_car_wash")
    without_reason = client.post(rating_url(replied["bundle_id"]), json={"level": 1})
    assert (without_reason.status_code, without_reason.json()["code"]) == (422, "invalid_request")
    assert "差评" in without_reason.json()["detail"]
    out_of_range = client.post(rating_url(replied["bundle_id"]), json={"level": 6})
    assert out_of_range.status_code == 422
    stranger = client.post(
        rating_url(replied["bundle_id"]),
        json={"level": 5, "departments": [{"department": "police", "level": 5}]},
    )
    assert (stranger.status_code, stranger.json()["code"]) == (422, "department_not_in_bundle")
    twice = {"department": "housing", "level": 5}
    doubled = client.post(
        rating_url(replied["bundle_id"]), json={"level": 5, "departments": [twice, twice]}
    )
    assert (doubled.status_code, doubled.json()["code"]) == (422, "invalid_request")
    # None of these stored anything: the bundle can still be rated, once.
    assert client.post(rating_url(replied["bundle_id"]), json={"level": 5}).status_code == 201


def test_operators_download_the_month_report_as_csv_and_xlsx(
    stack: tuple[Running, Any], catalog: Catalog
) -> None:
    running, _ = stack
    replied_bundle(running, catalog, "open_car_wash")
    as_csv = running.client.get("/v1/ops/report", params={"month": "2026-11", "format": "csv"})
    assert as_csv.status_code == 200, as_csv.text
    assert as_csv.headers["content-type"] == "text/csv; charset=utf-8"
    assert 'filename="lianban-report-2026-11.csv"' in as_csv.headers["content-disposition"]
    [header, *rows] = list(csv.reader(io.StringIO(as_csv.content.decode("utf-8-sig"))))
    assert tuple(header) == HEADERS
    assert ["一件事", "open_car_wash"] in [row[1:3] for row in rows]

    as_xlsx = running.client.get("/v1/ops/report", params={"month": "2026-11"})
    sheet = load_workbook(io.BytesIO(as_xlsx.content))["通报 2026-11"]
    assert [row[1:3] for row in sheet.iter_rows(min_row=2, values_only=True)] == [
        tuple(row[1:3]) for row in rows
    ]

    staff = {"Authorization": f"Bearer {STAFF_TOKEN.get_secret_value()}"}
    refused = running.client.get("/v1/ops/report", params={"month": "2026-11"}, headers=staff)
    assert refused.status_code == 403
    bad = running.client.get("/v1/ops/report", params={"month": "2026-13"})
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_request")


def test_a_rectification_into_an_unofficial_year_moves_when_the_year_becomes_official(
    database: Database, catalog: Catalog, tmp_path: Path, year_dir: Path
) -> None:
    materials = LocalMaterialStore(tmp_path / "materials")
    materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    project_no = new_project_no()
    application = sample_application(catalog.bundle_types["open_car_wash"], project_no)
    with time_machine.travel(china(12, 21), tick=False):
        received = Intake(database, catalog, materials).submit(application, project_no)
        assert isinstance(received, Received)
        bundle_id = received.receipt.bundle_id
        assert withdraw(database, bundle_id) is Withdrawn.WITHDRAWN  # replied at once
        rated = ratings.rate(
            database,
            catalog,
            bundle_id,
            Rating(level=1, comment="撤回后仍收到补正短信"),
            actor="platform",
            at=china(12, 21, hour=12),
            calendar=working_calendar(),
            rectification_days=15,
        )
    assert isinstance(rated, ratings.Rated)
    [owed] = rated.record.rectifications
    # 22 Dec – 12 Jan: 2027 has no notice here, so 1 January alone is off (statutory).
    assert owed.due_at == datetime(2027, 1, 12, 23, 59, 59, 999999, tzinfo=CHINA)

    # The notice arrives: 1–4 January off. The open rectification is due a day later.
    (year_dir / "2027.yaml").write_text(
        "year: 2027\nsource: test\nholidays:\n  - {name: 元旦, from: 2027-01-01, to: 2027-01-04}\n",
        encoding="utf-8",
    )
    undo = on_change(DeadlineWatcher(database).calendar_changed)
    try:
        with time_machine.travel(china(12, 22), tick=False):
            assert 2027 in CalendarWatcher().check_once()
    finally:
        undo()
    with database.transaction() as session:
        [moved] = rectifications(session, china(12, 22), bundle_id=bundle_id)
        steps = [
            row.detail
            for row in session.scalars(
                select(EventRow).where(
                    EventRow.bundle_id == bundle_id, EventRow.state == "deadline_moved"
                )
            )
        ]
    assert moved.due_at == datetime(2027, 1, 13, 23, 59, 59, 999999, tzinfo=CHINA)
    assert steps == [
        "rectification · housing · due 2027-01-13T23:59:59.999999+08:00, from "
        "2027-01-12T23:59:59.999999+08:00"
    ]
