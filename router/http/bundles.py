"""The platform's bundles (一件事): submit one, read its status, timeline and reply,
withdraw it (撤回), resubmit what a department asked to correct (补齐补正)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, Query, Request, Response, status
from fastapi.responses import JSONResponse
from sqlalchemy import select
from starlette.concurrency import run_in_threadpool

from contracts.api import (
    BundleStatus,
    Correction,
    DeliveryProof,
    IntakeReceipt,
    OneTimeNotice,
    Problem,
    ProblemDetails,
    TimelineEntry,
    Withdrawal,
)
from contracts.messages import AcceptanceNotice, BundleReply
from router.domain.admission import read_document
from router.domain.corrections import Resubmitted, resubmit
from router.domain.handovers import ProofRefusal, record_proof
from router.domain.intake import CaseNumberTaken, Intake, IntakeResult, ProblemsFound, Received
from router.domain.notices import issued_notices
from router.domain.validation import material_problems
from router.domain.views import bundle_reply, bundle_status, bundle_timeline
from router.domain.withdrawal import Withdrawn, withdraw
from router.http.auth import ApiToken, Scope, require_scope
from router.http.problems import Cause, Refused, one_time_notice, problem_details, problem_response
from router.http.services import AppCatalogs, AppServices
from router.store import BundleRow

IDEMPOTENCY_KEY = "Idempotency-Key"
READERS = [Depends(require_scope(Scope.BUNDLES_READ))]
Writer = Annotated[ApiToken, Depends(require_scope(Scope.BUNDLES_WRITE))]

bundle_routes = APIRouter()


@bundle_routes.post(
    "/v1/bundles",
    status_code=status.HTTP_202_ACCEPTED,
    response_model=IntakeReceipt,
    responses={
        200: {"model": IntakeReceipt, "description": "Repeat of an accepted case number"},
        409: {
            "model": ProblemDetails,
            "description": "The case number was used for a different application",
        },
        413: {"model": ProblemDetails, "description": "The body is larger than the limit"},
        422: {"model": OneTimeNotice, "description": "Every problem, at once"},
    },
    # The body is read raw, to report every problem at once: create_app registers the
    # Application schema this refers to.
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": "#/components/schemas/Application"}}
            },
        }
    },
)
async def submit_bundle(
    request: Request,
    services: AppServices,
    writer: Writer,
    idempotency_key: Annotated[
        str | None, Header(alias=IDEMPOTENCY_KEY, description="The case number (办件编号)")
    ] = None,
) -> Response:
    body = await request.body()
    # Parsing and validating cost CPU in proportion to the body: off the event loop, so
    # one large application does not hold up every other request; one hop for both.
    result = await run_in_threadpool(
        _read_and_submit, services.intake, body, idempotency_key, writer
    )
    match result:
        case Problem() as unreadable:
            details = problem_details(Cause.INVALID_REQUEST, unreadable.message_en, (unreadable,))
            return problem_response(details)
        case Received(receipt=receipt, replayed=replayed):
            return Response(
                receipt.model_dump_json(),
                status_code=status.HTTP_200_OK if replayed else status.HTTP_202_ACCEPTED,
                media_type="application/json",
            )
        case ProblemsFound(notice=notice):
            return one_time_notice(*notice.problems)
        case CaseNumberTaken(message=message):
            return problem_response(problem_details(Cause.CASE_NUMBER_TAKEN, message))
    raise AssertionError(result)


def _read_and_submit(
    intake: Intake, body: bytes, idempotency_key: str | None, writer: ApiToken
) -> IntakeResult | Problem:
    """The posted application taken in, or the problem that kept its body from being read."""
    raw, unreadable = read_document(body)
    if unreadable is not None:
        return unreadable
    return intake.submit(raw, idempotency_key, actor=writer.actor)


@bundle_routes.get("/v1/bundles", response_model=list[BundleStatus], dependencies=READERS)
def find_by_case_number(
    services: AppServices,
    catalogs: AppCatalogs,
    project_no: Annotated[str, Query(min_length=1, max_length=64, description="办件编号")],
) -> list[BundleStatus]:
    """The bundle with this case number (办件编号), as a list: empty when there is none."""
    with services.database.snapshot() as session:
        bundle_id = session.scalar(select(BundleRow.id).where(BundleRow.project_no == project_no))
        found = bundle_status(session, bundle_id, catalogs) if bundle_id else None
    return [found] if found else []


@bundle_routes.get("/v1/bundles/{bundle_id}", response_model=BundleStatus, dependencies=READERS)
def get_bundle(bundle_id: uuid.UUID, services: AppServices, catalogs: AppCatalogs) -> BundleStatus:
    with services.database.snapshot() as session:
        found = bundle_status(session, bundle_id, catalogs)
    if found is None:
        raise Refused(Cause.BUNDLE_NOT_FOUND, f"no bundle {bundle_id}")
    return found


@bundle_routes.get(
    "/v1/bundles/{bundle_id}/timeline", response_model=list[TimelineEntry], dependencies=READERS
)
def get_timeline(bundle_id: uuid.UUID, services: AppServices) -> list[TimelineEntry]:
    with services.database.snapshot() as session:
        if session.get(BundleRow, bundle_id) is None:
            raise Refused(Cause.BUNDLE_NOT_FOUND, f"no bundle {bundle_id}")
        return bundle_timeline(session, bundle_id)


@bundle_routes.get(
    "/v1/bundles/{bundle_id}/notices",
    response_model=list[AcceptanceNotice],
    dependencies=READERS,
)
def get_notices(
    bundle_id: uuid.UUID, services: AppServices, catalogs: AppCatalogs
) -> list[AcceptanceNotice]:
    """The 受理 / 不予受理 notices issued so far, oldest first: what the callback and the
    reply queue carried, for a platform that pulls. Each names its PDF
    (`GET /v1/bundles/{bundle_id}/files/{sha256}`)."""
    with services.database.snapshot() as session:
        bundle = session.get(BundleRow, bundle_id)
        if bundle is None:
            raise Refused(Cause.BUNDLE_NOT_FOUND, f"no bundle {bundle_id}")
        return issued_notices(session, bundle, catalogs.for_bundle(bundle))


# How long a client polling /reply should wait before asking again.
REPLY_RETRY_AFTER_SECONDS = 5


@bundle_routes.get(
    "/v1/bundles/{bundle_id}/reply",
    response_model=BundleReply,
    dependencies=READERS,
    responses={202: {"model": BundleStatus, "description": "Still in progress: its status so far"}},
)
def get_reply(
    bundle_id: uuid.UUID, services: AppServices, catalogs: AppCatalogs
) -> BundleReply | JSONResponse:
    """The one reply once every item is final; until then 202 with the bundle's status
    and Retry-After. 404 only for a bundle that does not exist."""
    with services.database.snapshot() as session:
        reply = bundle_reply(session, bundle_id)
        progress = bundle_status(session, bundle_id, catalogs) if reply is None else None
    if reply is not None:
        return reply
    if progress is None:
        raise Refused(Cause.BUNDLE_NOT_FOUND, f"no bundle {bundle_id}")
    return JSONResponse(
        progress.model_dump(mode="json"),
        status_code=status.HTTP_202_ACCEPTED,
        headers={"Retry-After": str(REPLY_RETRY_AFTER_SECONDS)},
    )


@bundle_routes.post(
    "/v1/bundles/{bundle_id}/withdraw",
    response_model=BundleReply,
    responses={409: {"model": ProblemDetails, "description": "The bundle was already answered"}},
)
def withdraw_bundle(
    bundle_id: uuid.UUID, services: AppServices, writer: Writer, body: Withdrawal | None = None
) -> BundleReply:
    result = withdraw(services.database, bundle_id, writer.actor, (body or Withdrawal()).reason)
    if result is Withdrawn.UNKNOWN:
        raise Refused(Cause.BUNDLE_NOT_FOUND, f"no bundle {bundle_id}")
    if result is Withdrawn.ALREADY_REPLIED:
        raise Refused(Cause.ALREADY_ANSWERED, "every item is decided: nothing to withdraw")
    with services.database.snapshot() as session:
        reply = bundle_reply(session, bundle_id)
    assert reply is not None  # withdrawal commits the reply with it
    return reply


@bundle_routes.post(
    "/v1/bundles/{bundle_id}/items/{item}/corrections",
    response_model=BundleStatus,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"model": ProblemDetails, "description": "No such bundle or item"},
        409: {
            "model": ProblemDetails,
            "description": "The item's department has not asked for a correction",
        },
        422: {"model": OneTimeNotice, "description": "A material was not uploaded"},
    },
)
def submit_correction(
    bundle_id: uuid.UUID,
    item: str,
    body: Correction,
    services: AppServices,
    catalogs: AppCatalogs,
    writer: Writer,
) -> BundleStatus | JSONResponse:
    """补齐补正: resubmit what the department asked for; the item resumes at the same
    department without a second filing."""
    problems = list(
        material_problems(
            [material.model_dump() for material in body.materials], services.materials.exists
        )
    )
    if problems:
        return one_time_notice(*problems)
    result = resubmit(services.database, bundle_id, item, body.materials, writer.actor)
    if result is Resubmitted.UNKNOWN:
        raise Refused(Cause.ITEM_NOT_FOUND, f"no item {item!r} in bundle {bundle_id}")
    if result is Resubmitted.NOT_REQUESTED:
        raise Refused(Cause.CORRECTION_NOT_AWAITED, f"no correction of {item} is awaited")
    return get_bundle(bundle_id, services, catalogs)


_PROOF_REFUSALS = {
    ProofRefusal.NOT_READY: Cause.HANDOVER_NOT_READY,
    ProofRefusal.ALREADY_DELIVERED: Cause.PROOF_CONFLICT,
    ProofRefusal.WRONG_SOURCE: Cause.PROOF_MISMATCH,
    ProofRefusal.NO_SUCH_WAYBILL: Cause.PROOF_MISMATCH,
}


@bundle_routes.post(
    "/v1/bundles/{bundle_id}/handovers/proof",
    response_model=BundleStatus,
    responses={
        409: {
            "model": ProblemDetails,
            "description": "Nothing ready to hand over, or delivered with another proof",
        },
        422: {"model": ProblemDetails, "description": "Wrong source or waybill for the method"},
    },
)
def submit_delivery_proof(
    bundle_id: uuid.UUID,
    body: DeliveryProof,
    services: AppServices,
    catalogs: AppCatalogs,
    writer: Writer,
) -> BundleStatus:
    """送达凭证移交: record who received the results, when, and their signature's reference
    (the courier's receipt, the window's form, the platform's download record). Repeating
    the recorded proof changes nothing."""
    with services.database.transaction() as session:
        bundle = session.get(BundleRow, bundle_id, with_for_update=True)
        if bundle is None:
            raise Refused(Cause.BUNDLE_NOT_FOUND, f"no bundle {bundle_id}")
        refusal = record_proof(session, bundle, body, writer.actor)
    if refusal is not None:
        raise Refused(_PROOF_REFUSALS[refusal], f"{refusal}: item {body.item or '(bundle)'}")
    return get_bundle(bundle_id, services, catalogs)
