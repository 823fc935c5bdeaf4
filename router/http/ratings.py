"""好差评 over HTTP: the platform posts and reads a bundle's rating; operators, or the
department's own staff (scope `manual:<department>`), list rectifications (整改) and
close them with the reply to the applicant."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Depends, status

from contracts.api import (
    ProblemDetails,
    Rating,
    RatingRecord,
    Rectification,
    RectificationReply,
    RectificationState,
)
from router.domain import ratings
from router.domain.rectifications import Replied, rectifications, reply
from router.domain.workdays import working_calendar
from router.http.auth import ApiToken, Scope, require_scope
from router.http.bundles import READERS, Writer
from router.http.manual import Staff
from router.http.problems import Cause, Refused
from router.http.services import AppCatalogs, AppServices, Services
from router.store import BundleRow
from runtime import clock

Operator = Annotated[ApiToken, Depends(require_scope(Scope.OPS))]
_NOT_RATED = {
    ratings.UNKNOWN_BUNDLE: Cause.BUNDLE_NOT_FOUND,
    ratings.NOT_REPLIED: Cause.NOT_YET_REPLIED,
    ratings.ALREADY_RATED: Cause.ALREADY_RATED,
    ratings.NOT_IN_BUNDLE: Cause.DEPARTMENT_NOT_IN_BUNDLE,
}

rating_routes = APIRouter()


@rating_routes.post(
    "/v1/bundles/{bundle_id}/rating",
    status_code=status.HTTP_201_CREATED,
    response_model=RatingRecord,
    responses={
        409: {"model": ProblemDetails, "description": "Not replied yet, or rated already"},
        422: {"model": ProblemDetails, "description": "A rated department had no item"},
    },
)
def rate_bundle(
    bundle_id: uuid.UUID,
    body: Rating,
    services: AppServices,
    catalogs: AppCatalogs,
    writer: Writer,
) -> RatingRecord:
    """好差评: the applicant's rating of a replied bundle, once; a 差评 opens 整改."""
    result = ratings.rate(
        services.database,
        catalogs,
        bundle_id,
        body,
        actor=writer.actor,
        at=clock.now(),
        calendar=working_calendar(),
        rectification_days=services.rectification_working_days,
    )
    if isinstance(result, ratings.NotRated):
        raise Refused(_NOT_RATED[result.reason], result.detail)
    return result.record


@rating_routes.get(
    "/v1/bundles/{bundle_id}/rating", response_model=RatingRecord, dependencies=READERS
)
def get_rating(bundle_id: uuid.UUID, services: AppServices) -> RatingRecord:
    """The rating, with each rectification it opened and the department's reply."""
    with services.database.transaction() as session:
        if session.get(BundleRow, bundle_id) is None:
            raise Refused(Cause.BUNDLE_NOT_FOUND, f"no bundle {bundle_id}")
        record = ratings.rating_record(session, bundle_id, clock.now())
    if record is None:
        raise Refused(Cause.RATING_NOT_FOUND, f"bundle {bundle_id} is not rated")
    return record


@rating_routes.get("/v1/ops/rectifications", include_in_schema=False)
def list_rectifications(
    services: AppServices,
    operator: Operator,
    state: RectificationState | None = RectificationState.OPEN,
    department: str | None = None,
) -> list[Rectification]:
    """Rectifications (open ones by default), the earliest due first."""
    with services.database.transaction() as session:
        return rectifications(session, clock.now(), state=state, department=department)


@rating_routes.post("/v1/ops/rectifications/{rectification_id}/reply", include_in_schema=False)
def reply_as_operator(
    rectification_id: uuid.UUID, body: RectificationReply, services: AppServices, operator: Operator
) -> Rectification:
    return _reply(services, rectification_id, body, operator, department=None)


@rating_routes.get(
    "/v1/manual/{department}/rectifications",
    response_model=list[Rectification],
    tags=["manual departments"],
)
def list_own_rectifications(
    department: str,
    staff: Staff,
    services: AppServices,
    state: RectificationState | None = RectificationState.OPEN,
) -> list[Rectification]:
    """The department's own rectifications (open ones by default)."""
    with services.database.transaction() as session:
        return rectifications(session, clock.now(), state=state, department=department)


@rating_routes.post(
    "/v1/manual/{department}/rectifications/{rectification_id}/reply",
    response_model=Rectification,
    tags=["manual departments"],
    responses={409: {"model": ProblemDetails, "description": "Replied already"}},
)
def reply_as_department(
    department: str,
    rectification_id: uuid.UUID,
    body: RectificationReply,
    staff: Staff,
    services: AppServices,
) -> Rectification:
    """Close the department's rectification with its reply to the applicant."""
    return _reply(services, rectification_id, body, staff, department=department)


def _reply(
    services: Services,
    rectification_id: uuid.UUID,
    body: RectificationReply,
    token: ApiToken,
    department: str | None,
) -> Rectification:
    now = clock.now()
    replied = reply(
        services.database,
        rectification_id,
        body.reply,
        actor=token.actor,
        at=now,
        department=department,
    )
    if replied is Replied.UNKNOWN:
        raise Refused(Cause.RECTIFICATION_NOT_FOUND, f"no rectification {rectification_id}")
    if replied is Replied.ALREADY_CLOSED:
        raise Refused(Cause.RECTIFICATION_CLOSED, "the department has replied already")
    with services.database.transaction() as session:
        [closed] = rectifications(session, now, rectification_id=rectification_id)
    return closed
