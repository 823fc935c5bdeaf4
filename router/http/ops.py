"""The operators' side of `lianban serve`: `/metrics`, the ops page and the JSON it reads
(`router/operations/overview.py` computes it).

The page itself (`/ops`, static files shipped in `router/http/ops_page/`) holds no data and is
served to anyone; every figure comes from `/v1/ops/…` and `/metrics`, which need a bearer
token with the `ops` scope — replaying dead letters included. These routes are not part
of the platform's API contract, so they stay out of the OpenAPI document.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, timedelta
from pathlib import Path
from typing import Annotated, TypeVar

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Response
from fastapi.responses import HTMLResponse
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel

from contracts.api import BundleState, BundleStatus
from router.domain.workdays import working_calendar
from router.http.auth import ApiToken, Scope, require_scope
from router.http.services import AppOps
from router.operations.bundle_list import BundleFilter, BundlePage, bundle_page
from router.operations.dlq import record_replay
from router.operations.overview import (
    DeadLetterEntry,
    DeadlineEntry,
    DepartmentHealth,
    SupervisionFigures,
    bundle_by_key,
    case_numbers,
    deadline_entries,
    department_health,
    supervision_figures,
)
from router.operations.report import Month, monthly_report
from runtime import clock

log = structlog.get_logger(__name__)
T = TypeVar("T")
OPERATORS = [Depends(require_scope(Scope.OPS))]
PAGE_DIR = Path(__file__).with_name("ops_page")
_PAGE_FILES = {
    "ops.css": "text/css",
    "ops.js": "text/javascript",
    "favicon.svg": "image/svg+xml",
}


class Replay(BaseModel):
    message_ids: list[str] | None = None  # None: every message of the queue


class Replayed(BaseModel):
    replayed: int


ops_routes = APIRouter(include_in_schema=False)


@ops_routes.get("/ops", response_class=HTMLResponse)
def page() -> HTMLResponse:
    return HTMLResponse(_page_file("index.html"), headers={"Cache-Control": "no-cache"})


@ops_routes.get("/ops/static/{name}")
def page_file(name: str) -> Response:
    if name not in _PAGE_FILES:
        raise HTTPException(404)
    return Response(_page_file(name), media_type=_PAGE_FILES[name])


@ops_routes.get("/favicon.ico")
def favicon() -> Response:
    """What browsers ask every page of this server for (the API docs too): never a 404."""
    return Response(
        (PAGE_DIR / "favicon.ico").read_bytes(),
        media_type="image/x-icon",
        headers={"Cache-Control": "public, max-age=86400"},
    )


@ops_routes.get("/metrics", dependencies=OPERATORS)
def metrics(ops: AppOps) -> Response:
    return Response(generate_latest(ops.metrics), media_type=CONTENT_TYPE_LATEST)


@ops_routes.get("/v1/ops/departments", dependencies=OPERATORS)
def departments(
    ops: AppOps, window_minutes: Annotated[int, Query(ge=1, le=7 * 24 * 60)] = 60
) -> list[DepartmentHealth]:
    return department_health(ops, timedelta(minutes=window_minutes))


@ops_routes.get("/v1/ops/deadlines", dependencies=OPERATORS)
def deadlines(
    ops: AppOps, limit: Annotated[int, Query(ge=1, le=1000)] = 200
) -> list[DeadlineEntry]:
    return deadline_entries(ops.database, limit)


@ops_routes.get("/v1/ops/bundles", dependencies=OPERATORS)
def bundles(
    ops: AppOps,
    state: BundleState | None = None,
    bundle_type: str | None = None,
    department: str | None = None,
    overdue: bool | None = None,
    since: date | None = None,
    until: date | None = None,
    page: Annotated[int, Query(ge=1)] = 1,
    page_size: Annotated[int, Query(ge=1, le=200)] = 25,
) -> BundlePage:
    """Bundles by state, type, department, overdue and China date received, newest first."""
    where = BundleFilter(state, bundle_type, department, overdue, since, until)
    return bundle_page(ops.database, ops.catalog, where, page, page_size)


@ops_routes.get("/v1/ops/bundle-types", dependencies=OPERATORS)
def bundle_types(ops: AppOps) -> dict[str, str]:
    """Every bundle type of the catalog by code, with its Chinese name: the list's filter."""
    return ops.catalog.bundle_type_names()


@ops_routes.get("/v1/ops/bundles/{key}", dependencies=OPERATORS)
def find(key: str, ops: AppOps) -> BundleStatus:
    """A bundle by id or case number (办件编号), with its whole timeline."""
    found = bundle_by_key(ops, key)
    if found is None:
        raise HTTPException(404, detail=f"no bundle {key!r}")
    return found


@ops_routes.get("/v1/ops/supervision", dependencies=OPERATORS)
def supervision(since: date, until: date, ops: AppOps) -> SupervisionFigures:
    """The figures of the bundles received from `since` to `until` (China dates,
    both included)."""
    if until < since:
        raise HTTPException(422, detail="until is before since")
    return supervision_figures(ops, since, until)


REPORT_TYPES = {
    "csv": "text/csv; charset=utf-8",
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
}


@ops_routes.get("/v1/ops/report", dependencies=OPERATORS)
def report(
    ops: AppOps,
    month: Annotated[str, Query(pattern=r"^\d{4}-\d{2}$", description="YYYY-MM, China time")],
    format: Annotated[str, Query(pattern="^(csv|xlsx)$")] = "xlsx",
) -> Response:
    """The month's supervision report (通报), ranked, as a download."""
    try:
        period = Month.parse(month)
    except ValueError as error:
        raise HTTPException(422, detail=str(error)) from None
    made = monthly_report(ops.database, ops.catalog, period, working_calendar(), clock.now())
    # A BOM, so a spreadsheet opened on a Chinese desktop reads the CSV as UTF-8.
    content = made.xlsx() if format == "xlsx" else made.csv().encode("utf-8-sig")
    return Response(
        content,
        media_type=REPORT_TYPES[format],
        headers={"Content-Disposition": f'attachment; filename="lianban-report-{period}.{format}"'},
    )


@ops_routes.get("/v1/ops/dead-letters", dependencies=OPERATORS)
def dead_letters(
    ops: AppOps, queue: str | None = None, limit: Annotated[int, Query(ge=1, le=500)] = 50
) -> list[DeadLetterEntry]:
    letters = _parked(lambda: ops.dead_letters.list(queue, limit))
    numbers = case_numbers(ops.database, [letter.bundle_id for letter in letters])
    return [DeadLetterEntry.of(letter, numbers.get(letter.bundle_id)) for letter in letters]


@ops_routes.post("/v1/ops/dead-letters/{queue}/replay")
def replay(
    queue: str,
    body: Replay,
    operator: Annotated[ApiToken, Depends(require_scope(Scope.OPS))],
    ops: AppOps,
) -> Replayed:
    replayed = _parked(lambda: ops.dead_letters.replay(queue, body.message_ids))
    record_replay(ops.database, queue, body.message_ids, replayed, actor=operator.actor)
    log.warning(
        "ops.dead_letters_replayed",
        queue=queue,
        replayed=len(replayed),
        requested=len(body.message_ids) if body.message_ids is not None else "all",
        operator=operator.actor,
    )
    return Replayed(replayed=len(replayed))


def _page_file(name: str) -> str:
    return (PAGE_DIR / name).read_text(encoding="utf-8")


def _parked(call: Callable[[], T]) -> T:
    try:
        return call()
    except ValueError as error:  # not a parking lot
        raise HTTPException(404, detail=str(error)) from None
