"""Rows written back off the unit of work (router.store.detached): what changed, by key.

Runs on SQLite and (connected) on PostgreSQL.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path

import pytest
from harness import received_dispatches
from sqlalchemy import Table, event, select, text, update
from sqlalchemy.exc import DBAPIError, StatementError

from contracts.catalog import Catalog
from router.store import Database, DecisionPollRow, ItemRow
from router.store.detached import detached, keyed, one_of, read_rows, write_back
from runtime.storage import LocalMaterialStore

_POLLS: Table = DecisionPollRow.__table__  # type: ignore[assignment]
_ITEMS: Table = ItemRow.__table__  # type: ignore[assignment]
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


def test_written_values_are_those_core_writes(
    database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    """On PostgreSQL the writes run off Core, converted by the columns' types as Core
    converts them: each change written back to one item and with Core to another sends
    the driver the same values and stores the same ones (a datetime off UTC, a JSON
    document, a JSON None stored as JSON null, a None)."""
    ours, cores = received_dispatches(database, catalog, LocalMaterialStore(tmp_path / "m"))[:2]
    shanghai = timezone(timedelta(hours=8))
    changes: list[dict[str, object]] = [
        {
            "receipt_no": "R-1",
            "accept_clock": {"started_at": "2026-03-02", "paused": ["审查中"]},
            "decide_clock": {"days": 3},
            "accept_due_at": AT.astimezone(shanghai),
        },
        {"receipt_no": None, "decide_clock": None, "accept_due_at": None},
    ]
    sent: list[object] = []  # each UPDATE's parameters, as the driver gets them

    def keep(
        _conn: object, _cursor: object, statement: str, parameters: object, *_: object
    ) -> None:
        sent.extend([parameters] if statement.startswith("UPDATE") else [])

    def stored(item: str) -> dict[str, object]:
        key = (_ITEMS.c.bundle_id == ours.bundle_id) & (_ITEMS.c.code == item)
        columns = [_ITEMS.c[name] for name in changes[0]]
        json_nulls = [_ITEMS.c[name].is_(None) for name in ("accept_clock", "decide_clock")]
        with database.transaction() as session:
            return dict(session.execute(select(*columns, *json_nulls).where(key)).one()._mapping)

    event.listen(database.engine, "before_cursor_execute", keep)
    try:
        for change in changes:
            with database.transaction() as session:
                key = (_ITEMS.c.bundle_id == ours.bundle_id) & (_ITEMS.c.code == ours.item)
                loaded = session.execute(select(_ITEMS).where(key)).one()
                item = detached(ItemRow, dict(loaded._mapping))
                for name, value in change.items():
                    setattr(item, name, value)
                write_back(session.connection(), changed=[item])
                key = (_ITEMS.c.bundle_id == cores.bundle_id) & (_ITEMS.c.code == cores.item)
                session.execute(update(_ITEMS).where(key).values(change))
            if database.is_postgresql:  # SQLite's are positional, and both Core's
                written, by_core = sent[-2:]
                assert isinstance(written, dict) and isinstance(by_core, dict)
                assert {name: repr(written[name]) for name in change} == {
                    name: repr(by_core[name]) for name in change
                }
            assert stored(ours.item) == stored(cores.item)
    finally:
        event.remove(database.engine, "before_cursor_execute", keep)


def test_a_value_its_type_refuses_raises_as_core_raises_it(
    database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    """A naive datetime, refused by UtcDateTime before the statement runs: SQLAlchemy's
    StatementError, off Core on PostgreSQL too."""
    poll = detached(DecisionPollRow, _stored_poll(database, catalog, tmp_path))
    poll.next_poll_at = datetime(2026, 3, 2, 9, 0)  # naive: refused
    with pytest.raises(StatementError, match="naive"), database.transaction() as session:
        write_back(session.connection(), changed=[poll])
