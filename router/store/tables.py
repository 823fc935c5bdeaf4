"""The router's tables. Bundle state and the messages it causes are written together.

`outbox` holds messages committed with the state change that caused them (the relay
publishes them); `inbox` holds the message ids of outcomes already applied, so a
redelivered outcome changes nothing.
"""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    Date,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    TypeDecorator,
    Uuid,
    false,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.engine import Dialect
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

from contracts.messages import FINAL_ITEM_STATES

JsonDocument = JSON().with_variant(JSONB(), "postgresql")
# SQLite autoincrements only an INTEGER PRIMARY KEY; PostgreSQL gets 64 bits.
SerialId = BigInteger().with_variant(Integer(), "sqlite")


class UtcDateTime(TypeDecorator[datetime]):
    """Any aware datetime in, the same instant out as aware UTC, on both targets.

    SQLite keeps no offset: it stores the wall clock it is given, so a value is turned
    into UTC on the way in (a +08:00 deadline was once read back 8 hours late, see
    migration 0010) and a naive value read back is UTC.
    """

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None or value.utcoffset() is None:
            raise ValueError("naive datetime: store aware UTC datetimes only")
        # SQLite keeps the wall time and drops the offset: a +08:00 deadline would come
        # back eight hours late, so every value is stored as UTC.
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value.astimezone(UTC)


class Base(DeclarativeBase):
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        datetime: UtcDateTime(),
        dict[str, Any]: JsonDocument,
    }


OPEN_BUNDLE = text("state = 'in_progress'")


