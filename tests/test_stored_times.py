"""Every stored time comes back as the instant written, on SQLite and PostgreSQL."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import JSON, Column, Table, insert, select, text

from router.store import Database
from router.store.engine import MIGRATIONS
from router.store.tables import Base, BundleRow, ItemRow, UtcDateTime

CHINA = timezone(timedelta(hours=8))
# The end of a China day, as deadlines are: stored without its offset it reads 8 h late.
WRITTEN = datetime(2026, 12, 29, 23, 59, 59, 999999, tzinfo=CHINA)
BUNDLE_ID = uuid.uuid4()


def _sample(column: Column[Any]) -> Any:
    """A value of the column's type; every foreign key here points at the one bundle."""
    if column.name == "bundle_id" or column is BundleRow.__table__.c.id:
        return BUNDLE_ID
    if isinstance(column.type, UtcDateTime):
        return WRITTEN
    if isinstance(column.type, JSON):
        return {}
    samples: dict[type, Any] = {
        uuid.UUID: uuid.uuid4(),
        str: "x",
        int: 1000,  # clear of the ids the migrations seed (audit_chain's 1)
        bool: False,
        bytes: b"x",
        date: WRITTEN.date(),  # a calendar day (China), no instant: nothing to shift
    }
    return samples[column.type.python_type]


def _time_columns(table: Table) -> list[str]:
    return [column.name for column in table.columns if isinstance(column.type, UtcDateTime)]


def test_every_time_column_of_every_table_round_trips(database: Database) -> None:
    tables = [table for table in Base.metadata.sorted_tables if _time_columns(table)]
    assert len(tables) == len(Base.metadata.tables)  # every table keeps a time
    with database.transaction() as session:
        for table in tables:  # in foreign-key order: bundles first
            row = {column.name: _sample(column) for column in table.columns}
            session.execute(insert(table).values(row))
    with database.transaction() as session:
        for table in tables:
            columns = _time_columns(table)
            # Rows the migrations seed (audit_chain's) have no time yet: not ours.
            written = select(*(table.c[name] for name in columns)).where(
                table.c[columns[0]].is_not(None)
            )
            [read] = session.execute(written).all()
            for name, value in zip(columns, read, strict=True):
                assert value == WRITTEN, f"{table.name}.{name} read back {value}"
                assert value.utcoffset() == timedelta(0), f"{table.name}.{name} is not UTC"


def test_migration_0010_moves_old_sqlite_deadlines_to_utc(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0009")
        # As the code before 0010 wrote them: the +08:00 wall clock, the offset dropped.
        connection.execute(
            text(
                "INSERT INTO bundles (id, project_no, bundle_type, state, application, "
                "received_at) VALUES (:id, 'P1', 'newborn', 'open', '{}', "
                "'2026-12-28 02:00:00.000000')"
            ),
            {"id": BUNDLE_ID.hex},
        )
        connection.execute(
            text(
                "INSERT INTO items (bundle_id, code, position, service, department, name_zh, "
                "state, accept_due_at, decide_due_at, awaiting_prerequisites, updated_at) "
                "VALUES (:id, 'a', 0, 's', 'police', 'n', 'dispatched', "
                "'2026-12-29 23:59:59.999999', NULL, 0, '2026-12-28 02:00:00.000000')"
            ),
            {"id": BUNDLE_ID.hex},
        )
    database.migrate()
    database.migrate()  # a second run finds nothing more to move
    with database.transaction() as session:
        item = session.scalars(select(ItemRow)).one()
        assert item.accept_due_at == WRITTEN
        assert item.decide_due_at is None
        assert item.updated_at == datetime(2026, 12, 28, 2, tzinfo=UTC)  # UTC already: kept
    database.dispose()
