"""Persistence: tables, engine set-up for SQLite and PostgreSQL, Alembic migrations."""

from router.store.engine import Database
from router.store.tables import (
    OPEN_BUNDLE,
    OPEN_ITEM,
    AuditChainRow,
    AuditRow,
    Base,
    BundleRow,
    CallbackRow,
    DeadlineAlertRow,
    DecisionPollRow,
    EventRow,
    HandoverRow,
    InboxRow,
    ItemRow,
    ManualItemRow,
    NoticeRow,
    OutboxRow,
    ReplyRow,
)

__all__ = [
    "OPEN_BUNDLE",
    "OPEN_ITEM",
    "AuditChainRow",
    "AuditRow",
    "Base",
    "BundleRow",
    "CallbackRow",
    "Database",
    "DeadlineAlertRow",
    "DecisionPollRow",
    "EventRow",
    "HandoverRow",
    "InboxRow",
    "ItemRow",
    "ManualItemRow",
    "NoticeRow",
    "OutboxRow",
    "ReplyRow",
]
