"""A real three-node RabbitMQ cluster on this machine, for the chaos suite.

Each node is the machine's own RabbitMQ installation started a second (third, fourth)
time under its own node name, AMQP and distribution ports, data directory and no
plugins (the machine's node holds the management port). They share the machine node's
Erlang cookie, run as the `rabbitmq` user like it, and are clustered with
`join_cluster`; quorum queues declared afterwards get a member on every node.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

RABBITMQ_BIN = Path("/usr/lib/rabbitmq/bin")
RABBITMQ_HOME = "/var/lib/rabbitmq"  # the cookie the machine's node and rabbitmqctl use


@dataclass(frozen=True)
class Node:
    name: str  # e.g. lianban-c1@vm
    amqp_port: int
    directory: Path

    @property
    def url(self) -> str:
        return f"amqp://guest:guest@127.0.0.1:{self.amqp_port}//"

    def _environment(self) -> dict[str, str]:
        plugins = self.directory / "enabled_plugins"
        return {
            "PATH": os.environ["PATH"],
            "HOME": RABBITMQ_HOME,
            "RABBITMQ_NODENAME": self.name,
            "RABBITMQ_NODE_PORT": str(self.amqp_port),
            "RABBITMQ_DIST_PORT": str(self.amqp_port + 20000),
            "RABBITMQ_MNESIA_BASE": str(self.directory / "mnesia"),
            "RABBITMQ_LOG_BASE": str(self.directory / "log"),
            "RABBITMQ_PID_FILE": str(self.directory / "pid"),
            "RABBITMQ_ENABLED_PLUGINS_FILE": str(plugins),
            "RABBITMQ_CONFIG_FILE": str(self.directory / "rabbitmq"),
        }

    def start(self) -> None:
        self.directory.mkdir(parents=True, exist_ok=True)
        (self.directory / "enabled_plugins").write_text("[].\n")
        (self.directory / "rabbitmq.conf").write_text("loopback_users.guest = true\n")
        shutil.chown(self.directory, "rabbitmq", "rabbitmq")
        subprocess.run(["chown", "-R", "rabbitmq:rabbitmq", str(self.directory)], check=True)
        subprocess.run(
            ["runuser", "-u", "rabbitmq", "--", str(RABBITMQ_BIN / "rabbitmq-server"), "-detached"],
            env=self._environment(),
            check=True,
            capture_output=True,
            timeout=60,
        )
        self.await_startup()

    def await_startup(self, timeout: float = 120) -> None:
        # `await_startup` fails at once while the VM is not yet reachable: poll it.
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.ctl("await_startup", timeout=timeout)
                return
            except subprocess.CalledProcessError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(1)

    def ctl(self, *args: str, timeout: float = 60) -> str:
        completed = subprocess.run(
            ["rabbitmqctl", "-n", self.name, *args],
            check=True,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return completed.stdout

    def kill(self) -> None:
        """SIGKILL the node's Erlang VM: no clean leave, as in a power cut."""
        pid = int((self.directory / "pid").read_text().strip())
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 30
        while _listening(self.amqp_port) and time.monotonic() < deadline:
            time.sleep(0.2)

    def stop(self) -> None:
        subprocess.run(
            ["rabbitmqctl", "-n", self.name, "stop"], capture_output=True, timeout=60, check=False
        )


class Cluster:
    """Three nodes, clustered; `url` lists them all for kombu's failover."""

    def __init__(self, first_port: int = 5681) -> None:
        # Not under pytest's tmp_path: that is private to root, and nodes run as rabbitmq.
        directory = Path(tempfile.mkdtemp(prefix="lianban-rabbitmq-"))
        directory.chmod(0o755)
        self.directory = directory
        host = socket.gethostname().split(".")[0]
        self.nodes = [
            Node(f"lianban-c{n}@{host}", first_port + n - 1, directory / f"c{n}") for n in (1, 2, 3)
        ]

    @property
    def url(self) -> str:
        return ";".join(node.url for node in self.nodes)

    def start(self) -> None:
        for node in self.nodes:
            node.start()
        seed = self.nodes[0]
        for node in self.nodes[1:]:
            node.ctl("stop_app")
            node.ctl("join_cluster", seed.name)
            node.ctl("start_app")
        running = seed.ctl("cluster_status", "--formatter", "json")
        missing = [node.name for node in self.nodes if node.name not in running]
        if missing:
            raise RuntimeError(f"nodes did not join the cluster: {missing}")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex(("127.0.0.1", port)) == 0