class BundleRow(Base):
    __tablename__ = "bundles"
    __table_args__ = (
        Index(
            "ix_bundles_open_due",
            "due_at",
            postgresql_where=OPEN_BUNDLE,
            sqlite_where=OPEN_BUNDLE,
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    project_no: Mapped[str] = mapped_column(String(50), unique=True)
    bundle_type: Mapped[str] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(16))
    application: Mapped[dict[str, Any]]
    received_at: Mapped[datetime]
    replied_at: Mapped[datetime | None]
    clock: Mapped[dict[str, Any] | None]
    """The bundle's promise (router.domain.clocks.Clock); `due_at` is its live deadline."""
    due_at: Mapped[datetime | None]
    evidence: Mapped[dict[str, Any] | None]
    """What intake verified (router.domain.evidence.Evidence): the cited licences fetched
    into the material store, the earlier results standing for prerequisites."""
    catalog_version: Mapped[str | None] = mapped_column(String(64))
    """The catalog version it was accepted under and finishes under (None: accepted before
    versions were recorded, so the built-in one)."""
    catalog_region: Mapped[str | None] = mapped_column(String(32))
    """The region whose catalog view it was accepted under (contracts.catalog.Region)."""

    items: Mapped[list[ItemRow]] = relationship(
        back_populates="bundle", order_by="ItemRow.position", lazy="selectin"
    )


OPEN_ITEM = text(
    "state NOT IN ({})".format(", ".join(f"'{state}'" for state in sorted(FINAL_ITEM_STATES)))
)
"""An item not yet in a final state. The deadline watcher's query and the partial index
that serves it use this same literal text: PostgreSQL uses a partial index only when it
can prove the query's condition implies the index's."""


class ItemRow(Base):
    __tablename__ = "items"
    # Finished items pile up by the million; the deadline watcher looks at open ones only.
    __table_args__ = tuple(
        Index(name, column, postgresql_where=OPEN_ITEM, sqlite_where=OPEN_ITEM)
        for name, column in (
            ("ix_items_open_deadlines", "decide_due_at"),
            ("ix_items_open_accept_due", "accept_due_at"),
            ("ix_items_open_gap_due", "gap_due_at"),
        )
    )

    bundle_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bundles.id"), primary_key=True)
    code: Mapped[str] = mapped_column(String(64), primary_key=True)
    position: Mapped[int] = mapped_column(Integer)
    service: Mapped[str] = mapped_column(String(96))
    department: Mapped[str] = mapped_column(String(64))
    route: Mapped[str | None] = mapped_column(String(32))
    """`<area>.<level>` of the adapter that serves it (router.domain.routing), fixed at
    intake; None for items accepted before routes were recorded."""
    name_zh: Mapped[str] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str | None] = mapped_column(Text)
    dispatch_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    receipt_no: Mapped[str | None] = mapped_column(String(128))
    accept_clock: Mapped[dict[str, Any] | None]
    decide_clock: Mapped[dict[str, Any] | None]
    """The acceptance and decision clocks (router.domain.clocks.Clock) as JSON; the
    `*_due_at` columns hold their live deadlines (None once paused or finished), indexed
    for the deadline watcher."""
    accept_due_at: Mapped[datetime | None]
    decide_due_at: Mapped[datetime | None]
    gap_due_at: Mapped[datetime | None]
    """容缺受理: the earliest day a material accepted as missing is promised by."""
    awaiting_prerequisites: Mapped[bool] = mapped_column(server_default=false())
    """Filed for pre-review (容缺预审); its prerequisites' results are not forwarded yet."""
    tolerated_gaps: Mapped[list[dict[str, Any]] | None] = mapped_column(JsonDocument)
    result: Mapped[dict[str, Any] | None]
    """The department's decision; on a cancelled item, one that came after the cancel,
    held until the department says whether it withdrew the filing."""
    cancel_refused_at: Mapped[datetime | None]
    """When the department refused to withdraw the cancelled item: its decision stands."""
    updated_at: Mapped[datetime]
    trouble: Mapped[str | None] = mapped_column(String(16))
    """Why the department has not answered (contracts.messages.TroubleKind: retrying,
    parked), from the adapter's latest notice; cleared by the department's next answer.
    The `trouble_*`, `next_retry_at`, `last_error` and `circuit` columns go with it."""
    trouble_at: Mapped[datetime | None]
    trouble_attempt: Mapped[int | None] = mapped_column(Integer)
    next_retry_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    circuit: Mapped[str | None] = mapped_column(String(16))

    bundle: Mapped[BundleRow] = relationship(back_populates="items")
    decision_poll: Mapped[DecisionPollRow | None] = relationship(
        primaryjoin="and_(ItemRow.bundle_id == foreign(DecisionPollRow.bundle_id), "
        "ItemRow.code == foreign(DecisionPollRow.item))",
        cascade="all, delete-orphan",
    )
    """Its polling, while its department has it filed and undecided (router.domain.polling):
    loaded with the item where a batch of outcomes needs it, set to None to stop it."""


class DeadlineAlertRow(Base):
    """A 预警 or 超期 raised for one deadline; the unique index makes it once, even with
    two watchers. `item` is empty for the bundle's own promise."""

    __tablename__ = "deadline_alerts"
    __table_args__ = (
        Index(
            "ux_deadline_alerts_once", "bundle_id", "item", "kind", "level", "due_at", unique=True
        ),
    )

    id: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    bundle_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    item: Mapped[str] = mapped_column(String(64))
    department: Mapped[str | None] = mapped_column(String(64))
    kind: Mapped[str] = mapped_column(String(16))
    level: Mapped[str] = mapped_column(String(8))
    due_at: Mapped[datetime]
    raised_at: Mapped[datetime]


