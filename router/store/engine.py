"""Engine and sessions for the two real targets: SQLite (embedded) and PostgreSQL."""

from __future__ import annotations

import select
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, Insert, Table, create_engine, event, inspect, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.exc import DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS = Path(__file__).parent / "migrations"
SCHEMA_REVISION = "0020"
"""The newest migration's revision (tests/test_schemas_and_migrations.py holds it to the
scripts' head): a database already there needs no Alembic loaded."""
_MIGRATION_LOCK = 0x4C49414E42414E  # "LIANBAN": a PostgreSQL advisory lock key
_CONNECT_TIMEOUT_SECONDS = 5


DEVELOPMENT_AUDIT_KEY = b"lianban development audit key: set LIANBAN_AUDIT_KEY_FILE"
"""The writers' audit key where none is configured (embedded mode, tests): public, so
it proves nothing; production sets its own (`router.store.audit`)."""


class Database:
    """One database URL, its engine and a session factory.

    `audit_key` is the secret the application signs its audit records with; every
    session carries it (`session.info["audit_key"]`) so that writers need no other handle.
    """

    def __init__(self, url: str, audit_key: bytes = DEVELOPMENT_AUDIT_KEY) -> None:
        self.url = url
        self.engine = _create_engine(url)
        self.audit_key = audit_key
        self._sessions = sessionmaker(
            self.engine, expire_on_commit=False, info={"audit_key": audit_key}
        )

    @property
    def is_postgresql(self) -> bool:
        return self.engine.dialect.name == "postgresql"

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        """A session whose work commits on exit, or rolls back on an exception."""
        with self._sessions.begin() as session:
            yield session

    @contextmanager
    def snapshot(self) -> Iterator[Session]:
        """A session that only reads, every statement seeing the same committed state: a
        view that reads several tables (a bundle's items, timeline and callbacks) never
        shows one row without another committed with it. PostgreSQL's READ COMMITTED gives
        each statement a snapshot of its own, so this is a READ ONLY REPEATABLE READ
        transaction there; SQLite's transactions hold the write lock (BEGIN IMMEDIATE),
        so every one is a snapshot already."""
        with self._sessions() as session:
            if self.is_postgresql:
                session.connection(
                    execution_options={
                        "isolation_level": "REPEATABLE READ",
                        "postgresql_readonly": True,
                    }
                )
            yield session

    def after_commit(self, hook: Callable[[Session], None]) -> None:
        """Call `hook` with each session of this database right after its transaction
        commits (`router.store.outbox` publishes what the transaction wrote)."""
        event.listen(self._sessions, "after_commit", hook)

    def migrate(self) -> None:
        """Bring the schema to the newest Alembic revision. Alembic is loaded only when
        there is something to do: a router role's process would hold it for its life."""
        if self.schema_is_current():
            return
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS))
        with self.engine.begin() as connection:
            if self.is_postgresql:
                # Replicas start together: one migrates, the others wait, then find it done.
                connection.execute(text(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})"))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def schema_is_current(self) -> bool:
        """Whether the schema is at the newest revision this code knows."""
        return self.revision() == SCHEMA_REVISION

    def revision(self) -> str | None:
        """The schema's Alembic revision, or None for an empty database."""
        with self.engine.connect() as connection:
            if not inspect(connection).has_table("alembic_version"):
                return None
            revision: str | None = connection.scalar(
                text("SELECT version_num FROM alembic_version")
            )
            return revision

    def problem(self) -> str | None:
        """Why the database cannot be used now, or None (a readiness check)."""
        try:
            with self.engine.connect() as connection:
                connection.execute(text("SELECT 1"))
        except (OperationalError, InterfaceError) as error:
            return f"the database is unavailable: {type(error.orig).__name__}"
        return None

    def dispose(self) -> None:
        self.engine.dispose()


def insert_skipping_conflicts(table: Table) -> dict[str, Insert]:
    """`INSERT … ON CONFLICT DO NOTHING` into `table` (a row a unique index already holds
    is skipped), by the name of the dialect that runs it: each builds its own."""
    return {
        name: dialect.insert(table).on_conflict_do_nothing()
        for name, dialect in (("postgresql", postgresql), ("sqlite", sqlite))
    }


def _replace_connections_the_server_closed(engine: Engine) -> None:
    """A pooled connection is not used once PostgreSQL has closed it (a restart, a
    failover, `pg_terminate_backend`): the pool replaces it (DisconnectionError), as
    `pool_pre_ping` would, without pre-ping's round trip on every checkout. Between
    transactions the server sends nothing unless it is ending the connection (its FATAL
    error, then end of file), so a connection with nothing to read is used as it is; one
    with input (rarely anything else: a setting reported after a reload) is pinged."""

    @event.listens_for(engine, "checkout")
    def _check(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
        try:
            poller = select.poll()
            poller.register(dbapi_connection.fileno(), select.POLLIN)
            if poller.poll(0):
                engine.dialect.do_ping(dbapi_connection)
        except Exception as error:  # whatever the check meets, no transaction can use it
            raise DisconnectionError(f"the server closed this connection: {error}") from error


def _create_engine(url: str) -> Engine:
    if not url.startswith("sqlite"):
        # A bounded connect: a database that does not answer is an outage to report
        # (503, not ready), not a request that hangs.
        engine = create_engine(
            url,
            pool_size=10,
            max_overflow=10,
            connect_args={"connect_timeout": _CONNECT_TIMEOUT_SECONDS},
        )
        _replace_connections_the_server_closed(engine)
        return engine
    # pysqlite's own transaction handling defers BEGIN; take the write lock at BEGIN
    # instead (BEGIN IMMEDIATE) so concurrent writers queue rather than deadlock.
    engine = create_engine(
        url, connect_args={"check_same_thread": False, "timeout": 30, "isolation_level": None}
    )

    @event.listens_for(engine, "connect")
    def _configure(dbapi_connection: Any, _record: Any) -> None:
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _begin_immediate(connection: Any) -> None:
        connection.exec_driver_sql("BEGIN IMMEDIATE")

    return engine
