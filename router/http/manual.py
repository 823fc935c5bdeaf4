"""The manual work queue over HTTP (`router/domain/manual_queue.py` keeps the queue).

Each department's staff hold tokens with the scope `manual:<department>`, which open only
that department's queue; another department's item is reported as missing. A staff
member is who their token names (`lianban token new <name>`): claims and decisions are
theirs, and an item one staff member claimed cannot be decided by another.
"""

from __future__ import annotations

import uuid
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from contracts.api import Claim, ManualItem, ManualItemState
from contracts.messages import ItemDispatch, ItemSupplement, OutcomeResult
from router.domain.manual_queue import ManualQueue, Refusal, Taken
from router.http.auth import ApiToken, Credentials, authorize, manual_scope
from router.http.services import AppServices

T = TypeVar("T")
_REFUSALS = {
    Refusal.NOT_IN_QUEUE: (404, "no such item in this department's queue"),
    Refusal.OTHER_DEPARTMENT: (422, "the dispatch is for another department"),
    Refusal.DECIDED: (409, "this item is already decided"),
    Refusal.CLAIMED_BY_OTHER: (409, "another staff member claimed this item"),
}

manual_routes = APIRouter(prefix="/v1/manual/{department}", tags=["manual departments"])


def department_staff(
    department: Annotated[str, Path()], request: Request, credentials: Credentials
) -> ApiToken:
    """The caller's token, if it holds the `manual:<code>` scope of the path's department."""
    return authorize(request, credentials, manual_scope(department))


Staff = Annotated[ApiToken, Depends(department_staff)]


def department_queue(
    department: Annotated[str, Path()], staff: Staff, services: AppServices
) -> ManualQueue:
    return ManualQueue(services.database, department)


Queue = Annotated[ManualQueue, Depends(department_queue)]


@manual_routes.post("/items", status_code=201, response_model=ManualItem)
def file_item(queue: Queue, dispatch: ItemDispatch) -> ManualItem:
    return _answer(queue.file(dispatch))


@manual_routes.post("/items/supplements", response_model=ManualItem)
def supplement_item(queue: Queue, supplement: ItemSupplement) -> ManualItem:
    """Merge a supplement into the filed item; merging it again changes nothing."""
    return _answer(queue.supplement(supplement))


@manual_routes.get("/items", response_model=list[ManualItem])
def list_items(queue: Queue, state: ManualItemState = ManualItemState.OPEN) -> list[ManualItem]:
    return queue.items(state)


@manual_routes.get("/items/{item_id}", response_model=ItemDispatch)
def show_item(queue: Queue, item_id: uuid.UUID) -> ItemDispatch:
    return _answer(queue.dispatch(item_id))


@manual_routes.post("/items/{item_id}/claim", response_model=ManualItem)
def claim(queue: Queue, staff: Staff, item_id: uuid.UUID, body: Claim | None = None) -> ManualItem:
    """Claim the item for the token's holder; a `staff` in the body must be that holder."""
    if body is not None and body.staff != _staff_name(staff):
        raise HTTPException(status_code=403, detail="staff are who their token names")
    claimed = queue.claim(item_id, _staff_name(staff), actor=staff.actor)
    if isinstance(claimed, Taken):
        detail = f"already {claimed.item.state} by {claimed.item.claimed_by}"
        raise HTTPException(status_code=409, detail=detail)
    return _answer(claimed)


@manual_routes.post("/items/{item_id}/outcome", response_model=ManualItem)
def decide(queue: Queue, staff: Staff, item_id: uuid.UUID, result: OutcomeResult) -> ManualItem:
    return _answer(queue.decide(item_id, result, _staff_name(staff), actor=staff.actor))


def _staff_name(token: ApiToken) -> str:
    return token.name[:64]  # what `manual_items.claimed_by` holds


def _answer(result: T | Refusal) -> T:
    if isinstance(result, Refusal):
        status_code, detail = _REFUSALS[result]
        raise HTTPException(status_code=status_code, detail=detail)
    return result