class OutboxRow(Base):
    __tablename__ = "outbox"
    # Only unsent rows are ever looked up; the partial index stays small as sent rows pile up.
    __table_args__ = (
        Index(
            "ix_outbox_unsent",
            "id",
            postgresql_where=text("sent_at IS NULL"),
            sqlite_where=text("sent_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    exchange: Mapped[str] = mapped_column(String(64))
    routing_key: Mapped[str] = mapped_column(String(255))
    message_id: Mapped[str] = mapped_column(String(64), unique=True)
    correlation_id: Mapped[str] = mapped_column(String(64))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    traceparent: Mapped[str | None] = mapped_column(String(55))
    """W3C trace context of the transaction that wrote the row; the relay's span continues it."""


class DecisionPollRow(Base):
    """An item its department has filed and not yet decided: polled on the department's
    schedule until it answers something other than "pending". A row, so no poll is lost
    to a restart."""

    __tablename__ = "decision_polls"

    bundle_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bundles.id"), primary_key=True)
    item: Mapped[str] = mapped_column(String(64), primary_key=True)
    department: Mapped[str] = mapped_column(String(64))
    pending_since: Mapped[datetime]
    """The department's first "pending": the schedule's phases count from it."""
    next_poll_at: Mapped[datetime | None] = mapped_column(index=True)
    """None for a department that calls back: it is waited for, never polled."""
    last_poll_at: Mapped[datetime | None]
    last_answer: Mapped[str] = mapped_column(Text)
    """The department's own words for the filing, as its last answer gave them."""
    last_answer_at: Mapped[datetime]
    filing_ref: Mapped[str | None] = mapped_column(String(128))
    polls: Mapped[int] = mapped_column(Integer)


class InboxRow(Base):
    __tablename__ = "inbox"

    message_id: Mapped[str] = mapped_column(String(64), primary_key=True)
    bundle_id: Mapped[uuid.UUID] = mapped_column(Uuid)
    processed_at: Mapped[datetime]


class ReplyRow(Base):
    """Every version of a bundle's reply: 1 is the reply, each later one corrects the one
    before it (a decision outlived a withdrawal). The newest is the one pulled."""

    __tablename__ = "replies"

    bundle_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bundles.id"), primary_key=True)
    version: Mapped[int] = mapped_column(Integer, primary_key=True, default=1)
    body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime]


class ItemNoticeRow(Base):
    """分别领取: a per-item notice (ItemNotice) as sent, kept for the file drop's export."""

    __tablename__ = "item_notices"

    id: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    bundle_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bundles.id"), index=True)
    item: Mapped[str] = mapped_column(String(64))
    body: Mapped[dict[str, Any]]
    created_at: Mapped[datetime] = mapped_column(index=True)


class EventRow(Base):
    """The bundle's timeline: every state change and every ignored outcome, in order."""

    __tablename__ = "events"

    id: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    bundle_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    item: Mapped[str | None] = mapped_column(String(64))
    state: Mapped[str] = mapped_column(String(32))
    detail: Mapped[str | None] = mapped_column(Text)
    actor: Mapped[str] = mapped_column(String(64), server_default="router")
    at: Mapped[datetime]


class ManualItemRow(Base):
    """An item filed with a department that has no system yet, waiting for its staff."""

    __tablename__ = "manual_items"
    __table_args__ = (Index("ix_manual_items_department_state", "department", "state"),)

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    department: Mapped[str] = mapped_column(String(64))
    idempotency_key: Mapped[str] = mapped_column(String(128), unique=True)
    dispatch: Mapped[dict[str, Any]]
    state: Mapped[str] = mapped_column(String(16))
    claimed_by: Mapped[str | None] = mapped_column(String(64))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]


class CallbackRow(Base):
    """A reply or notice to push to the platform's callback URL; kept until delivered."""

    __tablename__ = "callbacks"
    __table_args__ = (
        Index(
            "ix_callbacks_due",
            "next_attempt_at",
            postgresql_where=text("delivered_at IS NULL"),
            sqlite_where=text("delivered_at IS NULL"),
        ),
    )

    id: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    bundle_id: Mapped[uuid.UUID] = mapped_column(Uuid, index=True)
    url: Mapped[str] = mapped_column(Text)
    kind: Mapped[str] = mapped_column(String(16))
    body: Mapped[bytes] = mapped_column(LargeBinary)
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    delivered_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


ISSUED_NOT = text("issued_at IS NULL")


class NoticeRow(Base):
    """A 受理 or 不予受理 of one item: written with the state change by the correlator,
    then issued (its PDF rendered and kept, pushed to the platform, the applicant told)
    by `router.channels.notice_desk`. At most one of each decision per item."""

    __tablename__ = "notices"
    __table_args__ = (
        Index("ux_notices_once", "bundle_id", "item", "decision", unique=True),
        Index(
            "ix_notices_unissued",
            "created_at",
            postgresql_where=ISSUED_NOT,
            sqlite_where=ISSUED_NOT,
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    """The AcceptanceNotice's message id: the platform deduplicates by it."""
    bundle_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bundles.id"), index=True)
    item: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))
    department: Mapped[str] = mapped_column(String(64))
    receipt_no: Mapped[str | None] = mapped_column(String(128))
    reason: Mapped[str | None] = mapped_column(Text)
    legal_basis: Mapped[str] = mapped_column(Text)
    decided_at: Mapped[datetime]
    decide_by: Mapped[date | None] = mapped_column(Date)
    document: Mapped[dict[str, Any] | None]
    """The PDF's MaterialRef, once rendered and kept in the material store."""
    created_at: Mapped[datetime]
    issued_at: Mapped[datetime | None]
    exported_at: Mapped[datetime | None]
    """When the file drop's outbox got it (None without a file drop)."""
    traceparent: Mapped[str | None] = mapped_column(String(55))
    """The correlator's trace: issuing the notice continues the bundle's trace."""


class ApplicantMessageRow(Base):
    """A message to the applicant (短信告知), sent by a notifier until it takes it; its id
    is the notifier's idempotency key, so a retry after a lost answer sends nothing twice."""

    __tablename__ = "applicant_messages"
    __table_args__ = (
        Index(
            "ix_applicant_messages_due",
            "next_attempt_at",
            postgresql_where=text("sent_at IS NULL"),
            sqlite_where=text("sent_at IS NULL"),
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    bundle_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bundles.id"), index=True)
    item: Mapped[str | None] = mapped_column(String(64))
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(64))
    text: Mapped[str] = mapped_column(Text)
    attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]


COURIER_DUE = text("next_attempt_at IS NOT NULL")


class HandoverRow(Base):
    """送达: one set of results to hand to the applicant (the bundle's, or one item's for
    分别领取), by the method the application chose, until its proof (送达凭证) is recorded.

    One row per (bundle, item) — `item` is empty for the bundle's — written in the
    transaction that makes the results ready, so a redelivered reply or notice finds it
    there and asks for no second waybill. A post delivery's row is also its outbox entry:
    the courier sender claims rows whose `next_attempt_at` is due (SKIP LOCKED), asks for
    the waybill (retried with backoff) and then reads the tracking until signed for."""

    __tablename__ = "handovers"
    __table_args__ = (
        Index("ux_handovers_once", "bundle_id", "item", unique=True),
        Index(
            "ix_handovers_courier_due",
            "next_attempt_at",
            postgresql_where=COURIER_DUE,
            sqlite_where=COURIER_DUE,
        ),
    )

    id: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    bundle_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bundles.id"))
    item: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(16))
    state: Mapped[str] = mapped_column(String(24))
    ready_at: Mapped[datetime]
    courier: Mapped[str | None] = mapped_column(String(64))
    waybill_no: Mapped[str | None] = mapped_column(String(64))
    waybill_issued_at: Mapped[datetime | None]
    courier_attempts: Mapped[int] = mapped_column(Integer)
    next_attempt_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    delivered_at: Mapped[datetime | None]
    proof: Mapped[dict[str, Any] | None]


