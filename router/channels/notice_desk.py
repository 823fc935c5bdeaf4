"""Issues the notices the correlator records (router.domain.notices): renders the
受理通知书 or 不予受理决定书, keeps the PDF in the material store, and in ONE transaction
marks the notice issued and writes everything that tells of it: the AMQP message (outbox),
the callback row, the applicant's message (短信告知) and the timeline steps. The file
drop and pull read the issued notice (router.channels.filedrop_notices, the API).

Never lost: the notice row was committed with the item's state, and stays unissued until
this transaction commits. Never twice: rows are claimed with SKIP LOCKED and issued once;
a crash before the commit renders the same bytes again (the PDF is invariant), stored
under the same SHA-256.
"""

from __future__ import annotations

import threading
import uuid
from dataclasses import dataclass

import structlog
from sqlalchemy import Connection, Integer, Table, bindparam, select
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from contracts import topology
from contracts.api import TimelineEvent
from contracts.catalog import Catalog
from contracts.messages import AcceptanceNotice, NoticeDecision
from router.channels.notice_document import NoticeFacts, NoticeRenderer, chinese_date
from router.domain.catalogs import CatalogShelf, shelf_of
from router.domain.notices import notice_message
from router.domain.progress import tell_platform
from router.domain.workdays import china_date
from router.store import ApplicantMessageRow, BundleRow, Database, ItemRow, NoticeRow
from router.store.appended import append
from router.store.detached import detached, read_rows, write_back
from router.store.timeline import Actor, record_event
from runtime import clock
from runtime.batches import drain_batches
from runtime.storage import MaterialStore
from runtime.tracing import handling

log = structlog.get_logger(__name__)

_MESSAGE_NAMESPACE = uuid.UUID("2b0f7f3e-5d0c-4c56-9f0e-7f1d3c9a6b21")
NO_GATEWAY = "未发送短信：未配置短信网关（LIANBAN_SMS_GATEWAY_URL）"
NO_MOBILE = "未发送短信：申请人未留手机号码"
_APPLICANT_MESSAGES: Table = ApplicantMessageRow.__table__  # type: ignore[assignment]


