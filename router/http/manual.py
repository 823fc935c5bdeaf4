"""The manual work queue: departments with no system yet (尚未完成系统对接) handle their
items by hand over HTTP.

The manual adapter files each dispatch here, and adds supplements to it (a pre-reviewed
item's prerequisites' results, corrected materials) so staff see them on the same item;
that department's staff list, claim and decide items or request a correction. A
decision is written to the outbox as an `ItemOutcome` in the same transaction that
closes the item, so it reaches the correlator like any department's answer. Each
department's staff hold tokens with the scope `manual:<department>`, which open only that
department's queue; another department's item is reported as missing.
"""

import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Path, Request
from sqlalchemy import select

from contracts import topology
from contracts.api import Claim, ManualItem, ManualItemState
from contracts.messages import (
    Accepted,
    CorrectionRequested,
    ItemDispatch,
    ItemOutcome,
    ItemSupplement,
    OutcomeResult,
    SupplementPurpose,
)
from router.http.auth import Credentials, authorize, manual_scope
from router.store import Database, ManualItemRow
from router.store.outbox import enqueue


def manual_routes(
    database: Database | None, on_commit: Callable[[], None] = lambda: None
) -> APIRouter:
    """The work-queue routes, each open only to its department's `manual:<code>` scope."""
    routes = APIRouter(prefix="/v1/manual/{department}", tags=["manual departments"])

    def department_of(
        department: Annotated[str, Path()], request: Request, credentials: Credentials
    ) -> str:
        authorize(request, credentials, manual_scope(department))
        return department

    # Resolved at definition time (no postponed annotations in this module): FastAPI reads
    # these annotations, and a string would not resolve to this closure's dependency.
    Department = Annotated[str, Depends(department_of)]

    def db() -> Database:
        if database is None:
            raise HTTPException(status_code=503, detail="built for documentation only")
        return database

    @routes.post("/items", status_code=201, response_model=ManualItem)
    def file_item(department: Department, dispatch: ItemDispatch) -> ManualItem:
        if dispatch.department != department:
            raise HTTPException(status_code=422, detail="the dispatch is for another department")
        with db().transaction() as session:
            row = session.scalar(
                select(ManualItemRow).where(
                    ManualItemRow.idempotency_key == dispatch.idempotency_key
                )
            )
            if row is None:
                now = datetime.now(UTC)
                row = ManualItemRow(
                    id=uuid.uuid4(),
                    department=department,
                    idempotency_key=dispatch.idempotency_key,
                    dispatch=dispatch.model_dump(mode="json"),
                    state=ManualItemState.OPEN,
                    claimed_by=None,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
            return _view(row)

    @routes.post("/items/supplements", response_model=ManualItem)
    def supplement_item(department: Department, supplement: ItemSupplement) -> ManualItem:
        """Merge a supplement into the filed item; merging it again changes nothing."""
        with db().transaction() as session:
            row = session.scalar(
                select(ManualItemRow)
                .where(ManualItemRow.idempotency_key == supplement.idempotency_key)
                .with_for_update()
            )
            row = _own(row, department)
            filed = ItemDispatch.model_validate(row.dispatch)
            known_results = {done.item for done in filed.prerequisite_results}
            known_materials = {material.sha256 for material in filed.materials}
            merged = filed.model_copy(
                update={
                    "prerequisite_results": filed.prerequisite_results
                    + tuple(
                        r for r in supplement.prerequisite_results if r.item not in known_results
                    ),
                    "materials": filed.materials
                    + tuple(m for m in supplement.materials if m.sha256 not in known_materials),
                    "pre_review": filed.pre_review
                    and supplement.purpose is not SupplementPurpose.PREREQUISITES,
                }
            )
            row.dispatch = merged.model_dump(mode="json")
            row.updated_at = datetime.now(UTC)
            return _view(row)

    @routes.get("/items", response_model=list[ManualItem])
    def list_items(
        department: Department, state: ManualItemState = ManualItemState.OPEN
    ) -> list[ManualItem]:
        with db().transaction() as session:
            rows = session.scalars(
                select(ManualItemRow)
                .where(ManualItemRow.department == department, ManualItemRow.state == state)
                .order_by(ManualItemRow.created_at)
            )
            return [_view(row) for row in rows]

    @routes.get("/items/{item_id}", response_model=ItemDispatch)
    def show_item(department: Department, item_id: uuid.UUID) -> ItemDispatch:
        with db().transaction() as session:
            return ItemDispatch.model_validate(
                _own(session.get(ManualItemRow, item_id), department).dispatch
            )

    @routes.post("/items/{item_id}/claim", response_model=ManualItem)
    def claim(department: Department, item_id: uuid.UUID, body: Claim) -> ManualItem:
        with db().transaction() as session:
            row = _own(session.get(ManualItemRow, item_id, with_for_update=True), department)
            if row.state == ManualItemState.DONE or (row.claimed_by not in (None, body.staff)):
                raise HTTPException(
                    status_code=409, detail=f"already {row.state} by {row.claimed_by}"
                )
            row.state = ManualItemState.CLAIMED
            row.claimed_by, row.updated_at = body.staff, datetime.now(UTC)
            return _view(row)

    @routes.post("/items/{item_id}/outcome", response_model=ManualItem)
    def decide(department: Department, item_id: uuid.UUID, result: OutcomeResult) -> ManualItem:
        with db().transaction() as session:
            row = _own(session.get(ManualItemRow, item_id, with_for_update=True), department)
            if row.state == ManualItemState.DONE:
                raise HTTPException(status_code=409, detail="this item is already decided")
            outcome = ItemOutcome.answering(ItemDispatch.model_validate(row.dispatch), result)
            enqueue(
                session,
                exchange=topology.OUTCOMES_EXCHANGE,
                routing_key=topology.outcome_routing_key(department),
                message=outcome,
            )
            # Acceptance and a correction request leave the item with its staff.
            if not isinstance(result, Accepted | CorrectionRequested):
                row.state = ManualItemState.DONE
            row.updated_at = datetime.now(UTC)
            view = _view(row)
        on_commit()
        return view

    return routes


def _own(row: ManualItemRow | None, department: str) -> ManualItemRow:
    # Another department's item is reported as missing, not forbidden: ids reveal nothing.
    if row is None or row.department != department:
        raise HTTPException(status_code=404, detail="no such item in this department's queue")
    return row


def _view(row: ManualItemRow) -> ManualItem:
    dispatch = row.dispatch
    return ManualItem(
        id=row.id,
        receipt_no=f"MANUAL-{row.id.hex[:12].upper()}",
        department=row.department,
        item=dispatch["item"],
        item_name_zh=dispatch["item_name_zh"],
        project_no=dispatch["project_no"],
        state=row.state,
        claimed_by=row.claimed_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
