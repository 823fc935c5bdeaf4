"""Read views see one committed state: a row and the rows committed with it, or none of
them (`Database.snapshot`)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import fresh_postgres_database
from sqlalchemy import text
from sqlalchemy.exc import InternalError

from router.store import Database

pytestmark = pytest.mark.connected


@pytest.fixture
def postgres() -> Iterator[Database]:
    with fresh_postgres_database() as url:
        database = Database(url)
        with database.transaction() as session:
            session.execute(text("CREATE TABLE steps (n int)"))
            session.execute(text("CREATE TABLE deliveries (n int)"))
        yield database
        database.dispose()


def test_a_snapshot_reads_every_table_as_of_its_first_statement(postgres: Database) -> None:
    # A callback's delivery and its timeline step commit together; a status read between
    # the two statements of a view must show both or neither.
    with postgres.snapshot() as view:
        assert view.scalar(text("SELECT count(*) FROM steps")) == 0
        with postgres.transaction() as sender:
            sender.execute(text("INSERT INTO steps VALUES (1)"))
            sender.execute(text("INSERT INTO deliveries VALUES (1)"))
        assert view.scalar(text("SELECT count(*) FROM deliveries")) == 0
    with postgres.snapshot() as view:
        assert view.scalar(text("SELECT count(*) FROM deliveries")) == 1


def test_a_snapshot_writes_nothing(postgres: Database) -> None:
    with postgres.snapshot() as view, pytest.raises(InternalError, match="read-only"):
        view.execute(text("INSERT INTO steps VALUES (1)"))
