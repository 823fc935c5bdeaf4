"""The 人力资源社会保障 (hrss) adapter: files items with the hrss business system's REST
API and polls it for the decision.

Wire contract (the simulator in `simulator.py` serves the same models):
`POST /api/v1/applications` with an `Idempotency-Key` header files once per key;
`GET /api/v1/applications/{receipt_no}` answers the status and, once approved, the
certificate; `POST /api/v1/applications/{receipt_no}/supplements` adds a pre-reviewed
filing's prerequisites' results or corrected materials to the same filing (PRE_REVIEWED:
it waits for them; CORRECTION_REQUIRED: it asks for materials);
`POST /api/v1/applications/{receipt_no}/cancel` withdraws a pending one,
and `POST /api/v1/applications/cancel` the one under its `Idempotency-Key` header while no
receipt is known (NOT_FOUND: nothing was filed). A decided filing answers 409.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum
from typing import Any, ClassVar

from pydantic import BaseModel, Field

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
)
from contracts.application import NaturalPerson

# Catalog service → hrss business code: JY 就业, SB 社会保险, KA 社会保障卡, RC 人才,
# GS 工伤, LD 劳动关系与人力资源市场.
OPERATIONS: dict[str, str] = {
    "employer_employment_registration": "JY0101",
    "personal_employment_registration": "JY0102",
    "unemployment_registration": "JY0103",
    "labor_employment_filing": "JY0104",
    "employment_entrepreneurship_certificate_application": "JY0105",
    "graduate_reception_procedures": "JY0201",
    "floating_personnel_archive_transfer": "JY0202",
    "entrepreneurship_guaranteed_loan_application": "JY0301",
    "entrepreneurship_subsidy_application": "JY0302",
    "job_search_entrepreneurship_subsidy_application": "JY0303",
    "flexible_employment_social_insurance_subsidy": "JY0304",
    "social_insurance_registration": "SB0101",
    "enterprise_employee_social_insurance_registration": "SB0102",
    "employee_social_insurance_enrolment": "SB0103",
    "enterprise_social_insurance_deregistration": "SB0104",
    "military_civil_pension_transfer": "SB0201",
    "enterprise_retirement_with_payment_info_normal": "SB0301",
    "enterprise_retirement_with_payment_info_early": "SB0302",
    "enterprise_retirement_without_payment_info_normal": "SB0303",
    "enterprise_retirement_without_payment_info_early": "SB0304",
    "pension_account_lump_sum_claim": "SB0401",
    "survivor_benefits_claim": "SB0402",
    "unemployment_benefit_application": "SB0501",
    "resident_pension_contribution_subsidy": "SB0601",
    "social_security_card_application": "KA0101",
    "high_level_talent_recognition_employment": "RC0101",
    "high_level_talent_recognition_entrepreneurship": "RC0102",
    "high_level_talent_recognition_overseas_employment": "RC0103",
    "high_level_talent_recognition_overseas_entrepreneurship": "RC0104",
    # seed 004's 卫滨区 list
    "unemployment_benefit_account_maintenance": "SB0502",
    "unemployed_death_without_dependants": "SB0503",
    "unemployed_death_with_dependants": "SB0504",
    "resident_pension_enrolment": "SB0602",
    "enterprise_pension_record_printing": "SB0701",
    "institution_pension_record_printing": "SB0702",
    "enterprise_social_insurance_termination_death": "SB0801",
    "enterprise_pension_death_in_service": "SB0802",
    "social_security_card_activation": "KA0201",
    "social_security_card_status_query": "KA0202",
    "social_security_card_information_change": "KA0203",
    "social_security_card_password_reset": "KA0204",
    "social_security_card_loss_report": "KA0205",
    "social_security_card_loss_cancellation": "KA0206",
    "social_security_card_replacement": "KA0207",
    "social_security_card_cancellation": "KA0208",
    "work_injury_recognition": "GS0101",
    "work_injury_information_registration": "GS0102",
    "work_injury_information_change": "GS0103",
    "work_injury_disability_appraisal": "GS0201",
    "non_work_disability_appraisal": "GS0202",
    "work_injury_causality_appraisal": "GS0203",
    "work_injury_recurrence_appraisal": "GS0204",
    "work_injury_assistive_device_appraisal": "GS0205",
    "work_injury_rehabilitation_confirmation": "GS0301",
    "work_injury_rehabilitation_extension": "GS0302",
    "work_injury_medical_expense_claim": "GS0401",
    "work_injury_lump_sum_medical_subsidy": "GS0402",
    "work_injury_prevention_project": "GS0501",
    "labour_dispatch_business_license": "LD0101",
    "human_resources_service_license": "LD0102",
}
USCC_ID_TYPE = "USCC"  # hrss files enterprises under their unified social credit code


class Status(StrEnum):
    PENDING = "PENDING"
    PRE_REVIEWED = "PRE_REVIEWED"
    CORRECTION_REQUIRED = "CORRECTION_REQUIRED"
    APPROVED = "APPROVED"
    DENIED = "DENIED"
    REJECTED = "REJECTED"
    CANCELLED = "CANCELLED"


class ApplicantInfo(BaseModel):
    name: str
    id_type: str = Field(description="GA/T 证件类型 code, or USCC for an enterprise")
    id_number: str = Field(repr=False)  # kept out of reprs, so out of logs and errors


class PrerequisiteInfo(BaseModel):
    item: str
    department: str
    certificate_numbers: list[str] = []


class FilingRequest(BaseModel):
    service_code: str = Field(description="hrss business code, e.g. SB0103")
    catalog_service: str = Field(description="Lianban catalog service code, for tracing")
    project_no: str = Field(description="办件编号 of the whole application")
    applicant: ApplicantInfo
    area_code: str = Field(pattern=r"^\d{6}$")
    form: dict[str, Any] = {}
    prerequisites: list[PrerequisiteInfo] = []
    pre_review: bool = Field(
        default=False, description="容缺预审: decide only after the prerequisites are supplied"
    )


class SupplementRequest(BaseModel):
    prerequisites: list[PrerequisiteInfo] | None = None
    materials: list[MaterialRef] | None = None


class FilingReceipt(BaseModel):
    receipt_no: str = Field(min_length=1)
    status: Status


class CertificateInfo(BaseModel):
    name: str
    number: str
    issue_date: date


class DecisionAnswer(BaseModel):
    receipt_no: str
    status: Status
    reason: str | None = None
    missing_materials: list[str] = []
    certificate: CertificateInfo | None = None


class CancelStatus(StrEnum):
    CANCELLED = "CANCELLED"
    NOT_FOUND = "NOT_FOUND"  # nothing was filed under the key: nothing to withdraw


class CancelAnswer(BaseModel):
    status: CancelStatus
    receipt_no: str | None = None


class HrssAdapter(Adapter):
    department = "hrss"
    services: ClassVar[dict[str, str]] = OPERATIONS
    timeout_seconds = 15.0
    issuer_name: ClassVar[str] = "人力资源社会保障部门"
    poll_every_seconds: ClassVar[float] = 0.1
    decision_within_seconds: ClassVar[float] = 60.0

    async def handle(self, item: ItemDispatch, ctx: AdapterContext) -> OutcomeResult:
        response = await ctx.http.post(
            "/api/v1/applications",
            json=self.filing(item).model_dump(mode="json"),
            headers={"Idempotency-Key": ctx.idempotency_key},
        )
        response.raise_for_status()
        receipt = FilingReceipt.model_validate_json(response.content)
        ctx.log.info("hrss.filed", receipt_no=receipt.receipt_no)
        await ctx.report(Accepted(receipt_no=receipt.receipt_no))
        return await self._next_outcome(receipt.receipt_no, ctx)

    async def supplement(self, item: ItemSupplement, ctx: AdapterContext) -> OutcomeResult:
        if item.receipt_no is None:
            raise FatalDepartmentError("hrss gave no receipt to supplement")
        body = SupplementRequest(
            prerequisites=_prerequisites(item.prerequisite_results) or None,
            materials=list(item.materials) or None,
        )
        response = await ctx.http.post(
            f"/api/v1/applications/{item.receipt_no}/supplements",
            json=body.model_dump(mode="json", exclude_none=True),
        )
        response.raise_for_status()
        return await self._next_outcome(item.receipt_no, ctx)

    async def _next_outcome(self, receipt_no: str, ctx: AdapterContext) -> OutcomeResult:
        async def check() -> OutcomeResult | None:
            answer = await ctx.http.get(f"/api/v1/applications/{receipt_no}")
            answer.raise_for_status()
            return self.outcome(DecisionAnswer.model_validate_json(answer.content))

        return await ctx.wait_for_decision(
            check,
            every_seconds=self.poll_every_seconds,
            within_seconds=self.decision_within_seconds,
        )

    async def cancel(self, item: ItemCancel, ctx: AdapterContext) -> None:
        path = (
            f"/api/v1/applications/{item.receipt_no}/cancel"
            if item.receipt_no
            else "/api/v1/applications/cancel"
        )
        response = await ctx.http.post(path, headers={"Idempotency-Key": ctx.idempotency_key})
        if response.status_code == 409:
            raise FatalDepartmentError(
                f"hrss refused to withdraw {item.receipt_no or 'the filing'}: already decided"
            )
        response.raise_for_status()
        answer = CancelAnswer.model_validate_json(response.content)
        ctx.log.info("hrss.withdrawn", status=answer.status, receipt_no=answer.receipt_no)

    def filing(self, item: ItemDispatch) -> FilingRequest:
        person = item.applicant
        applicant = (
            ApplicantInfo(
                name=person.name, id_type=person.id_type.value, id_number=person.id_number
            )
            if isinstance(person, NaturalPerson)
            else ApplicantInfo(name=person.name, id_type=USCC_ID_TYPE, id_number=person.uscc)
        )
        return FilingRequest(
            service_code=self.services[item.service],
            catalog_service=item.service,
            project_no=item.project_no,
            applicant=applicant,
            area_code=item.area_code,
            form=item.form,
            prerequisites=_prerequisites(item.prerequisite_results),
            pre_review=item.pre_review,
        )

    def outcome(self, answer: DecisionAnswer) -> OutcomeResult | None:
        if answer.status is Status.PENDING:
            return None
        if answer.status is Status.PRE_REVIEWED:
            # The acceptance already reported: the filing now waits for its supplement.
            return Accepted(receipt_no=answer.receipt_no)
        if answer.status is Status.CORRECTION_REQUIRED:
            return CorrectionRequested(
                reason=answer.reason or "人社部门要求补齐补正材料",
                missing_materials=tuple(answer.missing_materials),
            )
        if answer.status is Status.REJECTED:
            return Rejected(reason=answer.reason or "人社部门不予受理")
        if answer.status is Status.DENIED:
            return Decided(approved=False, reason=answer.reason or "人社部门不予批准")
        if answer.status is Status.CANCELLED:
            raise FilingWithdrawn(f"hrss filing {answer.receipt_no} was withdrawn")
        if answer.certificate is None:
            raise BadAnswerError(f"hrss approved {answer.receipt_no} without a certificate")
        certificate = Certificate(
            certificate_name=answer.certificate.name,
            certificate_number=answer.certificate.number,
            issuer_name=self.issuer_name,
            issue_date=answer.certificate.issue_date,
        )
        return Decided(approved=True, certificates=(certificate,))


def _prerequisites(results: tuple[PrerequisiteResult, ...]) -> list[PrerequisiteInfo]:
    return [
        PrerequisiteInfo(
            item=done.item,
            department=done.department,
            certificate_numbers=[c.certificate_number for c in done.certificates],
        )
        for done in results
    ]