class AuditRow(Base):
    """One audit record (审计日志): a message received, sent, decided or refused.

    Writers add it unsealed (`seq`, `prev_hash` and `hash` empty) inside their own
    transaction; the sealer (`router.store.audit_chain`) later gives it its place in the hash chain.
    """

    __tablename__ = "audit_log"
    __table_args__ = (
        Index(
            "ix_audit_log_unsealed",
            "id",
            postgresql_where=text("seq IS NULL"),
            sqlite_where=text("seq IS NULL"),
        ),
        Index("ux_audit_log_seq", "seq", unique=True),
    )

    id: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    event: Mapped[str] = mapped_column(String(16))
    outcome: Mapped[str] = mapped_column(String(64))
    bundle_id: Mapped[uuid.UUID | None] = mapped_column(Uuid)
    item: Mapped[str | None] = mapped_column(String(64))
    message_id: Mapped[str | None] = mapped_column(String(64))
    detail: Mapped[str | None] = mapped_column(Text)
    seq: Mapped[int | None] = mapped_column(BigInteger)
    prev_hash: Mapped[str | None] = mapped_column(String(64))
    hash: Mapped[str | None] = mapped_column(String(64))
    writer_mac: Mapped[str | None] = mapped_column(String(64))
    """HMAC-SHA256 of the record's fields under the writers' audit key (`audit.writer_mac`)."""


