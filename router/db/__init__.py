"""Persistence: tables, engine set-up for SQLite and PostgreSQL, Alembic migrations."""

from router.db.engine import Database
from router.db.tables import (
    OPEN_ITEM,
    AuditChainRow,
    AuditRow,
    Base,
    BundleRow,
    CallbackRow,
    EventRow,
    InboxRow,
    ItemRow,
    ManualItemRow,
    OutboxRow,
    ReplyRow,
)

__all__ = [
    "OPEN_ITEM",
    "AuditChainRow",
    "AuditRow",
    "Base",
    "BundleRow",
    "CallbackRow",
    "Database",
    "EventRow",
    "InboxRow",
    "ItemRow",
    "ManualItemRow",
    "OutboxRow",
    "ReplyRow",
]
