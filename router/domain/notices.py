"""受理 and 不予受理 become notices: a row written with the item's new state, in the
correlator's transaction, so a decision recorded is a notice to issue and a redelivered
outcome (dropped by the inbox) issues nothing. `router.channels.notice_desk` renders and
pushes it.

Seed 001 附件3 (三): "各联办部门…应当在1个工作日内依法作出受理或不予受理决定，实时推送至省
一体化政务服务平台。予以受理的，出具受理通知书并短信告知申请人受理相关信息…不予受理的，制作
不予受理决定书，列明不予受理的具体理由…并发送短信告知。"
"""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import Table, select
from sqlalchemy.orm import Session

from contracts.application import MaterialRef
from contracts.catalog import Catalog
from contracts.ids import new_id
from contracts.messages import AcceptanceNotice, Accepted, NoticeDecision, Rejected
from router.domain.workdays import china_date
from router.store import BundleRow, ItemRow, NoticeRow
from router.store.appended import append
from router.store.engine import insert_skipping_conflicts
from runtime.tracing import current_traceparent

ACCEPTANCE_BASIS = (
    "《中华人民共和国行政许可法》第三十二条第一款第（五）项："
    "申请事项属于本行政机关职权范围，申请材料齐全、符合法定形式，行政机关应当受理行政许可申请"
)
REJECTION_BASIS = (
    "《中华人民共和国行政许可法》第三十二条：行政机关受理或者不予受理行政许可申请，"
    "应当出具加盖本行政机关专用印章和注明日期的书面凭证"
)
"""Cited when the department names no provision of its own (`Rejected.legal_basis`)."""


_NOTICES: Table = NoticeRow.__table__  # type: ignore[assignment]
_RECORD_ONCE = insert_skipping_conflicts(_NOTICES)  # a decision ux_notices_once holds


def record_notice(
    session: Session,
    bundle: BundleRow,
    item: ItemRow,
    result: Accepted | Rejected,
    decided_at: datetime,
) -> None:
    """The item's 受理 or 不予受理, once: an item accepted again after a 补齐补正 was
    accepted already, and its notice stands. Written at commit with the batch's other
    notices in one INSERT that skips a decision the item has (`ux_notices_once`): no
    lookup, and no flush, per notice."""
    decision = NoticeDecision.ACCEPTED if isinstance(result, Accepted) else NoticeDecision.REJECTED
    if isinstance(result, Rejected):
        reason, basis = result.reason, result.legal_basis or REJECTION_BASIS
    else:
        reason, basis = None, ACCEPTANCE_BASIS
    append(
        session,
        _RECORD_ONCE[session.get_bind().dialect.name],
        {
            "id": new_id(),
            "bundle_id": bundle.id,
            "item": item.code,
            "decision": decision.value,
            "department": item.department,
            "receipt_no": item.receipt_no,
            "reason": reason,
            "legal_basis": basis,
            "decided_at": decided_at,
            "decide_by": None if item.decide_due_at is None else china_date(item.decide_due_at),
            "document": None,
            "created_at": decided_at,
            "issued_at": None,
            "exported_at": None,
            "traceparent": current_traceparent(),
        },
    )


def notice_message(row: NoticeRow, bundle: BundleRow, catalog: Catalog) -> AcceptanceNotice:
    """The notice as the platform receives it (pushed, published, exported and pulled
    alike); only an issued notice has its document."""
    if row.document is None:
        raise ValueError(f"notice {row.id} is not issued yet")
    item = next(item for item in bundle.items if item.code == row.item)
    department = catalog.departments.get(row.department)
    return AcceptanceNotice(
        message_id=row.id,
        bundle_id=bundle.id,
        project_no=bundle.project_no,
        bundle_type=bundle.bundle_type,
        item=item.code,
        item_name_zh=item.name_zh,
        department=row.department,
        department_name_zh=department.name_zh if department else row.department,
        decision=NoticeDecision(row.decision),
        receipt_no=row.receipt_no,
        decided_at=row.decided_at,
        reason=row.reason,
        legal_basis=row.legal_basis,
        decide_by=row.decide_by,
        document=MaterialRef.model_validate(row.document),
    )


def issued_notices(session: Session, bundle: BundleRow, catalog: Catalog) -> list[AcceptanceNotice]:
    """The bundle's issued notices, oldest first."""
    rows = session.scalars(
        select(NoticeRow)
        .where(NoticeRow.bundle_id == bundle.id, NoticeRow.issued_at.is_not(None))
        .order_by(NoticeRow.issued_at, NoticeRow.id)
    )
    return [notice_message(row, bundle, catalog) for row in rows]


def notice_documents(session: Session, bundle_id: uuid.UUID) -> list[MaterialRef]:
    # Issued ones only: an unissued notice's document is JSON null, which IS NOT NULL
    # lets through; the document is set in the transaction that issues the notice.
    documents = session.scalars(
        select(NoticeRow.document).where(
            NoticeRow.bundle_id == bundle_id, NoticeRow.issued_at.is_not(None)
        )
    )
    return [MaterialRef.model_validate(document) for document in documents]
