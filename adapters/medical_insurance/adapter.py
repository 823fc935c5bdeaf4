"""The 医疗保障 (medical insurance) adapter: files items as transactions of the national
medical insurance platform's JSON envelope and polls a query transaction for the decision.

Wire contract (the simulator in `simulator.py` serves the same models): every call is
`POST /fsi/api/{infno}` with the envelope (`infno`, `msgid`, `mdtrtarea_admvs`, …,
`input`) and answers `{infcode, err_msg, output}`; `infcode` 0 is success. Filing
transactions are the values of `OPERATIONS`; `QUERY_INFNO` asks where a filing stands.
不予受理 is reviewed while filing, so a filing may answer `infcode` -1 with status 3.
`SUPPLEMENT_INFNO` adds to an undecided filing: a pre-reviewed one's (status 4)
prerequisite certificates, or the materials a correction (status 5) asked for.
`CANCEL_INFNO` withdraws an undecided filing by `rcpt_no` or, while none is known, by the
`Idempotency-Key` header; it answers no output when nothing was filed under the key, and
`infcode` -1 for a filing already decided.

Materials travel before the filing or supplement that names them: `PUT /fsi/files/{sha256}`
takes a material's raw bytes as they stream from the material store (the adapter never
holds a file whole, whatever its size), and the platform keeps them only if they match
the SHA-256 in the path; `HEAD` on the same path says whether it holds them already, so
a retry sends no file twice. The filing then names each material by digest and size
(`FilingMaterial`), and the platform refuses one whose file it does not hold. An approval
names its certificate's file (`cert_file_qury_no`); `FILE_DOWNLOAD_INFNO` hands it out,
and the adapter keeps it in the material store for `Certificate.file`.
"""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from typing import Annotated, Any, ClassVar, TypeVar

from pydantic import BaseModel, BeforeValidator, Field, PlainSerializer

from adapters import (
    Accepted,
    Adapter,
    AdapterContext,
    BadAnswerError,
    Certificate,
    CorrectionRequested,
    Decided,
    FatalDepartmentError,
    FilingWithdrawn,
    ItemCancel,
    ItemDispatch,
    ItemSupplement,
    MaterialRef,
    OutcomeResult,
    PrerequisiteResult,
    Rejected,
    SupplementPurpose,
)
from contracts.application import IdType, NaturalPerson

# Catalog service → filing transaction: 25xx 参保登记, 26xx 转移接续, 27xx 待遇支取, 28xx 救助,
# 29xx 定点协议.
OPERATIONS: dict[str, str] = {
    "resident_medical_insurance_enrolment": "2501",
    "local_resident_medical_insurance_enrolment": "2504",
    "newborn_medical_insurance_enrolment_parent_insured": "2502",
    "newborn_medical_insurance_enrolment_nonlocal_parents": "2503",
    "employee_medical_insurance_enrolment": "2511",
    "unit_medical_insurance_registration": "2521",
    "basic_medical_insurance_enrolment_and_change": "2531",
    "employee_medical_insurance_retirement_transfer": "2541",
    "basic_medical_insurance_relation_transfer": "2601",
    "medical_insurance_account_lump_sum_withdrawal": "2701",
    "medical_assistance_for_needy": "2801",
    "retail_pharmacy_designated_agreement": "2901",
}
QUERY_INFNO = "5901"  # 办理结果查询
CANCEL_INFNO = "5902"  # 撤销申请
SUPPLEMENT_INFNO = "5903"  # 补充申请（前置结果、补正材料）
FILE_DOWNLOAD_INFNO = "9102"  # 文件下载
UPLOAD_PATH = "/fsi/files/{sha256}"  # a material's raw bytes, streamed, under their digest
CERTIFICATE_MEDIA_TYPE = "application/pdf"  # the 医保 platform issues its 凭证 as PDF
CHINA_TIME = timezone(timedelta(hours=8))
# psn_cert_type: 01 居民身份证（户口簿）, 99 其他; units file under their credit code.
CERT_TYPES = {IdType.RESIDENT_ID: "01", IdType.HOUSEHOLD_BOOKLET: "01"}
USCC_CERT_TYPE = "USCC"


