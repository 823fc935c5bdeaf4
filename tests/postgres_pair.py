"""A PostgreSQL primary and its synchronous streaming replica on this machine, for the
failover test.

Both are the machine's own PostgreSQL binaries (`initdb`, `pg_ctl`, `pg_basebackup`)
started as the `postgres` user on spare ports, in a directory of their own: the machine's
server is never touched. The replica is synchronous (`synchronous_standby_names = '*'`),
as Patroni's synchronous mode or a managed service's HA pair are, so a commit the
application saw has reached the replica before the primary can be lost. `fail_over`
kills the primary (`immediate`: no shutdown checkpoint, as a crash) and promotes the
replica; the roles' multi-host URL (`target_session_attrs=read-write`) finds it.
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

from harness import free_port

POSTGRES_BIN = Path("/usr/lib/postgresql/15/bin")
DATABASE = "lianban"


@dataclass
class ReplicatedPostgres:
    directory: Path = field(default_factory=lambda: Path(tempfile.mkdtemp(prefix="lianban-pg-")))
    primary_port: int = field(default_factory=free_port)
    replica_port: int = field(default_factory=free_port)

    @property
    def url(self) -> str:
        """What every role is given: both servers, and only the writable one will do."""
        return (
            f"postgresql+psycopg://postgres@/{DATABASE}?host=127.0.0.1,127.0.0.1"
            f"&port={self.primary_port},{self.replica_port}&target_session_attrs=read-write"
        )

    def start(self) -> None:
        shutil.chown(self.directory, "postgres", "postgres")
        primary = self.directory / "primary"
        self._as_postgres("initdb", "-D", str(primary), "-U", "postgres", "-A", "trust")
        with (primary / "postgresql.conf").open("a") as conf:
            conf.write(
                "listen_addresses = '127.0.0.1'\n"
                f"unix_socket_directories = '{self.directory}'\n"
                "wal_level = replica\nmax_wal_senders = 4\nmax_connections = 200\n"
            )
        self._start(primary, self.primary_port)
        self._as_postgres(
            "createdb", "-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres", DATABASE
        )
        replica = self.directory / "replica"
        self._as_postgres(
            "pg_basebackup",
            *("-h", "127.0.0.1", "-p", str(self.primary_port), "-U", "postgres"),
            *("-D", str(replica), "-R", "-X", "stream", "-c", "fast"),
        )
        self._start(replica, self.replica_port)
        # Synchronous only now that there is a standby to wait for (the replica's copy of
        # the configuration, taken before, stays asynchronous: promoted, it has none).
        with (primary / "postgresql.conf").open("a") as conf:
            conf.write("synchronous_standby_names = '*'\nsynchronous_commit = on\n")
        self._as_postgres("pg_ctl", "-D", str(primary), "reload")
        self._wait_for_synchronous_replica()

    def fail_over(self) -> None:
        """The primary dies; the replica is promoted (what Patroni would do)."""
        self._as_postgres(
            "pg_ctl", "-D", str(self.directory / "primary"), "stop", "-m", "immediate"
        )
        self._as_postgres("pg_ctl", "-D", str(self.directory / "replica"), "promote", "-w")

    def stop(self) -> None:
        for server in ("primary", "replica"):
            data = self.directory / server
            if (data / "postmaster.pid").exists():
                subprocess.run(
                    [
                        "runuser",
                        "-u",
                        "postgres",
                        "--",
                        str(POSTGRES_BIN / "pg_ctl"),
                        "-D",
                        str(data),
                        "stop",
                        "-m",
                        "immediate",
                    ],
                    capture_output=True,
                    timeout=60,
                )
        shutil.rmtree(self.directory, ignore_errors=True)

    def _start(self, data: Path, port: int) -> None:
        self._as_postgres(
            "pg_ctl",
            "-D",
            str(data),
            "-l",
            str(data / "server.log"),
            "-o",
            f"-p {port}",
            "-w",
            "start",
        )

    def _wait_for_synchronous_replica(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            state = self._as_postgres(
                "psql",
                "-h",
                "127.0.0.1",
                "-p",
                str(self.primary_port),
                "-U",
                "postgres",
                "-Atc",
                "SELECT sync_state FROM pg_stat_replication",
            )
            if state.strip() == "sync":
                return
            time.sleep(0.2)
        raise TimeoutError("the replica never became synchronous")

    @staticmethod
    def _as_postgres(program: str, *args: str) -> str:
        done = subprocess.run(
            ["runuser", "-u", "postgres", "--", str(POSTGRES_BIN / program), *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=120,
            cwd="/",
        )
        return done.stdout
