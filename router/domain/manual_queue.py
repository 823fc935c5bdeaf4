"""The manual work queue: departments with no system yet (尚未完成系统对接) handle their
items by hand.

The manual adapter files each dispatch here, and adds supplements to it (a pre-reviewed
item's prerequisites' results, corrected materials) so staff see them on the same item;
that department's staff list, claim and decide items or request a correction. A
decision is written to the outbox as an `ItemOutcome` in the same transaction that
closes the item, so it reaches the correlator like any department's answer.

A `ManualQueue` is one department's: another department's item is `NOT_IN_QUEUE`, exactly
like an unknown id, so ids reveal nothing. What the queue will not do comes back as a
result (`Refusal`, `Taken`), never as an exception.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import topology
from contracts.api import ManualItem, ManualItemState
from contracts.ids import new_id
from contracts.messages import (
    Accepted,
    ClockNotice,
    CorrectionRequested,
    ItemDispatch,
    ItemOutcome,
    ItemSupplement,
    OutcomeResult,
    SupplementPurpose,
)
from router.store import Database, ManualItemRow, audit
from router.store.outbox import enqueue


class Refusal(StrEnum):
    NOT_IN_QUEUE = "not_in_queue"  # no such item, or another department's
    OTHER_DEPARTMENT = "other_department"  # a dispatch filed with the wrong queue
    DECIDED = "decided"  # a second decision on the same item
    CLAIMED_BY_OTHER = "claimed_by_other"  # staff decided an item another one claimed


@dataclass(frozen=True)
class Taken:
    """A claim on an item other staff hold, or one already decided: `item` says by whom."""

    item: ManualItem


class ManualQueue:
    """One department's work queue, kept in `manual_items`."""

    def __init__(self, database: Database, department: str) -> None:
        self.department = department
        self._database = database

    def file(self, dispatch: ItemDispatch) -> ManualItem | Refusal:
        """Queue a dispatch; filing it again (same idempotency key) returns the first item."""
        if dispatch.department != self.department:
            return Refusal.OTHER_DEPARTMENT
        with self._database.transaction() as session:
            row = session.scalar(
                select(ManualItemRow).where(
                    ManualItemRow.idempotency_key == dispatch.idempotency_key
                )
            )
            if row is None:
                now = datetime.now(UTC)
                row = ManualItemRow(
                    id=new_id(),
                    department=self.department,
                    idempotency_key=dispatch.idempotency_key,
                    dispatch=dispatch.model_dump(mode="json"),
                    state=ManualItemState.OPEN,
                    claimed_by=None,
                    created_at=now,
                    updated_at=now,
                )
                session.add(row)
            return _view(row)

    def supplement(self, supplement: ItemSupplement) -> ManualItem | Refusal:
        """Merge a supplement into the filed item; merging it again changes nothing."""
        with self._database.transaction() as session:
            row = self._own(
                session.scalar(
                    select(ManualItemRow)
                    .where(ManualItemRow.idempotency_key == supplement.idempotency_key)
                    .with_for_update()
                )
            )
            if row is None:
                return Refusal.NOT_IN_QUEUE
            merged = merge(ItemDispatch.model_validate(row.dispatch), supplement)
            row.dispatch = merged.model_dump(mode="json")
            row.updated_at = datetime.now(UTC)
            return _view(row)

    def items(self, state: str) -> list[ManualItem]:
        """The department's items in `state`, the longest waiting first."""
        with self._database.transaction() as session:
            rows = session.scalars(
                select(ManualItemRow)
                .where(ManualItemRow.department == self.department, ManualItemRow.state == state)
                .order_by(ManualItemRow.created_at)
            )
            return [_view(row) for row in rows]

    def dispatch(self, item_id: uuid.UUID) -> ItemDispatch | Refusal:
        """What staff work from: the dispatch with every supplement merged in."""
        with self._database.transaction() as session:
            row = self._own(session.get(ManualItemRow, item_id))
            if row is None:
                return Refusal.NOT_IN_QUEUE
            return ItemDispatch.model_validate(row.dispatch)

    def claim(
        self, item_id: uuid.UUID, staff: str, *, actor: str | None = None
    ) -> ManualItem | Refusal | Taken:
        """Take the item for `staff`, who may claim it again (a retried request);
        `actor` (staff and their token) is audited."""
        with self._database.transaction() as session:
            row = self._own(session.get(ManualItemRow, item_id, with_for_update=True))
            if row is None:
                return Refusal.NOT_IN_QUEUE
            if row.state == ManualItemState.DONE or row.claimed_by not in (None, staff):
                return Taken(_view(row))
            row.state = ManualItemState.CLAIMED
            row.claimed_by, row.updated_at = staff, datetime.now(UTC)
            self._audit(session, row, actor or staff, audit.AuditEvent.CLAIMED, "claimed")
            return _view(row)

    def decide(
        self, item_id: uuid.UUID, result: OutcomeResult, staff: str, *, actor: str | None = None
    ) -> ManualItem | Refusal:
        """Answer the item's dispatch with `result`, through the outbox, as `staff`: an
        item another staff member claimed is theirs to decide; an unclaimed one becomes
        the decider's."""
        with self._database.transaction() as session:
            row = self._own(session.get(ManualItemRow, item_id, with_for_update=True))
            if row is None:
                return Refusal.NOT_IN_QUEUE
            if row.state == ManualItemState.DONE:
                return Refusal.DECIDED
            if row.claimed_by not in (None, staff):
                return Refusal.CLAIMED_BY_OTHER
            row.claimed_by, row.state = staff, ManualItemState.CLAIMED
            self._audit(session, row, actor or staff, audit.AuditEvent.DECIDED, result.status)
            outcome = ItemOutcome.answering(ItemDispatch.model_validate(row.dispatch), result)
            enqueue(
                session,
                exchange=topology.OUTCOMES_EXCHANGE,
                routing_key=topology.outcome_routing_key(self.department),
                message=outcome,
            )
            # Acceptance, a correction request and a clock notice leave it with its staff.
            if not isinstance(result, Accepted | CorrectionRequested | ClockNotice):
                row.state = ManualItemState.DONE
            row.updated_at = datetime.now(UTC)
            item = _view(row)
        return item

    @staticmethod
    def _audit(
        session: Session, row: ManualItemRow, actor: str, event: audit.AuditEvent, outcome: str
    ) -> None:
        dispatch = ItemDispatch.model_validate(row.dispatch)
        audit.record(
            session,
            actor=actor,
            event=event,
            outcome=outcome,
            bundle_id=dispatch.bundle_id,
            item=dispatch.item,
            message_id=dispatch.message_id,
        )

    def _own(self, row: ManualItemRow | None) -> ManualItemRow | None:
        return row if row is not None and row.department == self.department else None


def merge(filed: ItemDispatch, supplement: ItemSupplement) -> ItemDispatch:
    """The filed dispatch with what the supplement adds that it lacks. Once its
    prerequisites' results are in, a pre-reviewed item is reviewed in full."""
    known_results = {done.item for done in filed.prerequisite_results}
    known_materials = {material.sha256 for material in filed.materials}
    return filed.model_copy(
        update={
            "prerequisite_results": filed.prerequisite_results
            + tuple(r for r in supplement.prerequisite_results if r.item not in known_results),
            "materials": filed.materials
            + tuple(m for m in supplement.materials if m.sha256 not in known_materials),
            "pre_review": filed.pre_review
            and supplement.purpose is not SupplementPurpose.PREREQUISITES,
        }
    )


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
