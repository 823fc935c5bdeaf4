"""Read views of a bundle: its status with every item and timeline, its reply, and the
files it may hand out."""

from __future__ import annotations

import uuid
from collections import defaultdict
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.api import (
    AlertLevel,
    BundleStatus,
    CallbackStatus,
    DeadlineAlert,
    DeadlineKind,
    DecisionPoll,
    DeliveryTrouble,
    ItemPromise,
    ItemStatus,
    TimelineEntry,
)
from contracts.application import MaterialRef
from contracts.catalog import Catalog, promised_working_days
from contracts.messages import BundleReply, CircuitState, ItemState, TroubleKind
from router.domain.catalogs import CatalogShelf, shelf_of
from router.domain.handovers import handover_status, handovers_of
from router.domain.notices import notice_documents
from router.domain.progress import certificates_of, tolerated_gaps
from router.domain.timekeeping import bundle_clock, deadlines, item_clock
from router.domain.workdays import working_calendar
from router.store import (
    BundleRow,
    CallbackRow,
    DeadlineAlertRow,
    DecisionPollRow,
    EventRow,
    ItemRow,
    ReplyRow,
)
from runtime import clock


def _decision_poll(row: DecisionPollRow | None) -> DecisionPoll | None:
    if row is None:
        return None
    return DecisionPoll(
        department_answer=row.last_answer,
        answered_at=row.last_answer_at,
        pending_since=row.pending_since,
        last_poll_at=row.last_poll_at,
        next_poll_at=row.next_poll_at,
        polls=row.polls,
    )


def _trouble(item: ItemRow) -> DeliveryTrouble | None:
    """Why an open item's department has not answered, as its adapter last reported."""
    if item.trouble is None or ItemState(item.state).is_final:
        return None
    assert item.trouble_at is not None and item.circuit is not None
    return DeliveryTrouble(
        state=TroubleKind(item.trouble),
        attempts=item.trouble_attempt or 1,
        next_retry_at=item.next_retry_at,
        last_error=item.last_error or "",
        circuit=CircuitState(item.circuit),
        reported_at=item.trouble_at,
    )


def bundle_promise(catalog: Catalog, bundle: BundleRow) -> int:
    """The bundle's promised working days, from the catalog's limits of its items."""
    bundle_type = catalog.bundle_types[bundle.bundle_type]
    return promised_working_days(catalog, bundle_type, (item.code for item in bundle.items))


def item_promise(catalog: Catalog, item: ItemRow) -> ItemPromise:
    service = catalog.services[item.service]
    return ItemPromise(
        item=item.code, handling_class=service.handling_class, promise_days=service.promise_days
    )


def bundle_status(
    session: Session, bundle_id: uuid.UUID, catalogs: Catalog | CatalogShelf
) -> BundleStatus | None:
    bundle = session.get(BundleRow, bundle_id)
    if bundle is None:
        return None
    catalog = shelf_of(catalogs).for_bundle(bundle)
    calendar, now = working_calendar(), clock.now()
    alerts = _alerts(session, bundle_id)
    promise = bundle_clock(bundle)
    return BundleStatus(
        bundle_id=bundle.id,
        project_no=bundle.project_no,
        bundle_type=bundle.bundle_type,
        state=bundle.state,
        received_at=bundle.received_at,
        replied_at=bundle.replied_at,
        promised_working_days=bundle_promise(catalog, bundle),
        due_at=bundle.due_at,
        clock=None if promise is None else promise.status(calendar, now, bundle.due_at),
        alerts=alerts.get("", ()),
        items=tuple(
            ItemStatus(
                item=item.code,
                name_zh=item.name_zh,
                department=item.department,
                state=ItemState(item.state),
                reason=item.reason,
                updated_at=item.updated_at,
                handling_class=catalog.services[item.service].handling_class,
                promise_days=catalog.services[item.service].promise_days,
                accept_due_at=item.accept_due_at,
                decide_due_at=item.decide_due_at,
                overdue=_overdue(item, now),
                clocks=tuple(
                    kept.status(calendar, now, due)
                    for kept, due in (
                        (item_clock(item, DeadlineKind.ACCEPTANCE), item.accept_due_at),
                        (item_clock(item, DeadlineKind.DECISION), item.decide_due_at),
                    )
                    if kept is not None
                ),
                alerts=alerts.get(item.code, ()),
                tolerated_gaps=tolerated_gaps(item),
                decision_poll=None
                if ItemState(item.state).is_final  # its row goes at the scheduler's next round
                else _decision_poll(item.decision_poll),
                trouble=_trouble(item),
            )
            for item in bundle.items
        ),
        timeline=tuple(bundle_timeline(session, bundle_id)),
        callbacks=tuple(
            CallbackStatus(
                kind=row.kind,
                url=row.url,
                attempts=row.attempts,
                delivered_at=row.delivered_at,
                next_attempt_at=row.next_attempt_at,
                last_error=row.last_error,
            )
            for row in session.scalars(
                select(CallbackRow)
                .where(CallbackRow.bundle_id == bundle_id)
                .order_by(CallbackRow.id)
            )
        ),
        handovers=tuple(map(handover_status, handovers_of(session, bundle_id))),
    )


