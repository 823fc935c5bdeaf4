"""A fresh PostgreSQL database and RabbitMQ vhost per run, and the processes that use them.

Every role runs as a process of its own, as in production; each is read for its peak
memory (VmHWM) and CPU time from /proc before it is stopped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import TypeVar

from sqlalchemy import Engine, create_engine, text

POSTGRES_ADMIN_URL = os.environ.get(
    "LIANBAN_BENCH_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test"
)
AMQP_HOST = os.environ.get("LIANBAN_BENCH_AMQP_HOST", "127.0.0.1:5672")
REDIS_URL = os.environ.get("LIANBAN_BENCH_REDIS_URL", "redis://127.0.0.1:6379/0")
VENV_BIN = Path(sys.executable).parent
REPOSITORY = Path(__file__).resolve().parents[1]
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
T = TypeVar("T")


@dataclass(frozen=True)
class Services:
    """Where this run's database and vhost are."""

    run_id: str
    database_url: str
    amqp_url: str


@contextmanager
def fresh_services() -> Iterator[Services]:
    """A database and a vhost named after this run, dropped and deleted afterwards."""
    run_id = f"lianban_bench_{uuid.uuid4().hex[:10]}"
    admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f'CREATE DATABASE "{run_id}"'))
    _rabbitmqctl("add_vhost", run_id)
    try:
        _rabbitmqctl("set_permissions", "-p", run_id, "guest", ".*", ".*", ".*")
        base = POSTGRES_ADMIN_URL.rsplit("/", 1)[0]
        yield Services(run_id, f"{base}/{run_id}", f"amqp://guest:guest@{AMQP_HOST}/{run_id}")
    finally:
        retrying(lambda: _rabbitmqctl("delete_vhost", run_id))
        retrying(lambda: _drop_database(admin, run_id))
        admin.dispose()


def _drop_database(admin: Engine, name: str) -> None:
    with admin.connect() as connection:
        connection.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def retrying(action: Callable[[], T], attempts: int = 12) -> T:
    """Other work on this machine restarts RabbitMQ and PostgreSQL now and then: wait
    for them to come back (up to a minute) rather than fail the run or leave this run's
    vhost or database behind."""
    for attempt in range(attempts):
        try:
            return action()
        except Exception:
            if attempt == attempts - 1:
                raise
            time.sleep(5)
    raise AssertionError("unreachable")


def _rabbitmqctl(*args: str) -> None:
    subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def memory_kib(pid: int, field_name: str) -> int:
    """VmRSS (now) or VmHWM (peak) of a process, in KiB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field_name + ":"):
            return int(line.split()[1])
    raise KeyError(field_name)


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process and of the children it has waited for."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    utime, stime, cutime, cstime = (int(value) for value in fields[11:15])
    return (utime + stime + cutime + cstime) / CLOCK_TICKS


def children(pid: int) -> list[int]:
    return [int(child) for child in Path(f"/proc/{pid}/task/{pid}/children").read_text().split()]


@dataclass
class Process:
    """One role's process and its log."""

    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def check_alive(self) -> None:
        if self.popen.poll() is not None:
            tail = self.log_path.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"{self.name} exited with {self.popen.returncode}:\n{tail}")

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.send_signal(signal.SIGINT)
            try:
                self.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait()


@dataclass
class Processes:
    """The processes of one system under test, started and stopped together."""

    log_dir: Path
    env: dict[str, str]
    running: dict[str, Process] = field(default_factory=dict)

    def start(self, name: str, argv: Sequence[str], env: dict[str, str] | None = None) -> Process:
        log_path = self.log_dir / f"{name}.log"
        with log_path.open("wb") as log:
            popen = subprocess.Popen(
                list(argv),
                env={**os.environ, **self.env, **(env or {})},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=REPOSITORY,
                start_new_session=True,  # Ctrl-C on the benchmark stops it through us
            )
        process = Process(name, popen, log_path)
        self.running[name] = process
        return process

    def stop(self, name: str) -> None:
        self.running.pop(name).stop()

    def stop_all(self) -> None:
        for name in list(self.running):
            self.stop(name)

    def check_alive(self) -> None:
        for process in self.running.values():
            process.check_alive()

    def peak_rss_mib(self) -> dict[str, float]:
        return {name: memory_kib(p.pid, "VmHWM") / 1024 for name, p in self.running.items()}

    def rss_mib(self) -> dict[str, float]:
        return {name: memory_kib(p.pid, "VmRSS") / 1024 for name, p in self.running.items()}

    def cpu_seconds(self) -> dict[str, float]:
        return {name: cpu_seconds(p.pid) for name, p in self.running.items()}


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(poll)
    raise TimeoutError(f"{what} not ready within {timeout} s")
