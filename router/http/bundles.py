"""The platform's bundles (一件事): submit one, read its status, timeline and reply,
withdraw it (撤回), resubmit what a department asked to correct (补齐补正)."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from contracts.api import (
    BundleStatus,
    Correction,
    IntakeReceipt,
    OneTimeNotice,
    TimelineEntry,
    Withdrawal,
)
from contracts.messages import BundleReply
from router.domain.admission import read_document
from router.domain.corrections import Resubmitted, resubmit
from router.domain.intake import CaseNumberTaken, ProblemsFound, Received
from router.domain.validation import material_problems
from router.domain.views import bundle_reply, bundle_status, bundle_timeline
from router.domain.withdrawal import Withdrawn, withdraw
from router.http.auth import Scope, require_scope
from router.http.problems import one_time_notice
from router.http.services import AppServices
from router.store import BundleRow

IDEMPOTENCY_KEY = "Idempotency-Key"
WRITERS = [Depends(require_scope(Scope.BUNDLES_WRITE))]
READERS = [Depends(require_scope(Scope.BUNDLES_READ))]

bundle_routes = APIRouter()


@bundle_routes.post(
    "/v1/bundles",
    status_code=status.HTTP_202_ACCEPTED,
    dependencies=WRITERS,
    response_model=IntakeReceipt,
    responses={
        200: {"model": IntakeReceipt, "description": "Repeat of an accepted case number"},
        409: {"description": "The case number was used for a different application"},
        413: {"description": "The body is larger than the limit"},
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
    idempotency_key: Annotated[
        str | None, Header(alias=IDEMPOTENCY_KEY, description="The case number (办件编号)")
    ] = None,
) -> Response:
    body = await request.body()
    # Parsing and validating cost CPU in proportion to the body: off the event loop, so
    # one large application does not hold up every other request.
    raw, unreadable = await run_in_threadpool(read_document, body)
    if unreadable is not None:
        return one_time_notice(unreadable)
    result = await run_in_threadpool(services.intake.submit, raw, idempotency_key)
    match result:
        case Received(receipt=receipt, replayed=replayed):
            return JSONResponse(
                receipt.model_dump(mode="json"),
                status_code=status.HTTP_200_OK if replayed else status.HTTP_202_ACCEPTED,
            )
        case ProblemsFound(notice=notice):
            return one_time_notice(*notice.problems)
        case CaseNumberTaken(message=message):
            return JSONResponse({"detail": message}, status_code=status.HTTP_409_CONFLICT)
    raise AssertionError(result)


@bundle_routes.get("/v1/bundles/{bundle_id}", response_model=BundleStatus, dependencies=READERS)
def get_bundle(bundle_id: uuid.UUID, services: AppServices) -> BundleStatus:
    with services.database.transaction() as session:
        found = bundle_status(session, bundle_id)
    if found is None:
        raise HTTPException(status_code=404, detail="no such bundle")
    return found


@bundle_routes.get(
    "/v1/bundles/{bundle_id}/timeline", response_model=list[TimelineEntry], dependencies=READERS
)
def get_timeline(bundle_id: uuid.UUID, services: AppServices) -> list[TimelineEntry]:
    with services.database.transaction() as session:
        if session.get(BundleRow, bundle_id) is None:
            raise HTTPException(status_code=404, detail="no such bundle")
        return bundle_timeline(session, bundle_id)


@bundle_routes.get(
    "/v1/bundles/{bundle_id}/reply", response_model=BundleReply, dependencies=READERS
)
def get_reply(bundle_id: uuid.UUID, services: AppServices) -> BundleReply:
    with services.database.transaction() as session:
        reply = bundle_reply(session, bundle_id)
        known = session.get(BundleRow, bundle_id) is not None
    if reply is None:
        detail = "the bundle is still in progress" if known else "no such bundle"
        raise HTTPException(status_code=404, detail=detail)
    return reply


@bundle_routes.post(
    "/v1/bundles/{bundle_id}/withdraw",
    response_model=BundleReply,
    dependencies=WRITERS,
    responses={409: {"description": "The bundle was already answered"}},
)
def withdraw_bundle(
    bundle_id: uuid.UUID, services: AppServices, body: Withdrawal | None = None
) -> BundleReply:
    result = withdraw(services.database, bundle_id, (body or Withdrawal()).reason)
    if result is Withdrawn.UNKNOWN:
        raise HTTPException(status_code=404, detail="no such bundle")
    if result is Withdrawn.ALREADY_REPLIED:
        raise HTTPException(status_code=409, detail="every item is decided: nothing to withdraw")
    services.on_commit()
    with services.database.transaction() as session:
        reply = bundle_reply(session, bundle_id)
    assert reply is not None  # withdrawal commits the reply with it
    return reply


@bundle_routes.post(
    "/v1/bundles/{bundle_id}/items/{item}/corrections",
    response_model=BundleStatus,
    dependencies=WRITERS,
    status_code=status.HTTP_202_ACCEPTED,
    responses={
        404: {"description": "No such bundle or item"},
        409: {"description": "The item's department has not asked for a correction"},
        422: {"model": OneTimeNotice, "description": "A material was not uploaded"},
    },
)
def submit_correction(
    bundle_id: uuid.UUID, item: str, body: Correction, services: AppServices
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
    result = resubmit(services.database, bundle_id, item, body.materials)
    if result is Resubmitted.UNKNOWN:
        raise HTTPException(status_code=404, detail="no such bundle or item")
    if result is Resubmitted.NOT_REQUESTED:
        raise HTTPException(status_code=409, detail=f"no correction of {item} is awaited")
    services.on_commit()
    return get_bundle(bundle_id, services)
