"""Read views of a bundle: its status with every item and timeline, its reply, and the
files it may hand out."""

from __future__ import annotations

import uuid

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.api import BundleStatus, CallbackStatus, DecisionPoll, ItemStatus, TimelineEntry
from contracts.application import MaterialRef
from contracts.messages import BundleReply, ItemState
from router.domain.progress import certificates_of, tolerated_gaps
from router.store import BundleRow, CallbackRow, DecisionPollRow, EventRow, ReplyRow


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


def bundle_status(session: Session, bundle_id: uuid.UUID) -> BundleStatus | None:
    bundle = session.get(BundleRow, bundle_id)
    if bundle is None:
        return None
    return BundleStatus(
        bundle_id=bundle.id,
        project_no=bundle.project_no,
        bundle_type=bundle.bundle_type,
        state=bundle.state,
        received_at=bundle.received_at,
        replied_at=bundle.replied_at,
        items=tuple(
            ItemStatus(
                item=item.code,
                name_zh=item.name_zh,
                department=item.department,
                state=ItemState(item.state),
                reason=item.reason,
                updated_at=item.updated_at,
                accept_due_at=item.accept_due_at,
                decide_due_at=item.decide_due_at,
                overdue=item.overdue,
                tolerated_gaps=tolerated_gaps(item),
                decision_poll=None
                if ItemState(item.state).is_final  # its row goes at the scheduler's next round
                else _decision_poll(session.get(DecisionPollRow, (bundle.id, item.code))),
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
    )


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


def bundle_reply(session: Session, bundle_id: uuid.UUID) -> BundleReply | None:
    row = session.get(ReplyRow, bundle_id)
    return None if row is None else BundleReply.model_validate(row.body)


def bundle_file(session: Session, bundle_id: uuid.UUID, sha256: str) -> MaterialRef | None:
    """The file `sha256` as the bundle references it: a material of its application
    (corrections included) or the file of a certificate one of its items was decided
    with. None when the bundle references no such file: a digest alone opens nothing."""
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
    return next((ref for ref in (*materials, *certificates) if ref.sha256 == sha256), None)
