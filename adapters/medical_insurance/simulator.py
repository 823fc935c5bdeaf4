"""A simulated national medical insurance platform: `POST /fsi/api/{infno}` with the
national JSON envelope, served by FastAPI (so it describes itself at `/openapi.json`)
over a `DepartmentState`.

Filing transactions (the adapter's `OPERATIONS` values) file once per `Idempotency-Key`
and decide by the state's verdict for `input.catalog_service` (the Lianban catalog code
the adapter sends beside the transaction code); `QUERY_INFNO` answers where a filing
stands; `SUPPLEMENT_INFNO` adds prerequisites' certificates or corrected materials to
one; `CANCEL_INFNO` withdraws one. `PUT /fsi/files/{sha256}` receives a material's bytes
as they stream (kept in `ReceivedFiles` only if they match the digest; `HEAD` says
whether one is held), and a filing or supplement may name only materials held with the
size it gives. An approval offers its certificate as a small PDF (`certificate_pdf`),
handed out by `FILE_DOWNLOAD_INFNO`. Business errors answer `infcode` -1 with
`err_msg`, as the platform does; the state's fault mode applies first
(`adapters.simulators.rest`).
"""

from __future__ import annotations

from datetime import date
from typing import Annotated

from fastapi import FastAPI, Header, HTTPException, Path, Request, Response
from pydantic import ValidationError

from adapters.medical_insurance.adapter import (
    CANCEL_INFNO,
    FILE_DOWNLOAD_INFNO,
    OPERATIONS,
    QUERY_INFNO,
    SUPPLEMENT_INFNO,
    UPLOAD_PATH,
    Answer,
    CancelInput,
    Envelope,
    FileOutput,
    FileQuery,
    FileReply,
    FilingInput,
    FilingMaterial,
    HandlingStatus,
    Output,
    QueryInput,
    Reply,
    SupplementInput,
)
from adapters.medical_insurance.received import ReceivedFiles
from adapters.simulators.base import CORRECTION_MATERIALS, DepartmentState, Filing, Verdict
from adapters.simulators.rest import (
    FilingStatus,
    IdempotencyKeyHeader,
    filing_status,
    install_faults,
    require_idempotency_key,
)
from contracts.samples import minimal_pdf

FILING_INFNOS = frozenset(OPERATIONS.values())
Digest = Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")]
CERTIFICATE_NAME = "医疗保障业务办结凭证"
CERTIFICATE_FILE_SUFFIX = "-ZZ"  # 证照: a certificate file's number is its receipt's + this
STATUS_CODES = {
    FilingStatus.PENDING: HandlingStatus.PENDING,
    FilingStatus.PRE_REVIEWED: HandlingStatus.PRE_REVIEWED,
    FilingStatus.CORRECTION_REQUIRED: HandlingStatus.CORRECTION_REQUIRED,
    FilingStatus.APPROVED: HandlingStatus.APPROVED,
    FilingStatus.DENIED: HandlingStatus.DENIED,
    FilingStatus.REJECTED: HandlingStatus.REJECTED,
    FilingStatus.CANCELLED: HandlingStatus.CANCELLED,
}


def create_app(state: DepartmentState, files: ReceivedFiles | None = None) -> FastAPI:
    received = files or ReceivedFiles()
    app = FastAPI(
        title="医疗保障信息平台经办接口（模拟）",
        version="V1.0",
        description="National envelope transactions: filings "
        f"({', '.join(sorted(FILING_INFNOS))}), the result query ({QUERY_INFNO}), "
        f"supplements ({SUPPLEMENT_INFNO}), withdrawal ({CANCEL_INFNO}) and certificate "
        f"file download ({FILE_DOWNLOAD_INFNO}); materials are uploaded first, streamed, "
        f"to {UPLOAD_PATH}.",
    )
    install_faults(app, state)

    @app.post("/fsi/api/{infno}")
    async def transact(
        infno: Annotated[str, Path(pattern=r"^\d{4}$")],
        envelope: Envelope,
        key: IdempotencyKeyHeader = None,
    ) -> Reply | FileReply:
        """Run transaction `infno`; filings need the Idempotency-Key header (400 without)."""
        if envelope.infno != infno:
            return _error(f"报文交易编号 {envelope.infno} 与地址 {infno} 不一致")
        if infno in FILING_INFNOS:
            return _file(state, received, infno, envelope, require_idempotency_key(key))
        if infno == QUERY_INFNO:
            return _query(state, envelope)
        if infno == SUPPLEMENT_INFNO:
            return _supplement(state, received, envelope)
        if infno == CANCEL_INFNO:
            return _cancel(state, envelope, key)
        if infno == FILE_DOWNLOAD_INFNO:
            return _download(state, envelope)
        return _error(f"交易编号 {infno} 不存在")

    @app.head(UPLOAD_PATH)
    async def held(sha256: Digest) -> Response:
        """200 with the file's size when a material is held under `sha256`, else 404."""
        size = received.size(sha256)
        if size is None:
            return Response(status_code=404)
        return Response(headers={"Content-Length": str(size)})

    @app.put(UPLOAD_PATH, status_code=201)
    async def upload(
        sha256: Digest,
        request: Request,
        if_none_match: Annotated[str | None, Header(alias="If-None-Match")] = None,
    ) -> Answer:
        """Receive a material's raw bytes, kept only if they match `sha256` (422 if not);
        with `If-None-Match: *`, 412 without reading them when they are held already."""
        if if_none_match == "*" and received.size(sha256) is not None:
            raise HTTPException(status_code=412, detail="文件已上传")
        if not await received.receive(sha256, request.stream()):
            raise HTTPException(status_code=422, detail="文件内容与其校验值不符")
        return Answer(infcode=0)

    return app