class HandlingStatus(StrEnum):
    PENDING = "0"  # 办理中
    APPROVED = "1"  # 办结，准予
    DENIED = "2"  # 办结，不予
    REJECTED = "3"  # 不予受理
    PRE_REVIEWED = "4"  # 容缺预审通过，待前置事项结果
    CORRECTION_REQUIRED = "5"  # 需补齐补正
    CANCELLED = "9"  # 已撤销


class Envelope(BaseModel):
    infno: str = Field(pattern=r"^\d{4}$")
    msgid: str = Field(pattern=r"^\d{30}$", description="institution(12)+yyyyMMddHHmmss+seq(4)")
    mdtrtarea_admvs: str = Field(pattern=r"^\d{6}$")
    insuplc_admdvs: str = Field(pattern=r"^\d{6}$")
    recer_sys_code: str = "LIANBAN"
    infver: str = "V1.0"
    opter_type: str = "1"
    opter: str
    inf_time: str = Field(pattern=r"^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}$")
    sign_no: str = ""
    input: dict[str, Any]


def _from_base64(value: object) -> object:
    return base64.b64decode(value, validate=True) if isinstance(value, str) else value


# Bytes in Python, base64 text on the wire (and in the JSON-decoded input a server reads).
Base64Content = Annotated[
    bytes,
    BeforeValidator(_from_base64),
    PlainSerializer(
        lambda data: base64.b64encode(data).decode(), return_type=str, when_used="json"
    ),
]


class FilingMaterial(BaseModel):
    """A material a filing or supplement names; its bytes were uploaded under `sha256`."""

    name: str  # 材料名称
    filename: str
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="The uploaded file's digest")
    size: int = Field(ge=1)


class FilingInput(BaseModel):
    idempotency_key: str = Field(min_length=1)
    catalog_service: str = Field(description="Lianban catalog service; the simulator's verdicts")
    project_no: str
    psn_name: str
    psn_cert_type: str
    certno: str = Field(repr=False)  # kept out of reprs, so out of logs and errors
    form: dict[str, Any] = {}
    prerequisite_certnos: list[str] = []
    pre_review_flag: str = Field(default="0", pattern="^[01]$", description="1: 容缺预审")
    materials: list[FilingMaterial] = []


class QueryInput(BaseModel):
    rcpt_no: str


class SupplementInput(BaseModel):
    rcpt_no: str
    prerequisite_certnos: list[str] | None = None
    materials: list[FilingMaterial] | None = None


class FileQuery(BaseModel):
    file_qury_no: str = Field(min_length=1)  # 文件查询号


class CancelInput(BaseModel):
    rcpt_no: str | None = Field(
        default=None, description="None: the filing under the Idempotency-Key header"
    )


class Output(BaseModel):
    rcpt_no: str = Field(min_length=1)
    hndl_stas: HandlingStatus
    hndl_opnn: str | None = None  # 办理意见
    bzcl_list: list[str] = []  # 需补正材料
    cert_name: str | None = None
    cert_no: str | None = None
    issu_date: date | None = None
    cert_file_qury_no: str | None = None  # the certificate's file, for FILE_DOWNLOAD_INFNO


class FileOutput(BaseModel):
    file_qury_no: str
    filename: str
    content: Base64Content = Field(repr=False)


class Answer(BaseModel):
    """What every transaction answers; `infcode` 0 is success."""

    infcode: int
    err_msg: str | None = None


class Reply(Answer):
    output: Output | None = None


class FileReply(Answer):
    output: FileOutput | None = None


AnswerT = TypeVar("AnswerT", bound=Answer)
T = TypeVar("T")


