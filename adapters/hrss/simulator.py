"""A simulated hrss business system: the REST API the hrss adapter speaks, served by
FastAPI (so it describes itself at `/openapi.json`) over a `DepartmentState`.

It files once per `Idempotency-Key`, decides by the state's verdict for the body's
`catalog_service` (the Lianban catalog code the adapter sends beside the hrss business
code), and misbehaves as the state's fault mode says (`adapters.simulators.rest`).
"""

from __future__ import annotations

from datetime import date

from fastapi import FastAPI, HTTPException, Response

from adapters.hrss.adapter import (
    OPERATIONS,
    CancelAnswer,
    CancelStatus,
    CertificateInfo,
    DecisionAnswer,
    FilingReceipt,
    FilingRequest,
    Status,
    SupplementRequest,
)
from adapters.simulators.base import CORRECTION_MATERIALS, DepartmentState, Filing
from adapters.simulators.rest import (
    IdempotencyKeyHeader,
    install_faults,
    require_idempotency_key,
    supplement,
    withdraw,
)

CERTIFICATE_NAME = "人力资源社会保障业务办结通知书"


def create_app(state: DepartmentState) -> FastAPI:
    app = FastAPI(
        title="人力资源社会保障业务经办系统（模拟）",
        version="1.0",
        description="Files applications once per Idempotency-Key and decides them later.",
    )
    install_faults(app, state)

    @app.post("/api/v1/applications", status_code=201, responses={200: {"model": FilingReceipt}})
    async def file_application(
        body: FilingRequest, response: Response, key: IdempotencyKeyHeader = None
    ) -> FilingReceipt:
        """File an application; a repeat under the same key answers the first filing (200)."""
        key = require_idempotency_key(key)
        if OPERATIONS.get(body.catalog_service) != body.service_code:
            raise HTTPException(
                status_code=422,
                detail=f"business code {body.service_code} does not handle {body.catalog_service}",
            )
        if key in state.filings:
            response.status_code = 200
        filing = state.file(
            key,
            body.catalog_service,
            body.project_no,
            body.model_dump(mode="json"),
            pre_review=body.pre_review,
        )
        return FilingReceipt(receipt_no=filing.receipt_no, status=Status.PENDING)

    @app.post("/api/v1/applications/{receipt_no}/supplements")
    async def supplement_application(receipt_no: str, body: SupplementRequest) -> DecisionAnswer:
        """Add prerequisites' results or corrected materials to an undecided application;
        a repeat (or one after the decision) changes nothing and answers where it stands."""
        return _answer(supplement(state, receipt_no, body))

    @app.get("/api/v1/applications/{receipt_no}")
    async def application_status(receipt_no: str) -> DecisionAnswer:
        """Where a filed application stands; the certificate once it is approved."""
        return _answer(_filing(state, receipt_no))

    @app.post("/api/v1/applications/{receipt_no}/cancel")
    async def cancel_application(receipt_no: str) -> CancelAnswer:
        """Withdraw an application that has not been decided yet (409 once it has)."""
        return _withdrawal(withdraw(state, receipt_no=receipt_no))

    @app.post("/api/v1/applications/cancel")
    async def cancel_by_key(key: IdempotencyKeyHeader = None) -> CancelAnswer:
        """Withdraw the application filed under the Idempotency-Key before its receipt is
        known; NOT_FOUND if nothing was filed under it (409 once decided)."""
        return _withdrawal(withdraw(state, key=key))

    return app


def _withdrawal(filing: Filing | None) -> CancelAnswer:
    if filing is None:
        return CancelAnswer(status=CancelStatus.NOT_FOUND)
    return CancelAnswer(status=CancelStatus.CANCELLED, receipt_no=filing.receipt_no)


def _filing(state: DepartmentState, receipt_no: str) -> Filing:
    filing = state.find(receipt_no)
    if filing is None:
        raise HTTPException(status_code=404, detail=f"no application {receipt_no}")
    return filing


def _answer(filing: Filing) -> DecisionAnswer:
    status = Status[filing.stage().name]  # hrss names each stage of a filing in capitals
    certificate = (
        CertificateInfo(
            name=CERTIFICATE_NAME, number=f"{filing.receipt_no}-01", issue_date=date.today()
        )
        if status is Status.APPROVED
        else None
    )
    explained = (Status.DENIED, Status.REJECTED, Status.CORRECTION_REQUIRED)
    return DecisionAnswer(
        receipt_no=filing.receipt_no,
        status=status,
        reason=filing.reason if status in explained else None,
        missing_materials=(
            list(CORRECTION_MATERIALS) if status is Status.CORRECTION_REQUIRED else []
        ),
        certificate=certificate,
    )