class AuditChainRow(Base):
    """The chain's one state row: its head (last sealed record) and its anchor (the last
    record pruned, whose hash the first kept record covers). Sealers lock it to take turns."""

    __tablename__ = "audit_chain"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    head_seq: Mapped[int] = mapped_column(BigInteger)
    head_hash: Mapped[str] = mapped_column(String(64))
    anchor_seq: Mapped[int] = mapped_column(BigInteger)
    anchor_hash: Mapped[str] = mapped_column(String(64))
    anchored_at: Mapped[datetime | None]
    signed_from_seq: Mapped[int] = mapped_column(BigInteger, server_default=text("1"))
    """Records from this seq on must carry a writer signature (older ones predate them)."""


class RatingRow(Base):
    """好差评: one per bundle (`department` empty) and one per department rated with it;
    the unique index keeps a bundle to one rating, even when two posts race."""

    __tablename__ = "ratings"
    __table_args__ = (Index("ux_ratings_once", "bundle_id", "department", unique=True),)

    id: Mapped[int] = mapped_column(SerialId, primary_key=True, autoincrement=True)
    bundle_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bundles.id"))
    department: Mapped[str] = mapped_column(String(64))
    level: Mapped[int] = mapped_column(Integer)
    reasons: Mapped[list[str]] = mapped_column(JsonDocument)
    comment: Mapped[str | None] = mapped_column(Text)
    rated_at: Mapped[datetime]


OPEN_RECTIFICATION = text("state = 'open'")


class RectificationRow(Base):
    """整改 of one department for one bundle's 差评, open until the department replies.
    `warned_at` and `overdue_at` are its 预警 and 超期, each set once by the watcher."""

    __tablename__ = "rectifications"
    __table_args__ = (
        Index("ux_rectifications_once", "bundle_id", "department", unique=True),
        Index(
            "ix_rectifications_open_due",
            "due_at",
            postgresql_where=OPEN_RECTIFICATION,
            sqlite_where=OPEN_RECTIFICATION,
        ),
    )

    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True)
    bundle_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("bundles.id"))
    department: Mapped[str] = mapped_column(String(64))
    level: Mapped[int] = mapped_column(Integer)
    comment: Mapped[str | None] = mapped_column(Text)
    state: Mapped[str] = mapped_column(String(8))
    opened_at: Mapped[datetime]
    working_days: Mapped[int] = mapped_column(Integer)
    """Allowed from `opened_at`: `due_at` is recomputed from them with a newer calendar."""
    due_at: Mapped[datetime]
    warned_at: Mapped[datetime | None]
    overdue_at: Mapped[datetime | None]
    reply: Mapped[str | None] = mapped_column(Text)
    closed_at: Mapped[datetime | None]
    closed_by: Mapped[str | None] = mapped_column(String(128))