def _file(
    state: DepartmentState, received: ReceivedFiles, infno: str, envelope: Envelope, key: str
) -> Reply:
    try:
        data = FilingInput.model_validate(envelope.input)
    except ValidationError as error:
        return _error(f"入参校验失败（{error.error_count()} 处）")
    if data.idempotency_key != key:
        return _error("input.idempotency_key 与 Idempotency-Key 不一致")
    if OPERATIONS.get(data.catalog_service) != infno:
        return _error(f"交易 {infno} 不办理 {data.catalog_service}")
    if problem := _unreceived(received, data.materials):
        return _error(problem)
    filing = state.file(
        key,
        data.catalog_service,
        data.project_no,
        data.model_dump(mode="json"),
        pre_review=data.pre_review_flag == "1",
    )
    return _reply(filing)


def _supplement(state: DepartmentState, received: ReceivedFiles, envelope: Envelope) -> Reply:
    try:
        data = SupplementInput.model_validate(envelope.input)
    except ValidationError as error:
        return _error(f"入参校验失败（{error.error_count()} 处）")
    supplied = data.model_dump(mode="json", exclude_none=True, exclude={"rcpt_no"})
    if not supplied:
        return _error("未提供前置事项结果或补正材料")
    if problem := _unreceived(received, data.materials or []):
        return _error(problem)
    # A repeat (or one after the decision) changes nothing and answers where it stands.
    filing = state.supplement(
        data.rcpt_no,
        prerequisites=supplied.get("prerequisite_certnos"),
        materials=supplied.get("materials"),
    )
    return _error(f"受理编号 {data.rcpt_no} 不存在") if filing is None else _reply(filing)


def _unreceived(received: ReceivedFiles, materials: list[FilingMaterial]) -> str | None:
    """Why the materials cannot be accepted (a file not uploaded, or not of the size
    named), or None."""
    for material in materials:
        if received.size(material.sha256) != material.size:
            return f"材料“{material.name}”未上传或与其校验值不符"
    return None


def _download(state: DepartmentState, envelope: Envelope) -> FileReply:
    try:
        data = FileQuery.model_validate(envelope.input)
    except ValidationError as error:
        return FileReply(infcode=-1, err_msg=f"入参校验失败（{error.error_count()} 处）")
    number = data.file_qury_no
    filing = state.find(number.removesuffix(CERTIFICATE_FILE_SUFFIX))
    if (
        filing is None
        or _certificate_file_no(filing) != number
        or filing_status(filing) is not FilingStatus.APPROVED
    ):
        return FileReply(infcode=-1, err_msg=f"文件 {number} 不存在")
    return FileReply(
        infcode=0,
        output=FileOutput(
            file_qury_no=number,
            filename=f"{_certificate_no(filing)}.pdf",
            content=certificate_pdf(filing),
        ),
    )


def certificate_pdf(filing: Filing) -> bytes:
    """The certificate file an approved filing is issued: a small PDF that names it."""
    return minimal_pdf(f"{CERTIFICATE_NAME} {_certificate_no(filing)} {filing.receipt_no}")


def _certificate_no(filing: Filing) -> str:
    return f"YB{filing.receipt_no.rsplit('-', 1)[-1]}"


def _certificate_file_no(filing: Filing) -> str:
    return f"{filing.receipt_no}{CERTIFICATE_FILE_SUFFIX}"


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


EXPLAINED = (HandlingStatus.DENIED, HandlingStatus.REJECTED, HandlingStatus.CORRECTION_REQUIRED)


def _reply(filing: Filing) -> Reply:
    # Acceptance is reviewed while filing, so 不予受理 is known at once, not after the delay.
    rejected = filing.verdict is Verdict.REJECT and not filing.cancelled
    status = HandlingStatus.REJECTED if rejected else STATUS_CODES[filing_status(filing)]
    approved = status is HandlingStatus.APPROVED
    output = Output(
        rcpt_no=filing.receipt_no,
        hndl_stas=status,
        hndl_opnn=filing.reason if status in EXPLAINED else None,
        bzcl_list=list(CORRECTION_MATERIALS)
        if status is HandlingStatus.CORRECTION_REQUIRED
        else [],
        cert_name=CERTIFICATE_NAME if approved else None,
        cert_no=_certificate_no(filing) if approved else None,
        issu_date=date.today() if approved else None,
        cert_file_qury_no=_certificate_file_no(filing) if approved else None,
    )
    if rejected:
        return Reply(infcode=-1, err_msg=filing.reason, output=output)
    return Reply(infcode=0, output=output)


def _error(message: str) -> Reply:
    return Reply(infcode=-1, err_msg=message)
