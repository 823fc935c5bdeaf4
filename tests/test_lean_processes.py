"""Each process imports what its role uses: an adapter process holds no web framework, no
database layer and no router; each router role holds only its own libraries; `lianban
router` runs the three router roles in one process.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from importlib.metadata import entry_points
from pathlib import Path
from typing import Any

import httpx
import pytest
from conftest import fresh_postgres_database
from harness import (
    AUTH,
    TEST_API_TOKEN,
    eventually,
    free_port,
    new_project_no,
    put_sample_material,
)
from kombu import Connection

from adapters.context import DepartmentClients
from adapters.registry import ENTRY_POINT_GROUP, simulate_every_department
from bench.keys import signing_keys
from contracts.catalog import default_catalog
from contracts.samples import sample_application
from lianban.adapter_process import AdapterProcess
from lianban.settings import Settings
from runtime.messaging import declare_topology

LIANBAN = Path(sys.executable).with_name("lianban")
# OpenSSL's bindings: key files are read without them (runtime.messaging.signing); only the
# intake API's PDF checks load them, to open encrypted PDFs.
OPENSSL_BINDINGS = "cryptography"
# What an adapter process must never load: the router, its web framework and database
# layer, and the libraries of other roles (PDF notices and checks, reports, SOAP).
NOT_IN_AN_ADAPTER_PROCESS = (
    OPENSSL_BINDINGS,
    "lianban.stack",
    "router.store",
    "router.domain",
    "router.http.app",
    "fastapi",
    "starlette",
    "uvicorn",
    "sqlalchemy",
    "alembic",
    "psycopg",
    "reportlab",
    "openpyxl",
    "pypdf",
    "PIL",
    "zeep",
)
# Libraries only one router role uses, each loaded by the module that uses it when it is
# first used (an upload checked, a report asked for, a schema behind, a department called,
# a callback posted: httpx's transport, with its TLS context).
NOT_IN_ANY_ROUTER_ROLE = (
    "alembic",
    "openpyxl",
    "numpy",
    "pypdf",
    "zeep",
    "lxml",
    "httpcore",
)
WEB_FRAMEWORK = ("fastapi", "starlette", "uvicorn", "router.http.app")
# The relay renders the notices (its NoticeRenderer loads the font when it starts).
NOTICE_DOCUMENTS = ("reportlab", "PIL", "router.channels.notice_document")
# The installed department adapters, loaded for the poll plan that the relay and the
# correlator read (about 1 MiB); the intake API reads none of it.
DEPARTMENT_ADAPTERS = tuple(
    entry_point.module for entry_point in entry_points(group=ENTRY_POINT_GROUP)
)
NOT_IN_A_ROUTER_ROLE = {
    "serve": (*NOT_IN_ANY_ROUTER_ROLE, *NOTICE_DOCUMENTS, *DEPARTMENT_ADAPTERS),
    "relay": (*NOT_IN_ANY_ROUTER_ROLE, *WEB_FRAMEWORK, OPENSSL_BINDINGS),
    "correlate": (*NOT_IN_ANY_ROUTER_ROLE, *WEB_FRAMEWORK, *NOTICE_DOCUMENTS, OPENSSL_BINDINGS),
}
# Runs a `lianban` command (sys.argv[3:]) in the main thread, as the command does; once
# its health port answers, another thread lists the modules loaded and stops it as an
# orchestrator would. It asks with urllib: an httpx client would load the transport the
# roles make on first use.
RUNNER = """
import json, os, signal, sys, threading, urllib.request
from lianban.cli import main

def report_modules_then_stop():
    while True:
        try:
            with urllib.request.urlopen(sys.argv[1], timeout=1) as answer:
                if answer.status == 200:
                    break
        except OSError:  # not listening yet, or not ready (urllib's HTTPError)
            pass
        threading.Event().wait(0.2)
    with open(sys.argv[2], "w") as out:
        json.dump(sorted(sys.modules), out)
    os.kill(os.getpid(), signal.SIGTERM)

