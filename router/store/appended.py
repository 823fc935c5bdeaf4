"""Rows a transaction only adds (timeline steps, audit records, notices, callbacks),
written set-based at commit.

The transaction that writes such a row neither changes it nor reads it back (the
timeline, the audit log, the notice desk and the callback sender read them in
transactions of their own). So a writer appends the row's values to its session, and
one multi-row INSERT per table (`_insert_many`) writes everything the transaction
appended, just before it commits: the rows still commit, or roll back, with the change
they describe, in the order they were appended, without an ORM object and a
unit-of-work pass per row, nor a flush per row. On PostgreSQL, several rows of plain
values go as one array per column instead (`router.store.unnested`).
"""

from __future__ import annotations

from functools import cache
from typing import Any

from sqlalchemy import Connection, Insert, Table, event
from sqlalchemy.orm import Session, SessionTransaction

from router.store.unnested import unnested_insert, unnests

_APPENDED = "lianban_appended_rows"


def append(session: Session, into: Table | Insert, values: dict[str, Any]) -> None:
    """Add a row to `into` when `session` commits: a table, or an INSERT of one (e.g. one
    that skips a row a unique index already holds); pass the same object for each row."""
    session.info.setdefault(_APPENDED, {}).setdefault(into, []).append(values)


@event.listens_for(Session, "before_commit")
def _write_appended(session: Session) -> None:
    appended: dict[Table | Insert, list[dict[str, Any]]] = session.info.pop(_APPENDED, {})
    if appended:
        session.flush()  # the rows they refer to first (a bundle made in this transaction)
        connection = session.connection()
        for into, rows in appended.items():
            _insert(connection, into, rows)


def _insert(connection: Connection, into: Table | Insert, rows: list[dict[str, Any]]) -> None:
    if isinstance(into, Table) and unnests(connection, into, rows):
        connection.execute(*unnested_insert(into, rows))
    elif len(rows) == 1:
        connection.execute(_insert_one(into), rows[0])
    else:
        connection.execute(_insert_many(into), rows)


def _insert_of(into: Table | Insert) -> Insert:
    return into.insert() if isinstance(into, Table) else into


@cache
def _insert_one(into: Table | Insert) -> Insert:
    """One row's INSERT, inline: without it SQLAlchemy adds a RETURNING of the generated
    key on PostgreSQL, and builds a result of it that nobody reads (measured by
    callgrind, applying 100 outcomes to 10 newborn bundles: 1% of the client's
    instructions)."""
    return _insert_of(into).inline()


@cache
def _insert_many(into: Table | Insert) -> Insert:
    """The INSERT into `into` that writes many rows as one statement: with RETURNING (of
    the keys, unread), SQLAlchemy sends one multi-row VALUES (insertmanyvalues) where the
    psycopg driver's executemany would run the statement once per row."""
    insert = _insert_of(into)
    return insert.returning(*(column for column in insert.table.c if column.primary_key))


@event.listens_for(Session, "after_soft_rollback")
def _discard_appended(session: Session, _previous: SessionTransaction) -> None:
    session.info.pop(_APPENDED, None)