class MedicalInsuranceAdapter(Adapter):
    department = "medical_insurance"
    services: ClassVar[dict[str, str]] = OPERATIONS
    timeout_seconds = 15.0
    institution_code: ClassVar[str] = "410100000001"  # msgid prefix assigned to Lianban
    home_admdvs: ClassVar[str] = "410100"  # Lianban's own area, for calls about no applicant
    operator: ClassVar[str] = "LIANBAN"
    issuer_name: ClassVar[str] = "医疗保障部门"
    poll_every_seconds: ClassVar[float] = 0.1
    decision_within_seconds: ClassVar[float] = 60.0

    def __init__(self, endpoint: str | None = None) -> None:
        super().__init__(endpoint)
        self._sequence = itertools.count()

    async def handle(self, item: ItemDispatch, ctx: AdapterContext) -> OutcomeResult:
        filing = self.filing(item, ctx.idempotency_key, await self.upload(ctx, item.materials))
        filed = await self._after_upload(
            ctx, filing.materials, lambda: self.call(ctx, item, self.services[item.service], filing)
        )
        if isinstance(filed, Rejected):
            return filed  # refused while filing: it was never accepted
        ctx.log.info("medical_insurance.filed", receipt_no=filed.rcpt_no)
        await ctx.report(Accepted(receipt_no=filed.rcpt_no))
        return await self._next_outcome(ctx, item, filed.rcpt_no)

    async def supplement(self, item: ItemSupplement, ctx: AdapterContext) -> OutcomeResult:
        if item.receipt_no is None:
            raise FatalDepartmentError("medical insurance gave no receipt to supplement")
        data = SupplementInput(
            rcpt_no=item.receipt_no,
            prerequisite_certnos=_certificate_numbers(item.prerequisite_results)
            if item.purpose is SupplementPurpose.PREREQUISITES
            else None,
            materials=await self.upload(ctx, item.materials) or None,
        )
        answer = await self._after_upload(
            ctx, data.materials, lambda: self.call(ctx, item, SUPPLEMENT_INFNO, data)
        )
        if isinstance(answer, Rejected):
            return answer
        return await self._next_outcome(ctx, item, item.receipt_no)

    async def _next_outcome(
        self, ctx: AdapterContext, item: ItemDispatch | ItemSupplement, receipt_no: str
    ) -> OutcomeResult:
        async def check() -> OutcomeResult | None:
            answer = await self.call(ctx, item, QUERY_INFNO, QueryInput(rcpt_no=receipt_no))
            if isinstance(answer, Rejected):
                return answer
            return self.outcome(answer, await self.certificate_file(ctx, item, answer))

        return await ctx.wait_for_decision(
            check,
            every_seconds=self.poll_every_seconds,
            within_seconds=self.decision_within_seconds,
        )

    async def cancel(self, item: ItemCancel, ctx: AdapterContext) -> None:
        withdrawal = CancelInput(rcpt_no=item.receipt_no)
        reply = await self.transact(ctx, item, CANCEL_INFNO, withdrawal, Reply)
        if reply.infcode != 0:
            raise FatalDepartmentError(
                f"medical insurance refused to withdraw {item.receipt_no or 'the filing'}: "
                f"{reply.err_msg}"
            )
        if reply.output is None:
            # Nothing was filed under the key: the withdrawal's goal is met.
            ctx.log.info("medical_insurance.nothing_to_withdraw")
        elif reply.output.hndl_stas is not HandlingStatus.CANCELLED:
            raise BadAnswerError(f"withdrawal answered status {reply.output.hndl_stas}")

    async def call(
        self,
        ctx: AdapterContext,
        item: ItemDispatch | ItemSupplement,
        infno: str,
        data: BaseModel,
    ) -> Output | Rejected:
        """One transaction: its output, or the 不予受理 the department answered instead."""
        reply = await self.transact(ctx, item, infno, data, Reply)
        if reply.infcode == 0 and reply.output is not None:
            return reply.output
        if reply.output is not None and reply.output.hndl_stas is HandlingStatus.REJECTED:
            return Rejected(reason=reply.err_msg or reply.output.hndl_opnn or "医保部门不予受理")
        raise BadAnswerError(
            f"transaction {infno} answered infcode {reply.infcode}: {reply.err_msg}"
        )

    async def certificate_file(
        self, ctx: AdapterContext, item: ItemDispatch | ItemSupplement, answer: Output
    ) -> MaterialRef | None:
        """The approval's certificate file, downloaded and kept in the material store;
        None when the department offers none."""
        approved = answer.hndl_stas is HandlingStatus.APPROVED
        if not (approved and answer.cert_name and answer.cert_file_qury_no):
            return None  # nothing to download (an approval without a name fails in outcome)
        query = FileQuery(file_qury_no=answer.cert_file_qury_no)

        async def download() -> FileOutput:
            reply = await self.transact(ctx, item, FILE_DOWNLOAD_INFNO, query, FileReply)
            if reply.infcode != 0 or reply.output is None:
                raise BadAnswerError(
                    f"certificate file {query.file_qury_no} answered infcode {reply.infcode}: "
                    f"{reply.err_msg}"
                )
            return reply.output

        # Retried on its own: a failed download must not query or file again.
        file = await self._retried(ctx, download)
        return await ctx.store_certificate(
            file.content, CERTIFICATE_MEDIA_TYPE, file.filename, answer.cert_name
        )

    async def upload(
        self, ctx: AdapterContext, refs: tuple[MaterialRef, ...]
    ) -> list[FilingMaterial]:
        """Have the platform hold each material's bytes; what a filing names them by."""
        for ref in refs:
            await self._send(ctx, ref)
        return [
            FilingMaterial(name=ref.name, filename=ref.file_name, sha256=ref.sha256, size=ref.size)
            for ref in refs
        ]

    async def _send(self, ctx: AdapterContext, ref: MaterialRef) -> None:
        """Stream `ref`'s bytes unless a `HEAD` says the platform holds them already.
        The upload is then retried on its own, and `If-None-Match` makes a repeat whose
        first answer was lost keep nothing twice (412)."""
        path = UPLOAD_PATH.format(sha256=ref.sha256)
        # Opened first: a material the store cannot read fails before any call.
        unsent: AsyncIterator[bytes] | None = await ctx.stream_material(ref)

        async def put() -> bool:
            nonlocal unsent
            body, unsent = unsent or await ctx.stream_material(ref), None  # read once each
            answer = await ctx.http.put(
                path,
                content=body,
                headers={
                    "Content-Type": ref.media_type,
                    "Content-Length": str(ref.size),
                    "If-None-Match": "*",
                },
            )
            if answer.status_code != 412:  # 412: held already
                answer.raise_for_status()
            return True

        held = await ctx.http.head(path)
        if held.status_code != 404:
            held.raise_for_status()
            return
        # The platform has answered this attempt: from here on a hiccup retries the one
        # request (as a poll is), not the attempt, which would ask and upload again.
        await self._retried(ctx, put)

    async def _after_upload(
        self,
        ctx: AdapterContext,
        materials: list[FilingMaterial] | None,
        call: Callable[[], Awaitable[T]],
    ) -> T:
        """`call` (a filing or supplement, idempotent by its key), retried alone when
        uploads came before it, for the reason `_send` retries its upload alone."""
        return await (self._retried(ctx, call) if materials else call())

    async def _retried(self, ctx: AdapterContext, call: Callable[[], Awaitable[T]]) -> T:
        """`call`'s answer, retried alone while it fails transiently, as a poll is."""
        return await ctx.wait_for_decision(
            call,
            every_seconds=self.poll_every_seconds,
            within_seconds=self.decision_within_seconds,
        )

    async def transact(
        self,
        ctx: AdapterContext,
        item: ItemDispatch | ItemSupplement | ItemCancel,
        infno: str,
        data: BaseModel,
        answer: type[AnswerT],
    ) -> AnswerT:
        """One transaction's answer, whatever its infcode."""
        response = await ctx.http.post(
            f"/fsi/api/{infno}",
            json=self.envelope(item, infno, data).model_dump(mode="json"),
            headers={"Idempotency-Key": ctx.idempotency_key},
        )
        response.raise_for_status()
        return answer.model_validate_json(response.content)

    def envelope(
        self, item: ItemDispatch | ItemSupplement | ItemCancel, infno: str, data: BaseModel
    ) -> Envelope:
        """The national envelope of one request, with a msgid of its own."""
        now = datetime.now(CHINA_TIME)
        # Filed where the applicant applies; a supplement or withdrawal names no area (the
        # receipt or key finds the filing), so it is sent from Lianban's own.
        area = item.area_code if isinstance(item, ItemDispatch) else self.home_admdvs
        return Envelope(
            infno=infno,
            msgid=f"{self.institution_code}{now:%Y%m%d%H%M%S}{next(self._sequence) % 10000:04d}",
            mdtrtarea_admvs=area,
            insuplc_admdvs=area,
            opter=self.operator,
            inf_time=f"{now:%Y-%m-%d %H:%M:%S}",
            input=data.model_dump(mode="json"),
        )

    def filing(
        self, item: ItemDispatch, idempotency_key: str, materials: list[FilingMaterial]
    ) -> FilingInput:
        person = item.applicant
        if isinstance(person, NaturalPerson):
            cert_type, certno = CERT_TYPES.get(person.id_type, "99"), person.id_number
        else:
            cert_type, certno = USCC_CERT_TYPE, person.uscc
        return FilingInput(
            idempotency_key=idempotency_key,
            catalog_service=item.service,
            project_no=item.project_no,
            psn_name=person.name,
            psn_cert_type=cert_type,
            certno=certno,
            form=item.form,
            prerequisite_certnos=_certificate_numbers(item.prerequisite_results),
            pre_review_flag="1" if item.pre_review else "0",
            materials=materials,
        )

    def outcome(self, answer: Output, file: MaterialRef | None = None) -> OutcomeResult | None:
        """Where the filing stands (None: undecided), with the certificate's file when one
        was kept."""
        status = answer.hndl_stas
        if status is HandlingStatus.PENDING:
            return None
        if status is HandlingStatus.PRE_REVIEWED:
            # The acceptance already reported: the filing now waits for its supplement.
            return Accepted(receipt_no=answer.rcpt_no)
        if status is HandlingStatus.CORRECTION_REQUIRED:
            return CorrectionRequested(
                reason=answer.hndl_opnn or "医保部门要求补齐补正材料",
                missing_materials=tuple(answer.bzcl_list),
            )
        if status is HandlingStatus.REJECTED:
            return Rejected(reason=answer.hndl_opnn or "医保部门不予受理")
        if status is HandlingStatus.DENIED:
            return Decided(approved=False, reason=answer.hndl_opnn or "医保部门不予批准")
        if status is HandlingStatus.CANCELLED:
            raise FilingWithdrawn(f"medical insurance filing {answer.rcpt_no} was withdrawn")
        if not (answer.cert_name and answer.cert_no and answer.issu_date):
            raise BadAnswerError(f"approval of {answer.rcpt_no} came without its certificate")
        certificate = Certificate(
            certificate_name=answer.cert_name,
            certificate_number=answer.cert_no,
            issuer_name=self.issuer_name,
            issue_date=answer.issu_date,
            file=file,
        )
        return Decided(approved=True, certificates=(certificate,))


def _certificate_numbers(results: tuple[PrerequisiteResult, ...]) -> list[str]:
    return [c.certificate_number for done in results for c in done.certificates]
