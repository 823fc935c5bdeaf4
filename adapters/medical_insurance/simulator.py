"""A simulated national medical insurance platform: `POST /fsi/api/{infno}` with the
national JSON envelope, served by FastAPI (so it describes itself at `/openapi.json`)
over a `DepartmentState`.

Filing transactions (the adapter's `OPERATIONS` values) file once per `Idempotency-Key`
and decide by the state's verdict for `input.catalog_service` (the Lianban catalog code
the adapter sends beside the transaction code); `QUERY_INFNO` answers where a filing
stands; `CANCEL_INFNO` withdraws one. Business errors answer `infcode` -1 with
`err_msg`, as the platform does; the state's fault mode applies first
(`adapters.testing.rest`).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import FastAPI, Path
from pydantic import ValidationError

from adapters.medical_insurance.adapter import (
    CANCEL_INFNO,
    OPERATIONS,
    QUERY_INFNO,
    CancelInput,
    Envelope,
    FilingInput,
    HandlingStatus,
    Output,
    QueryInput,
    Reply,
)
from adapters.testing.rest import (
    FilingStatus,
    IdempotencyKeyHeader,
    filing_status,
    install_faults,
    require_idempotency_key,
)
from adapters.testing.simulator import DepartmentState, Filing, Verdict

FILING_INFNOS = frozenset(OPERATIONS.values())
CERTIFICATE_NAME = "医疗保障业务办结凭证"
STATUS_CODES = {
    FilingStatus.PENDING: HandlingStatus.PENDING,
    FilingStatus.APPROVED: HandlingStatus.APPROVED,
    FilingStatus.DENIED: HandlingStatus.DENIED,
    FilingStatus.REJECTED: HandlingStatus.REJECTED,
    FilingStatus.CANCELLED: HandlingStatus.CANCELLED,
}


def create_app(state: DepartmentState) -> FastAPI:
    app = FastAPI(
        title="医疗保障信息平台经办接口（模拟）",
        version="V1.0",
        description="National envelope transactions: filings "
        f"({', '.join(sorted(FILING_INFNOS))}), the result query ({QUERY_INFNO}) and "
        f"withdrawal ({CANCEL_INFNO}).",
    )
    install_faults(app, state)

    @app.post("/fsi/api/{infno}")
    async def transact(
        infno: Annotated[str, Path(pattern=r"^\d{4}$")],
        envelope: Envelope,
        key: IdempotencyKeyHeader = None,
    ) -> Reply:
        """Run transaction `infno`; filings need the Idempotency-Key header (400 without)."""
        if envelope.infno != infno:
            return _error(f"报文交易编号 {envelope.infno} 与地址 {infno} 不一致")
        if infno in FILING_INFNOS:
            return _file(state, infno, envelope, require_idempotency_key(key))
        if infno == QUERY_INFNO:
            return _query(state, envelope)
        if infno == CANCEL_INFNO:
            return _cancel(state, envelope, key)
        return _error(f"交易编号 {infno} 不存在")

    return app


def _file(state: DepartmentState, infno: str, envelope: Envelope, key: str) -> Reply:
    try:
        data = FilingInput.model_validate(envelope.input)
    except ValidationError as error:
        return _error(f"入参校验失败（{error.error_count()} 处）")
    if data.idempotency_key != key:
        return _error("input.idempotency_key 与 Idempotency-Key 不一致")
    if OPERATIONS.get(data.catalog_service) != infno:
        return _error(f"交易 {infno} 不办理 {data.catalog_service}")
    filing = state.file(key, data.catalog_service, data.project_no, data.model_dump(mode="json"))
    return _reply(filing)


def _query(state: DepartmentState, envelope: Envelope) -> Reply:
    try:
        data = QueryInput.model_validate(envelope.input)
    except ValidationError as error:
        return _error(f"入参校验失败（{error.error_count()} 处）")
    filing = state.find(data.rcpt_no)
    return _error(f"受理编号 {data.rcpt_no} 不存在") if filing is None else _reply(filing)


def _cancel(state: DepartmentState, envelope: Envelope, key: str | None) -> Reply:
    try:
        data = CancelInput.model_validate(envelope.input)
    except ValidationError as error:
        return _error(f"入参校验失败（{error.error_count()} 处）")
    if data.rcpt_no is None:
        filing = state.cancel_by_key(require_idempotency_key(key))
        if filing is None:
            return Reply(infcode=0)  # nothing filed under the key: nothing to withdraw
    else:
        filing = state.cancel(data.rcpt_no)
        if filing is None:
            return _error(f"受理编号 {data.rcpt_no} 不存在")
    if not filing.cancelled:
        return _error(f"受理编号 {filing.receipt_no} 已办结，不能撤销")
    return _reply(filing)


def _reply(filing: Filing) -> Reply:
    # Acceptance is reviewed while filing, so 不予受理 is known at once, not after the delay.
    rejected = filing.verdict is Verdict.REJECT and not filing.cancelled
    status = HandlingStatus.REJECTED if rejected else STATUS_CODES[filing_status(filing)]
    approved = status is HandlingStatus.APPROVED
    output = Output(
        rcpt_no=filing.receipt_no,
        hndl_stas=status,
        hndl_opnn=filing.reason
        if status in (HandlingStatus.DENIED, HandlingStatus.REJECTED)
        else None,
        cert_name=CERTIFICATE_NAME if approved else None,
        cert_no=f"YB{filing.receipt_no.rsplit('-', 1)[-1]}" if approved else None,
        issu_date=date.today() if approved else None,
    )
    if rejected:
        return Reply(infcode=-1, err_msg=filing.reason, output=output)
    return Reply(infcode=0, output=output)


def _error(message: str) -> Reply:
    return Reply(infcode=-1, err_msg=message)
