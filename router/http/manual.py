"""The manual work queue over HTTP (`router/domain/manual_queue.py` keeps the queue).

Each department's staff hold tokens with the scope `manual:<department>`, which open only
that department's queue; another department's item is reported as missing.
"""

from __future__ import annotations

import uuid
from typing import Annotated, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Path, Request

from contracts.api import Claim, ManualItem, ManualItemState
from contracts.messages import ItemDispatch, ItemSupplement, OutcomeResult
from router.domain.manual_queue import ManualQueue, Refusal, Taken
from router.http.auth import Credentials, authorize, manual_scope
from router.http.services import AppServices

T = TypeVar("T")
_REFUSALS = {
    Refusal.NOT_IN_QUEUE: (404, "no such item in this department's queue"),
    Refusal.OTHER_DEPARTMENT: (422, "the dispatch is for another department"),
    Refusal.DECIDED: (409, "this item is already decided"),
}

manual_routes = APIRouter(prefix="/v1/manual/{department}", tags=["manual departments"])


def authorized_department(
    department: Annotated[str, Path()], request: Request, credentials: Credentials
) -> str:
    """The department in the path, if the caller's token holds its `manual:<code>` scope."""
    authorize(request, credentials, manual_scope(department))
    return department


def department_queue(
    department: Annotated[str, Depends(authorized_department)], services: AppServices
) -> ManualQueue:
    return ManualQueue(services.database, department, services.on_commit)


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
def claim(queue: Queue, item_id: uuid.UUID, body: Claim) -> ManualItem:
    claimed = queue.claim(item_id, body.staff)
    if isinstance(claimed, Taken):
        detail = f"already {claimed.item.state} by {claimed.item.claimed_by}"
        raise HTTPException(status_code=409, detail=detail)
    return _answer(claimed)


@manual_routes.post("/items/{item_id}/outcome", response_model=ManualItem)
def decide(queue: Queue, item_id: uuid.UUID, result: OutcomeResult) -> ManualItem:
    return _answer(queue.decide(item_id, result))


def _answer(result: T | Refusal) -> T:
    if isinstance(result, Refusal):
        status_code, detail = _REFUSALS[result]
        raise HTTPException(status_code=status_code, detail=detail)
    return result
