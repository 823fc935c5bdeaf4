"""Lianban's pooled PostgreSQL connections: one the server closed (a restart, a failover,
an administrator's `pg_terminate_backend`) is never used for a transaction, and taking
one from the pool costs no round trip of its own (no pre-ping)."""

from __future__ import annotations

import select
import tempfile
from collections.abc import Iterator
from contextlib import ExitStack

import pytest
from conftest import fresh_postgres_database
from harness import eventually
from psycopg import pq
from sqlalchemy import Connection, create_engine, text

from router.store import Database

pytestmark = pytest.mark.connected

POOLED = 3


@pytest.fixture
def postgres() -> Iterator[Database]:
    """A database of this test's own: only its backends are ever terminated."""
    with fresh_postgres_database() as url:
        database = Database(url)
        yield database
        database.dispose()


def _backend_pids(database: Database, at_once: int) -> set[int]:
    """The server processes of `at_once` transactions held open together (so each takes
    a pooled connection of its own)."""
    with ExitStack() as held:
        sessions = [held.enter_context(database.transaction()) for _ in range(at_once)]
        return {session.scalar(text("SELECT pg_backend_pid()")) for session in sessions}


def _administer(database: Database, sql: str) -> None:
    """Run `sql` on a connection of its own, outside the pool under test."""
    admin = create_engine(database.url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(sql))
    finally:
        admin.dispose()


def _live_backends(database: Database) -> int:
    admin = create_engine(database.url)
    try:
        with admin.connect() as connection:
            return int(
                connection.scalar(
                    text(
                        "SELECT count(*) FROM pg_stat_activity"
                        " WHERE datname = current_database() AND pid <> pg_backend_pid()"
                    )
                )
            )
    finally:
        admin.dispose()


def test_transactions_after_the_server_ended_every_pooled_connection_run_on_new_ones(
    postgres: Database,
) -> None:
    before = _backend_pids(postgres, POOLED)
    assert len(before) == POOLED
    _administer(
        postgres,
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
        " WHERE datname = current_database() AND pid <> pg_backend_pid()",
    )
    eventually(
        lambda: _live_backends(postgres),
        lambda live: live == 0,
        timeout=10,
        message="the terminated backends did not exit",
    )

    after = _backend_pids(postgres, POOLED)

    assert len(after) == POOLED
    assert not before & after


def test_a_pooled_connection_with_input_that_still_answers_is_kept(postgres: Database) -> None:
    """A notification (or a setting the server reports after a reload) also makes an idle
    connection readable: it is pinged, and kept since it answers."""
    with postgres.engine.connect() as connection:
        connection.execute(text("LISTEN lianban_test"))
        connection.commit()
        listening = connection.scalar(text("SELECT pg_backend_pid()"))
        socket = connection.connection.dbapi_connection.fileno()  # type: ignore[union-attr]
    _administer(postgres, "NOTIFY lianban_test")
    eventually(
        lambda: select.select([socket], [], [], 0)[0],
        timeout=10,
        message="the notification did not arrive",
    )

    assert _backend_pids(postgres, 1) == {listening}


def _frontend_messages(connection: Connection, database: Database) -> list[str]:
    """What the client sends the server, by libpq's trace, over one transaction that
    takes `connection`'s DBAPI connection back out of the pool and runs one statement."""
    dbapi_connection = connection.connection.dbapi_connection
    assert dbapi_connection is not None
    connection.close()
    pgconn = dbapi_connection.pgconn  # type: ignore[attr-defined]
    with tempfile.TemporaryFile() as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(pq.Trace.SUPPRESS_TIMESTAMPS | pq.Trace.REGRESS_MODE)
        try:
            with database.transaction() as session:
                session.execute(text("SELECT 2"))
        finally:
            pgconn.untrace()
        trace.seek(0)
        lines = trace.read().decode().splitlines()
    return [line.split("\t", 2)[2] for line in lines if line.startswith("F\t")]


def test_a_transaction_on_a_pooled_connection_sends_only_its_own_statements(
    postgres: Database,
) -> None:
    connection = postgres.engine.connect()
    connection.execute(text("SELECT 1"))
    connection.commit()

    sent = _frontend_messages(connection, postgres)

    assert sent == ['Query\t "BEGIN"', 'Query\t "SELECT 2"', 'Query\t "COMMIT"']