threading.Thread(target=report_modules_then_stop, daemon=True).start()
sys.exit(main(sys.argv[3:]))
"""


@pytest.mark.connected
def test_an_adapter_process_loads_neither_the_router_nor_other_roles_libraries(
    amqp_url: str, tmp_path: Path
) -> None:
    with Connection(amqp_url) as connection:  # the router declares what the adapter reads
        declare_topology(connection, default_catalog().departments, {})
    env = {
        "PATH": os.environ["PATH"],
        "LIANBAN_BROKER_URL": amqp_url,
        "LIANBAN_MATERIALS_DIR": str(tmp_path / "materials"),
        **signing_keys(tmp_path, default_catalog().departments),
    }
    loaded = _modules_loaded(["adapter", "police", "--simulated"], env)
    assert "adapters.worker" in loaded
    assert _among(loaded, NOT_IN_AN_ADAPTER_PROCESS) == []


@pytest.fixture(scope="module")
def router_database_url() -> Iterator[str]:
    """A fresh database: the first role started migrates it, in a `lianban migrate` of its
    own, and the others find it current; none of them holds Alembic."""
    with fresh_postgres_database() as url:
        yield url


@pytest.mark.connected
@pytest.mark.parametrize("role", sorted(NOT_IN_A_ROUTER_ROLE))
def test_a_router_role_loads_no_other_roles_libraries(
    role: str, router_database_url: str, amqp_url: str, tmp_path: Path
) -> None:
    env = _router_environment(router_database_url, amqp_url, free_port(), tmp_path)
    loaded = _modules_loaded([role], env)
    assert "lianban.stack" in loaded
    assert _among(loaded, NOT_IN_A_ROUTER_ROLE[role]) == []


def test_what_every_router_role_imports_before_it_starts_holds_no_role_s_own_library() -> None:
    """The command line and the stack, imported by every router role's process before
    its roles start, load none of the libraries one role alone uses, so that a role
    which never uses one never holds it. Needs no broker or database: a regression
    fails here in any run, not only in the connected runs of the test above."""
    imported = subprocess.run(
        [
            sys.executable,
            "-c",
            "import json, sys, lianban.cli, lianban.stack; print(json.dumps(sorted(sys.modules)))",
        ],
        capture_output=True,
        check=True,
        timeout=120,
    )
    loaded = json.loads(imported.stdout)
    assert "lianban.stack" in loaded
    one_role_s = (*NOT_IN_ANY_ROUTER_ROLE, *WEB_FRAMEWORK, *NOTICE_DOCUMENTS)
    assert _among(loaded, (*one_role_s, OPENSSL_BINDINGS)) == []


def _router_environment(
    database_url: str, amqp_url: str, port: int, workdir: Path
) -> dict[str, str]:
    """What a router process is started with: its database, broker, materials, API
    tokens, HTTP port and signing keys (written under `workdir`)."""
    tokens = workdir / "tokens.json"
    tokens.write_text(json.dumps([TEST_API_TOKEN.as_json()]))
    return {
        "PATH": os.environ["PATH"],
        "LIANBAN_DATABASE_URL": database_url,
        "LIANBAN_BROKER_URL": amqp_url,
        "LIANBAN_MATERIALS_DIR": str(workdir / "materials"),
        "LIANBAN_TOKENS_FILE": str(tokens),
        "LIANBAN_HOST": "127.0.0.1",
        "LIANBAN_PORT": str(port),
        **signing_keys(workdir, default_catalog().departments),
    }


def _modules_loaded(command: list[str], env: dict[str, str]) -> list[str]:
    """The modules `lianban <command>` has loaded once it is ready."""
    health = free_port()
    with tempfile.TemporaryDirectory() as scratch:
        modules_file = Path(scratch) / "modules.json"
        process = subprocess.run(
            [
                sys.executable,
                "-c",
                RUNNER,
                f"http://127.0.0.1:{health}/readyz",
                modules_file,
                *command,
            ],
            env={**env, "LIANBAN_HEALTH_HOST": "127.0.0.1", "LIANBAN_HEALTH_PORT": str(health)},
            capture_output=True,
            timeout=180,
        )
        assert process.returncode == 0, process.stderr.decode()[-3000:]
        loaded: list[str] = json.loads(modules_file.read_text())
    return loaded


def _among(loaded: list[str], packages: tuple[str, ...]) -> list[str]:
    return [
        module
        for module in loaded
        for package in packages
        if module == package or module.startswith(f"{package}.")
    ]


@pytest.mark.connected
def test_lianban_router_runs_intake_correlation_and_relay_in_one_process(
    postgres_url: str, amqp_url: str, tmp_path: Path
) -> None:
    port = free_port()
    env = _router_environment(postgres_url, amqp_url, port, tmp_path)
    base_url = f"http://127.0.0.1:{port}"
    with (tmp_path / "router.log").open("wb") as log:
        router = subprocess.Popen([str(LIANBAN), "router"], env=env, stderr=log)
    try:
        eventually(
            lambda: _answers(f"{base_url}/healthz", router, tmp_path / "router.log"),
            timeout=180,  # imports and migrations on a loaded machine
            every=0.5,
            message="lianban router never served /healthz",
        )
        settings = Settings(
            broker_url=amqp_url,
            materials_dir=tmp_path / "materials",
            signing_keys_dir=Path(env["LIANBAN_SIGNING_KEYS_DIR"]),
            trusted_keys=Path(env["LIANBAN_TRUSTED_KEYS"]),
        )
        catalog = default_catalog()
        departments = AdapterProcess(
            settings, catalog.departments, simulate_every_department(catalog)
        )
        departments.start()
        try:
            with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as client:
                put_sample_material(client)
                project_no = new_project_no()
                application = sample_application(catalog.bundle_types["newborn"], project_no)
                receipt = client.post(
                    "/v1/bundles", json=application, headers={"Idempotency-Key": project_no}
                )
                assert receipt.status_code == 202, receipt.text
                eventually(
                    lambda: client.get(receipt.json()["reply_url"]).status_code,
                    lambda status: status == 200,
                    timeout=120,
                    every=0.2,
                    message="the bundle got no reply",
                )
        finally:
            departments.stop()
    finally:
        router.send_signal(signal.SIGTERM)
        assert router.wait(timeout=60) == 0


def _answers(url: str, process: subprocess.Popen[bytes], log: Path) -> bool:
    if process.poll() is not None:
        raise AssertionError(f"exited with {process.returncode}:\n{log.read_text()[-3000:]}")
    try:
        return httpx.get(url, timeout=2).status_code == 200
    except httpx.TransportError:
        return False


def test_an_adapter_that_never_calls_over_http_makes_no_http_client(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Its TLS context (the CA bundle loaded) would be about 3 MiB of the process."""
    made: list[httpx.AsyncHTTPTransport] = []
    make = httpx.AsyncHTTPTransport

    def counted(*args: Any, **kwargs: Any) -> httpx.AsyncHTTPTransport:
        made.append(make(*args, **kwargs))
        return made[-1]

    monkeypatch.setattr(httpx, "AsyncHTTPTransport", counted)
    unused = DepartmentClients("http://department.test", 1.0, 1)
    asyncio.run(unused.aclose())
    assert made == []

    used = DepartmentClients("http://department.test", 1.0, 1)
    assert used.http is used.http  # one pooled client, made on first use
    asyncio.run(used.aclose())
    assert len(made) == 1
