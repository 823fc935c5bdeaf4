"""Fixtures for the two modes of the same test bodies: in memory, and connected.

Connected tests use the machine's real RabbitMQ and PostgreSQL, each test session in a
vhost and a database of its own. When either cannot be reached they are skipped on a
developer's machine and FAIL on CI (CI=true), so a green CI always means they ran.
"""

from __future__ import annotations

import os
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from kombu import Connection
from kombu.transport import memory
from sqlalchemy import create_engine, text

from contracts.catalog import Catalog, default_catalog
from router.settings import Settings
from router.stack import Role, Stack

POSTGRES_ADMIN_URL = os.environ.get(
    "LIANBAN_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
AMQP_HOST = os.environ.get("LIANBAN_TEST_AMQP_HOST", "127.0.0.1:5672")


def _unavailable(reason: str) -> None:
    if os.environ.get("CI"):
        pytest.fail(f"connected test cannot run on CI: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    return default_catalog()


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    """A fresh PostgreSQL database for this test session, dropped afterwards."""
    name = f"lianban_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as connection:
            connection.execute(text(f'CREATE DATABASE "{name}"'))
    except Exception as error:
        admin.dispose()
        _unavailable(f"PostgreSQL at {POSTGRES_ADMIN_URL} is unreachable: {error}")
    base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
    yield f"{base}/{name}"
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(scope="session")
def amqp_url() -> Iterator[str]:
    """A fresh RabbitMQ vhost for this test session, deleted afterwards."""
    vhost = f"lianban_test_{uuid.uuid4().hex[:12]}"
    try:
        _rabbitmqctl("add_vhost", vhost)
        _rabbitmqctl("set_permissions", "-p", vhost, "guest", ".*", ".*", ".*")
        url = f"amqp://guest:guest@{AMQP_HOST}/{vhost}"
        with Connection(url, connect_timeout=5) as connection:
            connection.ensure_connection(max_retries=1)
    except Exception as error:
        _unavailable(f"RabbitMQ at {AMQP_HOST} is unreachable: {error}")
    yield url
    _rabbitmqctl("delete_vhost", vhost)


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=60)


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
        )
    return Settings(
        database_url=request.getfixturevalue("postgres_url"),
        broker_url=request.getfixturevalue("amqp_url"),
        materials_dir=tmp_path / "materials",
        port=0,
    )


@pytest.fixture
def intake_only(tmp_path: Path, catalog: Catalog) -> Iterator[Stack]:
    """The intake API alone on a real port: nothing consumes, so the outbox keeps its rows."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'intake.db'}",
        materials_dir=tmp_path / "materials",
        port=0,
    )
    stack = Stack(settings, catalog, {Role.SERVE})
    stack.start()
    yield stack
    stack.stop()
