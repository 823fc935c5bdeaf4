"""Persistence: tables, engine set-up for SQLite and PostgreSQL, Alembic migrations."""

from router.db.engine import Database
from router.db.tables import (
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
