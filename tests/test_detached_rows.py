"""Rows written back off the unit of work (router.store.detached): what changed, by key.

Runs on SQLite and (connected) on PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from harness import received_dispatches
from sqlalchemy import Table, event, select, text
from sqlalchemy.exc import DBAPIError

from contracts.catalog import Catalog
from router.store import Database, DecisionPollRow
from router.store.detached import detached, keyed, one_of, read_rows, write_back
from runtime.storage import LocalMaterialStore

_POLLS: Table = DecisionPollRow.__table__  # type: ignore[assignment]
AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def _stored_poll(database: Database, catalog: Catalog, tmp_path: Path) -> dict[str, object]:
    dispatch = received_dispatches(database, catalog, LocalMaterialStore(tmp_path / "m"))[0]
    values: dict[str, object] = {
        "bundle_id": dispatch.bundle_id,
        "item": dispatch.item,
        "department": dispatch.department,
        "pending_since": AT,
        "next_poll_at": AT,
        "last_poll_at": None,
        "last_answer": "审查中",
        "last_answer_at": AT,
        "filing_ref": None,
        "polls": 0,
    }
    with database.transaction() as session:
        session.connection().execute(_POLLS.insert(), values)
    return values


def test_only_the_columns_set_to_another_value_are_updated(
    database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    poll = detached(DecisionPollRow, _stored_poll(database, catalog, tmp_path))
    poll.polls = 3
    poll.last_answer = "审查中"  # set, to the value it had: not written
    updates: list[str] = []

    def keep(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        updates.extend([statement] if statement.startswith("UPDATE") else [])

    event.listen(database.engine, "before_cursor_execute", keep)
    try:
        with database.transaction() as session:
            write_back(session.connection(), changed=[poll])
    finally:
        event.remove(database.engine, "before_cursor_execute", keep)

    [update] = updates
    assert "polls" in update and "last_answer" not in update
    with database.transaction() as session:
        assert session.scalars(select(DecisionPollRow.polls)).all() == [3]


def test_a_row_dropped_and_made_anew_keeps_its_key(
    database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    """Polling stopped and started again in one batch: the old row is deleted first."""
    values = _stored_poll(database, catalog, tmp_path)
    dropped = detached(DecisionPollRow, values)
    added = DecisionPollRow(**{**values, "polls": 5})

    with database.transaction() as session:
        write_back(session.connection(), added=[added], dropped=[dropped])

    with database.transaction() as session:
        assert session.scalars(select(DecisionPollRow.polls)).all() == [5]


def test_rows_read_by_keys_come_converted_as_core_reads_them(
    database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    """On PostgreSQL off the driver's cursor: a UUID, a JSON document as is, and a
    datetime in UTC even where the session's time zone is another."""
    stored = _stored_poll(database, catalog, tmp_path)
    _stored_poll(database, catalog, tmp_path)  # another bundle's: not one of the keys
    other = uuid.uuid4()  # no bundle's
    keys = [stored["bundle_id"], other]
    statement = select(_POLLS).where(one_of(_POLLS.c.bundle_id, len(keys)))
    with database.transaction() as session:
        if database.is_postgresql:
            session.execute(text("SET LOCAL TIME ZONE 'Asia/Shanghai'"))
        [row] = read_rows(session.connection(), statement, keyed(keys))
        none = select(_POLLS).where(one_of(_POLLS.c.bundle_id, 1))
        assert read_rows(session.connection(), none, keyed([other])) == []

    values = dict(zip(_POLLS.c.keys(), row, strict=True))
    assert values == stored
    assert values["pending_since"].tzinfo is UTC


def test_a_read_the_database_refuses_raises_sqlalchemys_error(database: Database) -> None:
    """What callers tell apart (the correlator holds a batch on an OperationalError and
    parks one the database refuses), also off the driver's cursor on PostgreSQL."""
    statement = select(_POLLS).where(one_of(_POLLS.c.bundle_id, 1), text("no_such_column"))
    with pytest.raises(DBAPIError), database.transaction() as session:
        read_rows(session.connection(), statement, keyed([uuid.uuid4()]))