class NoticeDesk:
    def __init__(
        self,
        database: Database,
        catalog: Catalog | CatalogShelf,
        materials: MaterialStore,
        renderer: NoticeRenderer,
        *,
        message_channel: str | None,
        idle_seconds: float = 0.2,
        batch_size: int = 20,
    ) -> None:
        """`message_channel`: the notifier the applicant's messages go through (`sms`), or
        None when none is configured (the timeline then says no message was sent)."""
        self._database = database
        self._catalogs = shelf_of(catalog)
        self._materials = materials
        self._renderer = renderer
        self._channel = message_channel
        self._idle = idle_seconds
        self._batch_size = batch_size

    def run(self, stop: threading.Event) -> None:
        drain_batches(
            stop,
            self.issue_due,
            batch_size=self._batch_size,
            idle_seconds=self._idle,
            failed_event="notices.failed",
        )

    def issue_due(self) -> int:
        """Issue a batch of recorded notices, oldest first; returns how many."""
        with self._database.transaction() as session:
            connection = session.connection()
            claimed = _claimed(connection, self._batch_size)
            for row, bundle in claimed:
                # The bundle's trace goes on: the notice's publish is a child of this span.
                with handling("notices.issue", _Traced(row), {"traceparent": row.traceparent}):
                    self._issue(session, row, bundle)
            # Each notice's document and issued_at.
            write_back(connection, changed=[row for row, _ in claimed])
        return len(claimed)

    def _issue(self, session: Session, row: NoticeRow, bundle: BundleRow) -> None:
        applicant = bundle.application["applicant"]
        catalog = self._catalogs.for_bundle(bundle)
        facts = self._facts(row, bundle, applicant["name"], catalog)
        document = self._materials.keep(
            self._renderer.render(facts),
            media_type="application/pdf",
            file_name=f"{bundle.project_no}-{row.item}-{row.decision}.pdf",
            name=facts.title,
            made_here=True,  # parsing back the PDF just rendered was a sixth of its CPU
        )
        row.document = document.model_dump(mode="json")
        row.issued_at = clock.now()
        notice = notice_message(row, bundle, catalog)
        tell_platform(session, bundle, notice, topology.acceptance_routing_key(bundle.bundle_type))
        record_event(
            session,
            bundle.id,
            row.item,
            TimelineEvent.NOTICE_ISSUED,
            f"{facts.title}（{notice.department_name_zh}）{document.sha256}",
            actor=Actor.ROUTER,
        )
        self._tell_applicant(session, notice, applicant.get("mobile"))
        log.info("notice.issued", bundle_id=str(bundle.id), item=row.item, decision=row.decision)

    def _tell_applicant(
        self, session: Session, notice: AcceptanceNotice, mobile: str | None
    ) -> None:
        """短信告知: a message row for the sender (written at commit, as the timeline is),
        or a timeline step saying why none."""
        if self._channel is None or mobile is None:
            record_event(
                session,
                notice.bundle_id,
                notice.item,
                TimelineEvent.APPLICANT_NOT_MESSAGED,
                NO_GATEWAY if self._channel is None else NO_MOBILE,
                actor=Actor.ROUTER,
            )
            return
        now = clock.now()
        append(
            session,
            _APPLICANT_MESSAGES,
            {
                "id": uuid.uuid5(_MESSAGE_NAMESPACE, f"{notice.message_id}:{self._channel}"),
                "bundle_id": notice.bundle_id,
                "item": notice.item,
                "channel": self._channel,
                "recipient": mobile,
                "text": message_text(notice),
                "attempts": 0,
                "next_attempt_at": now,
                "sent_at": None,
                "last_error": None,
                "created_at": now,
            },
        )

    def _facts(
        self, row: NoticeRow, bundle: BundleRow, applicant_name: str, catalog: Catalog
    ) -> NoticeFacts:
        item = next(item for item in bundle.items if item.code == row.item)
        department = catalog.departments.get(row.department)
        bundle_type = catalog.bundle_types.get(bundle.bundle_type)
        service = catalog.services.get(item.service)
        return NoticeFacts(
            decision=NoticeDecision(row.decision),
            department_name_zh=department.name_zh if department else row.department,
            item_name_zh=item.name_zh,
            bundle_name_zh=bundle_type.name_zh if bundle_type else bundle.bundle_type,
            project_no=bundle.project_no,
            receipt_no=row.receipt_no,
            applicant_name=applicant_name,
            applied_on=china_date(bundle.received_at),
            decided_on=china_date(row.decided_at),
            reason=row.reason,
            legal_basis=row.legal_basis,
            promise_days=service.promise_days if service else None,
            decide_by=row.decide_by,
        )


