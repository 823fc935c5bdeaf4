"""The ops page's bundle list (Temporal's and Flower's first screen): bundles filtered by
state, bundle type, department, overdue and the China date they were received, newest
first, one page at a time. Bundles and their items are counted apart: one newborn bundle
is one 一件事 and five 事项, never five of either.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta

from pydantic import BaseModel
from sqlalchemy import ColumnElement, and_, exists, func, or_, select, true
from sqlalchemy.orm import aliased

from contracts.api import BundleState
from contracts.catalog import Catalog
from contracts.messages import ItemState
from router.store import BundleRow, Database, ItemRow

CHINA = timedelta(hours=8)  # the filter's dates are China dates
# The filters' subqueries read items under their own name: the item count joins `items` too.
ANY_ITEM = aliased(ItemRow)


@dataclass(frozen=True)
class BundleFilter:
    state: BundleState | None = None
    bundle_type: str | None = None
    department: str | None = None
    overdue: bool | None = None
    since: date | None = None  # China dates, both included
    until: date | None = None


class BundleListEntry(BaseModel):
    bundle_id: uuid.UUID
    project_no: str
    bundle_type: str
    bundle_type_zh: str
    state: BundleState
    received_at: datetime
    due_at: datetime | None
    overdue: bool
    items: int
    open_items: int
    departments: list[str]


class BundlePage(BaseModel):
    page: int
    page_size: int
    bundles_total: int  # 一件事 matching the filter
    items_total: int  # their 事项, counted apart
    bundles: list[BundleListEntry]


def bundle_page(
    database: Database, catalog: Catalog, where: BundleFilter, page: int, page_size: int
) -> BundlePage:
    """One page of the bundles matching `where`, newest first (page 1 is the first)."""
    now = datetime.now(UTC)
    condition = and_(true(), *_conditions(where, now))
    with database.transaction() as session:
        bundles_total = session.scalar(select(func.count()).select_from(BundleRow).where(condition))
        items_total = session.scalar(
            select(func.count())
            .select_from(ItemRow)
            .join(BundleRow, BundleRow.id == ItemRow.bundle_id)
            .where(condition)
        )
        rows = session.scalars(
            select(BundleRow)
            .where(condition)
            .order_by(BundleRow.received_at.desc(), BundleRow.id)
            .offset((page - 1) * page_size)
            .limit(page_size)
        ).all()
        entries = [_entry(bundle, catalog, now) for bundle in rows]
    return BundlePage(
        page=page,
        page_size=page_size,
        bundles_total=bundles_total or 0,
        items_total=items_total or 0,
        bundles=entries,
    )


def _conditions(where: BundleFilter, now: datetime) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if where.state is not None:
        conditions.append(BundleRow.state == where.state.value)
    if where.bundle_type:
        conditions.append(BundleRow.bundle_type == where.bundle_type)
    if where.department:
        of_department = and_(
            ANY_ITEM.bundle_id == BundleRow.id, ANY_ITEM.department == where.department
        )
        conditions.append(exists().where(of_department))
    if where.overdue is not None:
        conditions.append(_overdue(now) if where.overdue else ~_overdue(now))
    if where.since is not None:
        conditions.append(BundleRow.received_at >= _china_midnight(where.since))
    if where.until is not None:
        conditions.append(BundleRow.received_at < _china_midnight(where.until + timedelta(days=1)))
    return conditions


def _overdue(now: datetime) -> ColumnElement[bool]:
    """Open and past a live deadline: its own promise or one of its items' (the due
    columns hold live deadlines only)."""
    item_past_due = exists().where(
        ANY_ITEM.bundle_id == BundleRow.id,
        or_(ANY_ITEM.accept_due_at < now, ANY_ITEM.decide_due_at < now, ANY_ITEM.gap_due_at < now),
    )
    return and_(
        BundleRow.state == BundleState.IN_PROGRESS.value,
        or_(BundleRow.due_at < now, item_past_due),
    )


def _entry(bundle: BundleRow, catalog: Catalog, now: datetime) -> BundleListEntry:
    open_items = [item for item in bundle.items if not _final(item)]
    past_due = [
        due
        for item in bundle.items
        for due in (item.accept_due_at, item.decide_due_at, item.gap_due_at)
        if due is not None and due < now
    ]
    in_progress = bundle.state == BundleState.IN_PROGRESS.value
    bundle_past_due = bundle.due_at is not None and bundle.due_at < now
    return BundleListEntry(
        bundle_id=bundle.id,
        project_no=bundle.project_no,
        bundle_type=bundle.bundle_type,
        bundle_type_zh=catalog.bundle_type_names().get(bundle.bundle_type, bundle.bundle_type),
        state=BundleState(bundle.state),
        received_at=bundle.received_at,
        due_at=bundle.due_at,
        overdue=in_progress and (bundle_past_due or bool(past_due)),
        items=len(bundle.items),
        open_items=len(open_items),
        departments=sorted({item.department for item in bundle.items}),
    )


def _final(item: ItemRow) -> bool:
    return ItemState(item.state).is_final


def _china_midnight(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC) - CHINA
