"""Fixtures for the two modes of the same test bodies: in memory, and connected.

Connected tests use the machine's real RabbitMQ and PostgreSQL: each test in a vhost of
its own (nothing an earlier test left in a queue or a retry tier reaches it), each test
session in a database of its own, and each test that takes `database` in one of its own.
When either cannot be reached they are skipped on a developer's machine and FAIL on CI
(CI=true), so a green CI always means they ran.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
from harness import TEST_API_TOKEN, Platform, serving_intake
from kombu import Connection
from kombu.transport import memory
from sqlalchemy import create_engine, text

from contracts.catalog import Catalog, default_catalog
from lianban.settings import Settings
from lianban.stack import Stack
from router.domain import workdays
from router.store import Database

# The whole run's output is scanned for unmasked ID numbers; a leak fails the session.
pytest_plugins = ["log_scanner"]

POSTGRES_ADMIN_URL = os.environ.get(
    "LIANBAN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
AMQP_HOST = os.environ.get("LIANBAN_TEST_AMQP_HOST", "127.0.0.1:5672")
MANAGEMENT_URL = os.environ.get("LIANBAN_TEST_RABBITMQ_MANAGEMENT_URL", "http://127.0.0.1:15672")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"connected test cannot run on CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return default_catalog()


@contextmanager
def fresh_postgres_database() -> Iterator[str]:
    """A new PostgreSQL database, dropped afterwards."""
    name = f"lianban_test_{uuid.uuid4().hex[:12]}"
    # Pre-ping: the chaos suite restarts PostgreSQL, killing pooled connections.
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT", pool_pre_ping=True)
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        admin.dispose()
        _unavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable: {error}")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    try:
        yield f"{base}/{name}"
    finally:
        with admin.connect() as connection:
            connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@contextmanager
def fresh_vhost() -> Iterator[str]:
    """A new RabbitMQ vhost, deleted afterwards (through the management API: a
    `rabbitmqctl` call starts an Erlang VM, about a second, and every test takes one)."""
    vhost = f"lianban_test_{uuid.uuid4().hex[:12]}"
    with httpx.Client(base_url=MANAGEMENT_URL, auth=("guest", "guest"), timeout=60) as management:
        try:
            management.put(f"/api/vhosts/{vhost}").raise_for_status()
            permissions = {"configure": ".*", "write": ".*", "read": ".*"}
            management.put(f"/api/permissions/{vhost}/guest", json=permissions).raise_for_status()
            url = f"amqp://guest:guest@{AMQP_HOST}/{vhost}"
            with Connection(url, connect_timeout=5) as connection:
                connection.ensure_connection(max_retries=1)
        except Exception as error:
            _unavailable(f"RabbitMQ at {AMQP_HOST} or its management API is unreachable: {error}")
        try:
            yield url
        finally:
            management.delete(f"/api/vhosts/{vhost}").raise_for_status()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session."""
    with fresh_postgres_database() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.connected)])
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """A migrated database of this test's own, on SQLite and on PostgreSQL: what the test
    writes, or tampers with, reaches no other test."""
    if request.param == "sqlite":
        yield from _migrated(f"sqlite:///{tmp_path / 'lianban.db'}")
    else:
        with fresh_postgres_database() as url:
            yield from _migrated(url)


def _migrated(url: str) -> Iterator[Database]:
    database = Database(url)
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def amqp_url() -> Iterator[str]:
    """A fresh RabbitMQ vhost for this test."""
    with fresh_vhost() as url:
        yield url


@pytest.fixture(params=["memory", pytest.param("connected", marks=pytest.mark.connected)])
def settings(request: pytest.FixtureRequest, tmp_path: Path) -> Settings:
    """The same test body runs embedded (memory://, SQLite) and connected (RabbitMQ, PostgreSQL)."""
    if request.param == "memory":
        # kombu's in-memory broker is process-global: start every test with it empty.
        memory.Channel.queues.clear()
        return Settings(
            database_url=f"sqlite:///{tmp_path / 'lianban.db'}",
            broker_url="memory://",
            materials_dir=tmp_path / "materials",
            port=0,
            api_tokens=(TEST_API_TOKEN,),
        )
    return Settings(
        database_url=request.getfixturevalue("postgres_url"),
        broker_url=request.getfixturevalue("amqp_url"),
        materials_dir=tmp_path / "materials",
        port=0,
        api_tokens=(TEST_API_TOKEN,),
    )


@pytest.fixture
def intake_only(tmp_path: Path, catalog: Catalog) -> Iterator[Stack]:
    """The intake API alone on a real port: nothing consumes, so the outbox keeps its rows."""
    with serving_intake(tmp_path, catalog) as stack:
        yield stack


@pytest.fixture
def year_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """An empty operator directory, and a live calendar read from it (restored after)."""
    directory = tmp_path / "calendar"
    directory.mkdir()
    monkeypatch.setenv("LIANBAN_CALENDAR_DIR", str(directory))
    monkeypatch.setattr(workdays, "_live", None)
    return directory


@pytest.fixture
def platform() -> Iterator[Platform]:
    """The platform's callback endpoint on loopback, taking every push."""
    with Platform() as platform:
        yield platform
