"""Append-only rows (timeline steps, audit records), written set-based at commit.

Such a row is never changed, and no transaction reads back the ones it writes (the
timeline and the audit log are read in transactions of their own). So a writer
appends the row's values to its session, and one INSERT per table writes everything
the transaction appended, just before it commits: the rows still commit, or roll back,
with the change they describe, in the order they were appended, without an ORM object
and a unit-of-work pass per row, nor a flush per row.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Table, event
from sqlalchemy.orm import Session, SessionTransaction

_APPENDED = "lianban_appended_rows"


def append(session: Session, table: Table, values: dict[str, Any]) -> None:
    """Add a row to `table` when `session` commits."""
    session.info.setdefault(_APPENDED, {}).setdefault(table, []).append(values)


@event.listens_for(Session, "before_commit")
def _write_appended(session: Session) -> None:
    appended: dict[Table, list[dict[str, Any]]] = session.info.pop(_APPENDED, {})
    if appended:
        connection = session.connection()
        for table, rows in appended.items():
            connection.execute(table.insert(), rows)


@event.listens_for(Session, "after_soft_rollback")
def _discard_appended(session: Session, _previous: SessionTransaction) -> None:
    session.info.pop(_APPENDED, None)
