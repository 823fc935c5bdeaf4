"""What every simulated REST department shares, and the checks every REST simulator passes.

A department's `simulator.py` is a FastAPI app in the department's own wire format; it
calls `install_faults` so each API request first meets the state's fault mode, takes the
`Idempotency-Key` header through `require_idempotency_key`, reads a filing's state
with `filing_status`, supplements one with `supplement` and withdraws one with
`withdraw`. The API description (`/openapi.json`) is always served.

`RestSimulatorChecks` holds the tests of this module, mixed into each REST department's
conformance test class so they run against that department's own simulator.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import TYPE_CHECKING, Annotated, Any, ClassVar

import httpx
from fastapi import FastAPI, Header, HTTPException, Request, Response
from pydantic import BaseModel

from adapters.resilience import RetryPolicy
from adapters.simulators.base import (
    BILLION_LAUGHS,
    EXTERNAL_ENTITY,
    DepartmentState,
    FaultMode,
    Filing,
)
from contracts.catalog import default_catalog
from contracts.messages import Decided, ItemDispatch

if TYPE_CHECKING:
    # Typed as the suite it is mixed into, without importing pytest into simulators.
    from adapters.testing.conformance import AdapterConformance as _Suite
else:
    _Suite = object

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


FILING_KEY = "bundle:item"
# Enough attempts for a second-long outage: backoffs of 0.05, 0.1, 0.2, then 0.3 s.
OUTAGE_RETRY = RetryPolicy(max_attempts=8, initial_backoff=0.05, max_backoff=0.3, budget_seconds=10)


class RestSimulatorChecks(_Suite):
    """Tests of a REST department's simulator and adapter beyond the shared suite.

    Set `api_paths` and implement `filing_call`; mix in before AdapterConformance, whose
    `server` and `state` fixtures these use.
    """

    api_paths: ClassVar[frozenset[str]]
    """Paths the simulator's OpenAPI document must describe."""

    def filing_call(self, dispatch: ItemDispatch, key: str) -> tuple[str, dict[str, Any]]:
        """The path and JSON body the adapter posts to file `dispatch` under `key`."""
        raise NotImplementedError

    def test_every_catalog_service_has_its_own_operation(self) -> None:
        operations = self.adapter_class.services
        assert isinstance(operations, Mapping)
        assert set(operations) == default_catalog().services_of(self.adapter_class.department)
        assert len(set(operations.values())) == len(operations)

    def test_the_api_describes_itself(self, server: Any) -> None:
        document = httpx.get(f"{server.url}/openapi.json").json()
        assert self.api_paths <= set(document["paths"])

    def test_a_filing_without_idempotency_key_is_refused(
        self, server: Any, state: DepartmentState
    ) -> None:
        path, body = self.filing_call(self._dispatch(), FILING_KEY)
        with httpx.Client(base_url=server.url) as client:
            missing = client.post(path, json=body)
            blank = client.post(path, json=body, headers={"Idempotency-Key": ""})
        assert (missing.status_code, blank.status_code) == (400, 400)
        assert state.filings == {}

    def test_a_repeated_filing_answers_the_first(self, server: Any, state: DepartmentState) -> None:
        path, body = self.filing_call(self._dispatch(), FILING_KEY)
        with httpx.Client(base_url=server.url) as client:
            answers = [
                client.post(path, json=body, headers={"Idempotency-Key": FILING_KEY})
                for _ in range(2)
            ]
        assert [answer.status_code // 100 for answer in answers] == [2, 2]
        assert answers[0].json() == answers[1].json()
        assert len(state.filings) == 1

    def test_a_department_down_for_a_second_is_waited_for(
        self, server: Any, state: DepartmentState
    ) -> None:
        state.set_fault(FaultMode.DOWN, seconds=1.0)
        outcome, _ = self._run(server, retry=OUTAGE_RETRY)
        assert isinstance(outcome, Decided) and outcome.approved, outcome
        assert len(state.filings) == 1
        assert state.duplicate_filings() == {}