# The notices are claimed with their bundles and items in one statement, read with Core
# into rows in no session (router.store.detached), and written back by key: the ORM's
# loading, and its unit of work at commit, cost more than the statements themselves.
_NOTICES: Table = NoticeRow.__table__  # type: ignore[assignment]
_BUNDLES: Table = BundleRow.__table__  # type: ignore[assignment]
_ITEMS: Table = ItemRow.__table__  # type: ignore[assignment]
_BATCH_SIZE = "batch_size"
# Only the columns a notice states or is routed by.
_NOTICE_KEYS = (
    "id",
    "bundle_id",
    "item",
    "decision",
    "department",
    "receipt_no",
    "reason",
    "legal_basis",
    "decided_at",
    "decide_by",
    "document",
    "issued_at",
    "traceparent",
)
_BUNDLE_KEYS = (
    "id",
    "project_no",
    "bundle_type",
    "application",
    "received_at",
    "catalog_version",
    "catalog_region",
)
_ITEM_KEYS = ("bundle_id", "code", "name_zh", "service")
_BUNDLE_AT = len(_NOTICE_KEYS)
_ITEM_AT = _BUNDLE_AT + len(_BUNDLE_KEYS)
_CLAIM = (
    select(
        *(_NOTICES.c[key] for key in _NOTICE_KEYS),
        *(_BUNDLES.c[key] for key in _BUNDLE_KEYS),
        *(_ITEMS.c[key] for key in _ITEM_KEYS),
    )
    .select_from(_NOTICES)
    .join(_BUNDLES, _BUNDLES.c.id == _NOTICES.c.bundle_id)
    .join(_ITEMS, (_ITEMS.c.bundle_id == _NOTICES.c.bundle_id) & (_ITEMS.c.code == _NOTICES.c.item))
    .where(_NOTICES.c.issued_at.is_(None))
    .order_by(_NOTICES.c.created_at)
    .limit(bindparam(_BATCH_SIZE, type_=Integer))
    .with_for_update(of=_NOTICES, skip_locked=True)
)
"""Competing desks each claim notices no other holds (SKIP LOCKED), until they commit.
Only the notices are locked (OF): a correlator holding a bundle neither holds up nor hides
its notices."""


def _claimed(connection: Connection, batch_size: int) -> list[tuple[NoticeRow, BundleRow]]:
    """The notices claimed, oldest first, each with its bundle. A bundle's items are
    those of its notices in the batch: all a notice reads of them."""
    claimed = []
    bundles: dict[uuid.UUID, BundleRow] = {}
    items: dict[uuid.UUID, list[ItemRow]] = {}
    for values in read_rows(connection, _CLAIM, {_BATCH_SIZE: batch_size}):
        notice = detached(NoticeRow, dict(zip(_NOTICE_KEYS, values[:_BUNDLE_AT], strict=True)))
        if notice.bundle_id not in bundles:
            bundle_values = values[_BUNDLE_AT:_ITEM_AT]
            bundles[notice.bundle_id] = detached(
                BundleRow, dict(zip(_BUNDLE_KEYS, bundle_values, strict=True))
            )
            items[notice.bundle_id] = []
        item_values = values[_ITEM_AT:]
        items[notice.bundle_id].append(
            detached(ItemRow, dict(zip(_ITEM_KEYS, item_values, strict=True)))
        )
        claimed.append((notice, bundles[notice.bundle_id]))
    for bundle_id, bundle in bundles.items():
        set_committed_value(bundle, "items", items[bundle_id])
    return claimed


@dataclass(frozen=True)
class _Traced:
    """A notice as the tracing helpers name a message (runtime.tracing.BundleMessage)."""

    row: NoticeRow

    @property
    def bundle_id(self) -> uuid.UUID:
        return self.row.bundle_id

    @property
    def item(self) -> str:
        return self.row.item

    @property
    def department(self) -> str:
        return self.row.department

    @property
    def message_id(self) -> uuid.UUID:
        return self.row.id


def message_text(notice: AcceptanceNotice) -> str:
    """The SMS: who decided what, and the case number to ask about it by."""
    case = f"办件编号{notice.project_no}"
    if notice.receipt_no:
        case += f"，受理编号{notice.receipt_no}"
    if notice.decision is NoticeDecision.ACCEPTED:
        promise = f"，承诺于{chinese_date(notice.decide_by)}前办结" if notice.decide_by else ""
        return (
            f"【一件事一次办】您申请的“{notice.item_name_zh}”已由{notice.department_name_zh}"
            f"受理（{case}）{promise}。受理通知书可在政务服务平台查看。"
        )
    return (
        f"【一件事一次办】您申请的“{notice.item_name_zh}”经{notice.department_name_zh}审查"
        f"不予受理（{case}），理由：{notice.reason}。不予受理决定书由政务服务中心发证窗口送达。"
    )
