"""What every simulated REST department shares.

A department's `simulator.py` is a FastAPI app in the department's own wire format; it
calls `install_faults` so each API request first meets the state's fault mode, takes the
`Idempotency-Key` header through `require_idempotency_key`, reads a filing's state
with `filing_status`, supplements one with `supplement` and withdraws one with
`withdraw`. The API description (`/openapi.json`) is always served.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from enum import StrEnum
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Request, Response
from pydantic import BaseModel

from adapters.simulators.base import (
    BILLION_LAUGHS,
    EXTERNAL_ENTITY,
    DepartmentState,
    FaultMode,
    Filing,
)

# The API description stays readable while the department "misbehaves", and reading it
# does not count as a request (flaky modes count requests).
DOCS_PATHS = frozenset({"/openapi.json", "/docs", "/docs/oauth2-redirect", "/redoc"})

# What a broken department sends back with a 200: bytes no JSON parser accepts, and a
# JSON document cut off mid-way, as a proxy that drops the connection would leave it.
GARBAGE_BODY = b"\xff\xfe\x00<<system busy>>\x00\x8b\x08"
TRUNCATED_JSON = b'{"status": "APPROVED", "result": {"receipt_no": "'


def fault_answer(fault: FaultMode) -> Response | None:
    """The answer `fault` replaces the real one with, or None to answer normally."""
    if fault is FaultMode.DOWN:
        return Response("Service Unavailable", status_code=503, headers={"Retry-After": "1"})
    if fault is FaultMode.GARBAGE:
        return Response(GARBAGE_BODY, media_type="application/json")
    if fault is FaultMode.MALFORMED:
        return Response(TRUNCATED_JSON, media_type="application/json")
    # XML attacks sent to a JSON client: it must refuse them as unreadable, never parse.
    if fault is FaultMode.BILLION_LAUGHS:
        return Response(BILLION_LAUGHS, media_type="application/xml")
    if fault is FaultMode.EXTERNAL_ENTITY:
        return Response(EXTERNAL_ENTITY, media_type="application/xml")
    return None  # NONE; SLOW and TIMEOUT have already been delayed


def install_faults(app: FastAPI, state: DepartmentState) -> None:
    """Make every API request meet the state's fault mode before the handler runs."""

    @app.middleware("http")
    async def misbehave(
        request: Request, call_next: Callable[[Request], Awaitable[Response]]
    ) -> Response:
        if request.url.path in DOCS_PATHS:
            return await call_next(request)
        fault = state.active_fault()
        await state.delay_for(fault)
        answer = fault_answer(fault)
        return answer if answer is not None else await call_next(request)


IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        description="Stable per application and item; a repeat returns the first filing",
    ),
]


def require_idempotency_key(key: str | None) -> str:
    """The filing's idempotency key; without one the department refuses to file (400)."""
    if key is None or not key.strip():
        raise HTTPException(status_code=400, detail="Idempotency-Key header is required")
    return key


def withdraw(
    state: DepartmentState, *, receipt_no: str | None = None, key: str | None = None
) -> Filing | None:
    """Withdraw the filing with `receipt_no` (404 if unknown) or, without one, the filing
    under the Idempotency-Key header (None: nothing filed, nothing to withdraw). A decided
    filing stays decided: 409."""
    if receipt_no is not None:
        filing = state.cancel(receipt_no)
        if filing is None:
            raise HTTPException(status_code=404, detail=f"no application {receipt_no}")
    else:
        filing = state.cancel_by_key(require_idempotency_key(key))
    if filing is not None and not filing.cancelled:
        raise HTTPException(status_code=409, detail=f"{filing.receipt_no} is already decided")
    return filing


def supplement(state: DepartmentState, receipt_no: str, body: BaseModel) -> Filing:
    """Add the body's prerequisites and/or materials to the filing with `receipt_no` (404 if
    unknown; a body with neither is 422). A repeat, or one after the decision, changes
    nothing."""
    supplied = body.model_dump(mode="json", exclude_none=True)
    if not supplied:
        raise HTTPException(status_code=422, detail="give prerequisites or materials")
    filing = state.supplement(receipt_no, **supplied)
    if filing is None:
        raise HTTPException(status_code=404, detail=f"no application {receipt_no}")
    return filing


class FilingStatus(StrEnum):
    """Where a simulated filing stands; each department spells it in its own codes."""

    PENDING = "PENDING"
    PRE_REVIEWED = "PRE_REVIEWED"
    CORRECTION_REQUIRED = "CORRECTION_REQUIRED"
    APPROVED = "APPROVED"
    DENIED = "DENIED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


def filing_status(filing: Filing) -> FilingStatus:
    return FilingStatus(filing.stage().value.upper())