def _overdue(item: ItemRow, now: datetime) -> DeadlineKind | None:
    """The most telling deadline an open item is past: its decision's before the rest."""
    if ItemState(item.state).is_final:
        return None
    past = {kind for kind, due, _ in deadlines(item) if due < now}
    return next((kind for kind in DeadlineKind if kind in past), None)


def _alerts(session: Session, bundle_id: uuid.UUID) -> dict[str, tuple[DeadlineAlert, ...]]:
    """The bundle's alerts by item code ("" for the bundle's own), oldest first."""
    alerts: dict[str, list[DeadlineAlert]] = defaultdict(list)
    rows = session.scalars(
        select(DeadlineAlertRow)
        .where(DeadlineAlertRow.bundle_id == bundle_id)
        .order_by(DeadlineAlertRow.id)
    )
    for row in rows:
        alerts[row.item].append(
            DeadlineAlert(
                kind=DeadlineKind(row.kind),
                level=AlertLevel(row.level),
                due_at=row.due_at,
                raised_at=row.raised_at,
            )
        )
    return {item: tuple(found) for item, found in alerts.items()}


def bundle_timeline(session: Session, bundle_id: uuid.UUID) -> list[TimelineEntry]:
    """Every step of the bundle (全程留痕), oldest first."""
    events = session.scalars(
        select(EventRow).where(EventRow.bundle_id == bundle_id).order_by(EventRow.id)
    )
    return [
        TimelineEntry(
            at=event.at, item=event.item, state=event.state, detail=event.detail, actor=event.actor
        )
        for event in events
    ]


def find_bundle(session: Session, key: str) -> uuid.UUID | None:
    """The bundle with this id or case number (办件编号)."""
    try:
        bundle_id = uuid.UUID(key)
    except ValueError:
        return session.scalar(select(BundleRow.id).where(BundleRow.project_no == key))
    return bundle_id if session.get(BundleRow, bundle_id) is not None else None


def bundle_reply(
    session: Session, bundle_id: uuid.UUID, version: int | None = None
) -> BundleReply | None:
    """The bundle's reply: its newest version, or `version`."""
    query = select(ReplyRow).where(ReplyRow.bundle_id == bundle_id)
    if version is not None:
        query = query.where(ReplyRow.version == version)
    row = session.scalars(query.order_by(ReplyRow.version.desc()).limit(1)).first()
    return None if row is None else BundleReply.model_validate(row.body)


def bundle_file(session: Session, bundle_id: uuid.UUID, sha256: str) -> MaterialRef | None:
    """The file `sha256` as the bundle references it: a material of its application
    (corrections included), the file of a certificate one of its items was decided
    with, or a 受理 / 不予受理 notice it was issued. None when the bundle references no
    such file: a digest alone opens nothing."""
    bundle = session.get(BundleRow, bundle_id)
    if bundle is None:
        return None
    materials = (MaterialRef.model_validate(raw) for raw in bundle.application["materials"])
    certificates = (
        certificate.file
        for item in bundle.items
        for certificate in certificates_of(item)
        if certificate.file is not None
    )
    notices = notice_documents(session, bundle_id)
    return next(
        (ref for ref in (*materials, *certificates, *notices) if ref.sha256 == sha256), None
    )
