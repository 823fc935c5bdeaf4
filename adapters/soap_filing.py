"""The SOAP filing pattern many department systems share: SubmitApplication (filed once
per IdempotencyKey) → receipt → QueryDecision, polled for a few seconds, then answered
`Pending` so the router polls it on its schedule (`poll`); SupplementApplication
adds a pre-reviewed filing's prerequisites' results or corrected materials to the same
filing; CancelApplication withdraws an undecided filing by its receipt or, before one is
known, by its key.

A department adapter over such a service names its WSDL, binding, operation codes and
issuer, and inherits `handle`, `supplement`, `poll` and `cancel`. The operations are
those of `police.wsdl`.
"""

from __future__ import annotations

import json
from collections.abc import Awaitable
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel

from adapters.base import Adapter
from adapters.context import AdapterContext
from adapters.decisions import Polled
from adapters.errors import classify
from contracts.application import LegalEntity, NaturalPerson
from contracts.errors import Action, BadAnswerError, FatalDepartmentError, FilingWithdrawn
from contracts.messages import (
    Accepted,
    Certificate,
    CorrectionRequested,
    Decided,
    ItemCancel,
    ItemDispatch,
    ItemPoll,
    ItemSupplement,
    OutcomeResult,
    Pending,
    Rejected,
)

PENDING = "PENDING"  # the department's own status of a filing it has not decided
CREDIT_CODE_ID_TYPE = "001"  # 统一社会信用代码: how legal entities are identified


class SoapFilingAdapter(Adapter):
    """Set `wsdl`, `binding`, `services` (catalog service → ServiceCode) and `issuer_name`."""

    wsdl: ClassVar[Path]
    binding: ClassVar[str]
    services: ClassVar[dict[str, str]]
    issuer_name: ClassVar[str]
    timeout_seconds = 15.0
    poll_every_seconds: ClassVar[float] = 0.1
    decide_within_seconds: ClassVar[float] = 10.0
    """How long a call waits for a quick decision before answering Pending."""
    decisions = Polled()

    async def handle(self, item: ItemDispatch, ctx: AdapterContext) -> OutcomeResult:
        service = ctx.soap(self.wsdl, binding=self.binding)
        id_type, id_number = _identity(item.applicant)
        filed = await _answer(
            service.SubmitApplication(
                IdempotencyKey=ctx.idempotency_key,
                ServiceCode=self.services[item.service],
                ProjectNo=item.project_no,
                ApplicantName=item.applicant.name,
                ApplicantIdType=id_type,
                ApplicantIdNumber=id_number,
                AreaCode=item.area_code,
                FormJson=json.dumps(item.form, ensure_ascii=False),
                PrerequisitesJson=json.dumps(
                    [done.model_dump(mode="json") for done in item.prerequisite_results],
                    ensure_ascii=False,
                ),
                PreReview=item.pre_review,
            )
        )
        receipt_no = _field(filed, "ReceiptNo")
        await ctx.report(Accepted(receipt_no=receipt_no))
        return await self._next_outcome(service, receipt_no, ctx)

    async def supplement(self, item: ItemSupplement, ctx: AdapterContext) -> OutcomeResult:
        if item.receipt_no is None:
            raise FatalDepartmentError(f"{self.department} gave no receipt to supplement")
        service = ctx.soap(self.wsdl, binding=self.binding)
        await _answer(
            service.SupplementApplication(
                ReceiptNo=item.receipt_no,
                PrerequisitesJson=_json_or_none(item.prerequisite_results),
                MaterialsJson=_json_or_none(item.materials),
            )
        )
        return await self._next_outcome(service, item.receipt_no, ctx)

    async def _next_outcome(
        self, service: Any, receipt_no: str, ctx: AdapterContext
    ) -> OutcomeResult:
        """Poll until the department has news: a decision, a correction request, or (for
        a pre-review) that it waits for the prerequisites' results."""

        async def news() -> OutcomeResult | None:
            answer = await _answer(service.QueryDecision(ReceiptNo=receipt_no))
            return self._outcome(receipt_no, answer)

        return await ctx.wait_for_decision(
            news,
            every_seconds=self.poll_every_seconds,
            within_seconds=self.decide_within_seconds,
            still_pending=lambda: Pending(department_status=PENDING, filing_ref=receipt_no),
        )

    async def poll(self, item: ItemPoll, ctx: AdapterContext) -> OutcomeResult:
        receipt_no = item.filing_ref or item.receipt_no
        if receipt_no is None:
            raise FatalDepartmentError(f"{self.department} gave no receipt to poll")
        service = ctx.soap(self.wsdl, binding=self.binding)
        answer = await _answer(service.QueryDecision(ReceiptNo=receipt_no))
        return self._outcome(receipt_no, answer) or Pending(
            department_status=PENDING, filing_ref=receipt_no
        )

    async def cancel(self, item: ItemCancel, ctx: AdapterContext) -> None:
        service = ctx.soap(self.wsdl, binding=self.binding)
        which = (
            {"ReceiptNo": item.receipt_no}
            if item.receipt_no
            else {"IdempotencyKey": ctx.idempotency_key}
        )
        from zeep.exceptions import Fault  # loaded by ctx.soap already: see _answer

        try:
            # The answer's only element is Status, which zeep returns unwrapped.
            status = await _answer(service.CancelApplication(**which))
        except Fault as error:
            if classify(error) is Action.RETRY:
                raise  # soap:Server: the department failed, it did not refuse
            raise FatalDepartmentError(
                f"{self.department} refused to withdraw {item.receipt_no or 'the filing'}: "
                f"{error.message}"
            ) from error
        if status == "NOT_FOUND":
            # Nothing was filed under the key: the withdrawal's goal is met.
            ctx.log.info("department.nothing_to_withdraw")
        elif status != "CANCELLED":
            raise BadAnswerError(f"unknown cancel status {status!r}")

    def _outcome(self, receipt_no: str, answer: Any) -> OutcomeResult | None:
        status = _field(answer, "Status")
        if status == "PENDING":
            return None
        if status == "PRE_REVIEWED":
            # The acceptance already reported: the filing now waits for its supplement.
            return Accepted(receipt_no=receipt_no)
        if status == "CORRECTION_REQUIRED":
            try:
                missing = json.loads(answer.MissingMaterialsJson or "[]")
            except json.JSONDecodeError as error:
                raise BadAnswerError("MissingMaterialsJson is not JSON") from error
            return CorrectionRequested(
                reason=_field(answer, "Reason"), missing_materials=tuple(missing)
            )
        if status == "APPROVED":
            certificate = Certificate(
                certificate_name=_field(answer, "CertificateName"),
                certificate_number=_field(answer, "CertificateNumber"),
                issuer_name=self.issuer_name,
                issue_date=_field(answer, "IssueDate"),
            )
            return Decided(approved=True, certificates=(certificate,))
        if status == "DENIED":
            return Decided(approved=False, reason=_field(answer, "Reason"))
        if status == "REJECTED":
            return Rejected(reason=_field(answer, "Reason"))
        if status == "CANCELLED":
            raise FilingWithdrawn(f"application {receipt_no} was withdrawn at the department")
        raise BadAnswerError(f"unknown decision status {status!r}")


