"""Persistence: tables, engine set-up for SQLite and PostgreSQL, Alembic migrations."""

from router.store.engine import Database
from router.store.tables import (
    OPEN_ITEM,
    AuditChainRow,
    AuditRow,
    Base,
    BundleRow,
    CallbackRow,
    DecisionPollRow,
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
    "DecisionPollRow",
    "EventRow",
    "InboxRow",
    "ItemRow",
    "ManualItemRow",
    "OutboxRow",
    "ReplyRow",
]
