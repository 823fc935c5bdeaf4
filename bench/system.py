"""Lianban under test: `lianban serve`, `lianban relay`, `lianban correlate` (or, with
`single_process`, `lianban router` doing all three) and one process per department
(`python -m bench.department`), on this run's database and vhost."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import httpx
import pika
from sqlalchemy import create_engine, text

from bench.environment import VENV_BIN, Processes, Services, free_port, retrying, wait_until
from bench.keys import signing_keys
from bench.load import Platform, ReplyListener
from contracts import topology
from contracts.catalog import default_catalog
from router.http.auth import Scope, mint

SEPARATE_ROLES = ("serve", "relay", "correlate")
SINGLE_PROCESS = ("router",)  # `lianban router`: intake, correlation and relay together
# An operator's level under load. The deploy files default to info, which also renders
# and masks a log line per step: the CPU figures are a floor for such a deployment.
LOG_LEVEL = "warning"


def router_command_available() -> bool:
    """Whether this checkout has `lianban router` (it exits 0 on `--help` if so)."""
    probe = subprocess.run(
        [str(VENV_BIN / "lianban"), "router", "--help"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    return probe.returncode == 0


def add_single_process_option(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--single-process",
        action="store_true",
        help="run the router as one `lianban router` process instead of its three roles",
    )


def router_roles(single_process: bool) -> tuple[str, ...]:
    """The router's processes, the intake API's first; fails plainly when one process
    is asked for and this checkout has no `lianban router`."""
    if not single_process:
        return SEPARATE_ROLES
    if not router_command_available():
        raise SystemExit(
            "--single-process needs `lianban router`, which this checkout does not have "
            "(`lianban router --help` failed); run without it to start the three roles"
        )
    return SINGLE_PROCESS


@dataclass(frozen=True)
class MessageCount:
    """Messages that passed through the broker for the router: what the relay published
    (dispatches, supplements, replies) plus the outcomes the correlator applied."""

    published: int
    applied: int

    @property
    def total(self) -> int:
        return self.published + self.applied

    def __sub__(self, earlier: MessageCount) -> MessageCount:
        return MessageCount(self.published - earlier.published, self.applied - earlier.applied)


class LianbanSystem:
    def __init__(
        self, services: Services, workdir: Path, roles: tuple[str, ...] = SEPARATE_ROLES
    ) -> None:
        self.services = services
        self.roles = roles
        self.port = free_port()
        secret, entry = mint("bench", [Scope.BUNDLES_WRITE, Scope.BUNDLES_READ, Scope.FILES_WRITE])
        self.token = secret.get_secret_value()
        tokens_file = workdir / "tokens.json"
        tokens_file.write_text(json.dumps([entry.as_json()]))
        (workdir / "logs").mkdir(exist_ok=True)
        self.processes = Processes(
            workdir / "logs",
            {
                **signing_keys(workdir, default_catalog().departments),
                "LIANBAN_DATABASE_URL": services.database_url,
                "LIANBAN_BROKER_URL": services.amqp_url,
                "LIANBAN_MATERIALS_DIR": str(workdir / "materials"),
                "LIANBAN_TOKENS_FILE": str(tokens_file),
                "LIANBAN_PORT": str(self.port),
                "LIANBAN_LOG_LEVEL": LOG_LEVEL,
            },
        )
        self.engine = create_engine(services.database_url, pool_pre_ping=True)

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, departments: Iterable[str]) -> None:
        # The intake API's process migrates the fresh database first; the other roles
        # then find it ready.
        intake, *others = self.roles
        self.processes.start(intake, [str(VENV_BIN / "lianban"), intake])
        wait_until(self._serving, 60, "the intake API")
        for role in others:
            self.processes.start(role, [str(VENV_BIN / "lianban"), role])
        for department in departments:
            self.start_department(department)

    def start_department(self, department: str, *answering: str) -> None:
        """`answering`: `--delay SECONDS` or `--later` (see bench.department); at once if none."""
        argv = [sys.executable, "-m", "bench.department", department, *answering]
        self.processes.start(f"dept-{department}", argv)

    def restart_department(self, department: str, *answering: str) -> None:
        self.processes.stop(f"dept-{department}")
        self.start_department(department, *answering)

    def wait_for_consumers(self, queues: Iterable[str], timeout: float = 60) -> None:
        """Until each queue has a consumer: the processes behind them are ready."""
        parameters = pika.URLParameters(self.services.amqp_url)
        connection = retrying(lambda: pika.BlockingConnection(parameters))
        try:
            channel = connection.channel()
            for queue in queues:

                def consumed(queue: str = queue) -> bool:
                    self.processes.check_alive()
                    declared = channel.queue_declare(queue, passive=True)
                    return bool(declared.method.consumer_count)

                wait_until(consumed, timeout, f"a consumer on {queue}", poll=0.2)
        finally:
            connection.close()

    def _serving(self) -> bool:
        self.processes.check_alive()
        try:
            return httpx.get(f"{self.base_url}/healthz", timeout=1).status_code == 200
        except httpx.HTTPError:
            return False

    def message_count(self) -> MessageCount:
        return retrying(self._message_count)

    def _message_count(self) -> MessageCount:
        with self.engine.connect() as connection:
            published = connection.scalar(
                text("SELECT count(*) FROM outbox WHERE sent_at IS NOT NULL")
            )
            applied = connection.scalar(text("SELECT count(*) FROM inbox"))
        return MessageCount(int(published or 0), int(applied or 0))

    def sequential_scans(self) -> dict[str, tuple[int, int]]:
        """Per table: sequential scans so far and the rows they read (pg_stat_user_tables),
        to see which lookups stop using an index as the tables grow."""
        return retrying(self._sequential_scans)

    def _sequential_scans(self) -> dict[str, tuple[int, int]]:
        with self.engine.connect() as connection:
            rows = connection.execute(
                text("SELECT relname, seq_scan, seq_tup_read FROM pg_stat_user_tables")
            )
            return {name: (int(scans), int(read)) for name, scans, read in rows}

    def mean_message_bytes(self) -> int:
        """The mean size of what the router sends, for the raw broker comparison."""
        return retrying(self._mean_message_bytes)

    def _mean_message_bytes(self) -> int:
        with self.engine.connect() as connection:
            mean = connection.scalar(text("SELECT avg(length(body)) FROM outbox"))
        return int(mean or 1024)

    def router_cpu_seconds(self) -> float:
        cpu = self.processes.cpu_seconds()
        return sum(cpu[role] for role in self.roles)

    def stop(self) -> None:
        self.processes.stop_all()
        self.engine.dispose()


@contextmanager
def running_system(
    services: Services, workdir: Path, roles: tuple[str, ...], departments: Sequence[str]
) -> Iterator[tuple[LianbanSystem, Platform]]:
    """Lianban started, `departments` consuming, and the platform ready to post (the
    sample material the applications cite uploaded); every process stopped afterwards."""
    system = LianbanSystem(services, workdir, roles)
    try:
        system.start(departments)
        queues = [topology.department_queue(department) for department in departments]
        system.wait_for_consumers([topology.OUTCOMES_QUEUE, *queues])
        with ReplyListener(services.amqp_url) as listener:
            platform = Platform(system.base_url, system.token, listener)
            platform.upload_sample_material()
            yield system, platform
    finally:
        system.stop()