async def _answer(call: Awaitable[Any]) -> Any:
    """The operation's answer; XML that cannot be read or trusted is a BadAnswerError."""
    # zeep and lxml are imported by the calls that use them: the router loads this class
    # for its poll schedule (adapters.registry) and never calls a department.
    from lxml.etree import XMLSyntaxError as LxmlSyntaxError
    from zeep.exceptions import (
        DTDForbidden,
        EntitiesForbidden,
        TransportError,
        XMLParseError,
        XMLSyntaxError,
    )

    try:
        return await call
    except (DTDForbidden, EntitiesForbidden) as error:
        raise BadAnswerError("the department answered XML with a DTD; refused unread") from error
    except (XMLSyntaxError, XMLParseError, LxmlSyntaxError) as error:
        raise BadAnswerError("the department's answer does not fit its WSDL") from error
    except TransportError as error:
        # zeep reports a 200 whose body is not XML as a TransportError, with the body in
        # its message: replace it so that nothing the department sent reaches the logs.
        if error.status_code == 200:
            raise BadAnswerError("the department's answer could not be parsed as XML") from error
        raise


def _json_or_none(models: tuple[BaseModel, ...]) -> str | None:
    if not models:
        return None
    return json.dumps([model.model_dump(mode="json") for model in models], ensure_ascii=False)


def _identity(applicant: NaturalPerson | LegalEntity) -> tuple[str, str]:
    """证件类型 and 证件号码 of the applicant."""
    if isinstance(applicant, NaturalPerson):
        return applicant.id_type.value, applicant.id_number
    return CREDIT_CODE_ID_TYPE, applicant.uscc


def _field(answer: Any, name: str) -> Any:
    value = getattr(answer, name, None)
    if value is None or value == "":
        raise BadAnswerError(f"the department's answer has no {name}")
    return value
