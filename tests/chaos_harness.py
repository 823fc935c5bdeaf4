"""The chaos harness: the real stack as separate processes, a steady stream of bundles,
faults injected while they flow, and a Jepsen-style check once it has settled.

    Platform ──HTTP──▶ serve ─┐                       ┌─▶ adapter police ──▶ police simulator
                              ├─ PostgreSQL ─ relay ─▶ RabbitMQ ─▶ adapter medical_insurance …
       reply collector ◀──────┘        correlate ◀────┘  adapter health (simulated in-process)

Every role runs twice, as separate `lianban` processes side by side (replicas), under a
supervisor that restarts a process when it dies, as systemd or Kubernetes would.
Department systems are the real simulators on loopback, in this process, so the check
can count their filings. Faults:

- SIGKILL of a role at a step boundary (`runtime.failpoints`), once per boundary;
- RabbitMQ stopped and started under load (`rabbitmqctl stop_app`/`start_app`);
- PostgreSQL restarted under load;
- a department system down (its server stopped, connections refused) for longer than
  naive requeues would survive, then back on the same port.

The check (`Verdict`): every bundle received got exactly one reply (lost, unexpected);
every department system holds exactly one filing per item sent to it (duplicated
effects, missing effects); every dependent item was decided after its prerequisites;
every queue, parking lots and retry tiers included, is empty.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from harness import AUTH, TEST_API_TOKEN, free_port, new_project_no
from kombu import Connection, Message, Queue
from sqlalchemy import select

from adapters.registry import installed_adapters
from adapters.simulators.base import DepartmentState
from adapters.simulators.systems import installed_simulators
from contracts import topology
from contracts.catalog import Catalog
from contracts.samples import SAMPLE_PDF, sample_application
from router.store import Database, EventRow, ItemRow
from runtime.messaging.declaration import queues
from runtime.messaging.signing import ROUTER_SIGNER, new_key
from runtime.serving import ThreadedServer

LIANBAN = str(Path(sys.executable).with_name("lianban"))
REPLICAS = 2
_REPLICA_SUFFIXES = ["", *(f"-{n}" for n in range(2, REPLICAS + 1))]
BUNDLE_TYPE = "newborn"
# Departments of the newborn bundle without a real adapter: simulated inside their adapter.
SIMULATED_DEPARTMENTS = ("health",)


@dataclass
class RoleProcess:
    """One `lianban` process under supervision: restarted whenever it exits."""

    name: str
    argv: list[str]
    env: dict[str, str]
    log_path: Path
    process: subprocess.Popen[bytes] | None = None
    failpoint_kills: int = 0

    def start(self, failpoints: str = "") -> None:
        env = {**self.env, "LIANBAN_FAILPOINTS": failpoints}
        with self.log_path.open("ab") as log:
            self.process = subprocess.Popen(
                [LIANBAN, *self.argv], env=env, stdout=log, stderr=subprocess.STDOUT
            )

    def exited(self) -> bool:
        return self.process is not None and self.process.poll() is not None

    def kill(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.kill()


class Supervisor:
    """Restarts dead roles, unarmed, as systemd or Kubernetes would, and counts kills:
    at failpoints, and the SIGKILLs that replace a process by an armed one (wherever it
    happens to be at that moment)."""

    def __init__(self, roles: list[RoleProcess]) -> None:
        self.roles = {role.name: role for role in roles}
        self.random_kills = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._watch, daemon=True)

    def start(self) -> None:
        for role in self.roles.values():
            role.start()
        self._thread.start()

    def _watch(self) -> None:
        while not self._stop.wait(0.2):
            with self._lock:
                for role in self.roles.values():
                    if role.exited():
                        assert role.process is not None
                        if role.process.returncode == -signal.SIGKILL:
                            role.failpoint_kills += 1
                        role.start()

    def arm(self, role_name: str, boundary: str, nth: int, timeout: float) -> bool:
        """Replace a role by one with `boundary` armed; True once it has died there."""
        role = self.roles[role_name]
        with self._lock:
            role.kill()
            self.random_kills += 1
            kills = role.failpoint_kills
            role.start(f"{boundary}={nth}")
        deadline = time.monotonic() + timeout
        while role.failpoint_kills == kills and time.monotonic() < deadline:
            time.sleep(0.2)
        return role.failpoint_kills > kills

    @property
    def failpoint_kills(self) -> int:
        return sum(role.failpoint_kills for role in self.roles.values())

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        for role in self.roles.values():
            role.stop()


class Departments:
    """The real department simulators on loopback; each can be taken down and brought
    back on the same port with its memory intact."""

    def __init__(self, decision_delay: float = 0.05) -> None:
        simulators = installed_simulators()
        self.states: dict[str, DepartmentState] = {}
        self._apps: dict[str, Any] = {}
        self._servers: dict[str, ThreadedServer] = {}
        self.ports: dict[str, int] = {}
        for department in sorted(installed_adapters()):
            state = DepartmentState(code=department, decision_delay=decision_delay)
            self.states[department] = state
            self._apps[department] = simulators[department](state)

    def start(self) -> None:
        for department in self.states:
            self._serve(department, port=0)

    def _serve(self, department: str, port: int) -> None:
        server = ThreadedServer(self._apps[department], port=port)
        server.start()
        self._servers[department] = server
        self.ports[department] = int(server.url.rsplit(":", 1)[1].split("/")[0])

    def url(self, department: str) -> str:
        return self._servers[department].url

    def take_down(self, department: str) -> None:
        self._servers[department].stop()

    def bring_back(self, department: str) -> None:
        self._serve(department, port=self.ports[department])

    def stop(self) -> None:
        for server in self._servers.values():
            with contextlib.suppress(Exception):
                server.stop()


class ReplyCollector:
    """The platform's side of the replies queue: records every reply delivered."""

    def __init__(self, broker_url: str) -> None:
        self._broker_url = broker_url
        self.deliveries: dict[str, list[str]] = defaultdict(list)  # bundle → reply ids
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _run(self) -> None:
        queue = Queue(topology.REPLIES_QUEUE, no_declare=True)
        while not self._stop.is_set():
            try:
                with (
                    Connection(self._broker_url, heartbeat=10) as connection,
                    connection.Consumer(
                        queue, callbacks=[self._on_reply], accept=["json"], prefetch_count=100
                    ),
                ):
                    while not self._stop.is_set():
                        with contextlib.suppress(TimeoutError):
                            connection.drain_events(timeout=0.5)
                        connection.heartbeat_check()
            except Exception:
                self._stop.wait(1.0)  # the broker is restarting: reconnect

    def _on_reply(self, body: Any, message: Message) -> None:
        if body.get("kind") == "reply":
            self.deliveries[str(body["bundle_id"])].append(str(message.properties["message_id"]))
        message.ack()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)


class Platform:
    """Submits bundles at a steady rate, retrying (same idempotency key) through outages."""

    def __init__(self, base_urls: list[str], catalog: Catalog) -> None:
        self._base_urls = itertools.cycle(base_urls)  # intake replicas, taken in turn
        self._bundle_type = catalog.bundle_types[BUNDLE_TYPE]
        self.bundles: dict[str, str] = {}  # bundle id → case number
        self.refused: list[str] = []
        self._thread: threading.Thread | None = None

    def upload_material(self) -> None:
        digest = hashlib.sha256(SAMPLE_PDF).hexdigest()
        self._retrying(
            lambda client: client.put(
                f"/v1/materials/{digest}",
                content=SAMPLE_PDF,
                headers={"Content-Type": "application/pdf"},
            )
        )

    def submit_stream(self, per_second: float, stop: threading.Event) -> None:
        """Submit bundles at `per_second` until `stop` is set."""

        def run() -> None:
            while not stop.is_set():
                started = time.monotonic()
                self.submit_one()
                stop.wait(max(0.0, 1 / per_second - (time.monotonic() - started)))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def wait_submitted(self, timeout: float) -> None:
        assert self._thread is not None
        self._thread.join(timeout)
        assert not self._thread.is_alive(), "the platform could not finish submitting"

    def submit_one(self) -> None:
        project_no = new_project_no()
        application = sample_application(self._bundle_type, project_no)
        response = self._retrying(
            lambda client: client.post(
                "/v1/bundles", json=application, headers={"Idempotency-Key": project_no}
            )
        )
        if response.status_code >= 400:
            self.refused.append(f"{response.status_code} {response.text[:300]}")
            return
        self.bundles[response.json()["bundle_id"]] = project_no

    def _retrying(
        self, call: Callable[[httpx.Client], httpx.Response], timeout: float = 300
    ) -> httpx.Response:
        deadline = time.monotonic() + timeout
        while True:
            base_url = next(self._base_urls)
            try:
                with httpx.Client(base_url=base_url, headers=AUTH, timeout=30) as client:
                    response = call(client)
                if response.status_code < 500:
                    return response
            except httpx.HTTPError:
                pass  # that intake is restarting, or died at a failpoint: same key, next one
            if time.monotonic() > deadline:
                raise TimeoutError("no intake came back")
            time.sleep(0.5)


@dataclass
class Verdict:
    bundles: int
    replied: int
    lost: list[str]
    unexpected: dict[str, int]  # bundle → distinct replies, where more than one
    redelivered_replies: int  # the same reply delivered again (same message id)
    duplicated_effects: dict[str, dict[str, int]]
    missing_effects: dict[str, list[str]]
    order_violations: list[str]
    undrained: dict[str, int]
    failpoint_kills: int = 0
    random_kills: int = 0
    broker_restarts: int = 0
    database_restarts: int = 0
    department_outages: int = 0
    node_kills: int = 0
    notes: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not (
            self.lost
            or self.unexpected
            or self.duplicated_effects
            or self.missing_effects
            or self.order_violations
            or self.undrained
        )

    def summary(self) -> str:
        figures = {
            "bundles": self.bundles,
            "replied": self.replied,
            "lost": len(self.lost),
            "unexpected": len(self.unexpected),
            "redelivered_replies": self.redelivered_replies,
            "duplicated_effects": sum(len(d) for d in self.duplicated_effects.values()),
            "missing_effects": sum(len(m) for m in self.missing_effects.values()),
            "order_violations": len(self.order_violations),
            "undrained_queues": self.undrained,
            "failpoint_kills": self.failpoint_kills,
            "random_kills": self.random_kills,
            "broker_restarts": self.broker_restarts,
            "database_restarts": self.database_restarts,
            "department_outages": self.department_outages,
            "node_kills": self.node_kills,
        }
        return json.dumps(figures, ensure_ascii=False)


class ChaosStack:
    """Everything above, started together against one database and one broker (a URL
    that may list several cluster nodes, `amqp://a;amqp://b`)."""

    def __init__(
        self, *, database_url: str, broker_url: str, catalog: Catalog, workdir: Path
    ) -> None:
        self.database_url = database_url
        self.broker_url = broker_url
        self.catalog = catalog
        self.workdir = workdir
        self.departments = Departments()
        self.collector = ReplyCollector(broker_url)
        self.ports = [free_port() for _ in range(REPLICAS)]
        self.platform = Platform([f"http://127.0.0.1:{port}" for port in self.ports], catalog)
        self.supervisor: Supervisor | None = None
        self.broker_restarts = 0
        self.database_restarts = 0
        self.department_outages = 0
        self.node_kills = 0

    def _environment(self, extra: dict[str, str]) -> dict[str, str]:
        env = {
            **os.environ,
            "LIANBAN_DATABASE_URL": self.database_url,
            "LIANBAN_BROKER_URL": self.broker_url,
            "LIANBAN_MATERIALS_DIR": str(self.workdir / "materials"),
            "LIANBAN_LOG_LEVEL": "warning",
            "LIANBAN_OUTBOUND_HOSTS": "127.0.0.1",  # the simulated departments
            **extra,
        }
        for department in self.departments.states:
            env[f"LIANBAN_ADAPTER_{department.upper()}_URL"] = self.departments.url(department)
        return env

    def start(self, environment: dict[str, str]) -> None:
        self.departments.start()
        env = self._environment(environment)
        logs = self.workdir / "logs"
        logs.mkdir(parents=True, exist_ok=True)
        commands = {
            "relay": ["relay"],
            "correlate": ["correlate"],
            **{f"adapter-{d}": ["adapter", d] for d in sorted(self.departments.states)},
            **{f"adapter-{d}": ["adapter", d, "--simulated"] for d in SIMULATED_DEPARTMENTS},
        }
        # Every role twice, side by side: the first of each is the one faults are aimed at.
        roles = [
            RoleProcess(
                f"serve{suffix}",
                ["serve"],
                {**env, "LIANBAN_PORT": str(port)},
                logs / f"serve{suffix}",
            )
            for suffix, port in zip(_REPLICA_SUFFIXES, self.ports, strict=True)
        ] + [
            RoleProcess(f"{name}{suffix}", argv, env, logs / f"{name}{suffix}")
            for name, argv in commands.items()
            for suffix in _REPLICA_SUFFIXES
        ]
        self.supervisor = Supervisor(roles)
        self.supervisor.start()
        self.platform.upload_material()  # waits for the intake to answer
        self.collector.start()

    def restart_broker(self, node: str | None = None, down_seconds: float = 3.0) -> None:
        target = ["-n", node] if node else []
        subprocess.run(["rabbitmqctl", *target, "stop_app"], check=True, capture_output=True)
        time.sleep(down_seconds)
        subprocess.run(["rabbitmqctl", *target, "start_app"], check=True, capture_output=True)
        self.broker_restarts += 1

    def restart_database(self) -> None:
        version = sorted(os.listdir("/etc/postgresql"))[-1]
        subprocess.run(
            ["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"],
            check=True,
            capture_output=True,
            timeout=120,
        )
        self.database_restarts += 1

    def department_outage(self, department: str, seconds: float) -> None:
        self.departments.take_down(department)
        time.sleep(seconds)
        self.departments.bring_back(department)
        self.department_outages += 1

    def wait_for_replies(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if set(self.platform.bundles) <= set(self.collector.deliveries):
                return
            time.sleep(0.5)

    def check(self, settle_seconds: float = 3.0) -> Verdict:
        time.sleep(settle_seconds)  # late redeliveries, if any, land before the count
        bundles = set(self.platform.bundles)
        deliveries = self.collector.deliveries
        distinct = {bundle: set(ids) for bundle, ids in deliveries.items()}
        database = Database(self.database_url)
        try:
            items = _items(database, bundles)
            order_violations = _order_violations(database, self.catalog, bundles)
        finally:
            database.dispose()
        duplicated, missing = self._effects(items)
        assert self.supervisor is not None
        return Verdict(
            bundles=len(bundles),
            replied=len(bundles & set(distinct)),
            lost=sorted(bundles - set(distinct)),
            unexpected={
                bundle: len(ids)
                for bundle, ids in distinct.items()
                if len(ids) > 1 or bundle not in bundles
            },
            redelivered_replies=sum(len(ids) for ids in deliveries.values())
            - sum(len(ids) for ids in distinct.values()),
            duplicated_effects=duplicated,
            missing_effects=missing,
            order_violations=order_violations,
            undrained=self._undrained(),
            failpoint_kills=self.supervisor.failpoint_kills,
            random_kills=self.supervisor.random_kills,
            broker_restarts=self.broker_restarts,
            database_restarts=self.database_restarts,
            department_outages=self.department_outages,
            node_kills=self.node_kills,
            notes=self.platform.refused,
        )

    def _effects(
        self, items: list[tuple[str, str, str]]
    ) -> tuple[dict[str, dict[str, int]], dict[str, list[str]]]:
        duplicated: dict[str, dict[str, int]] = {}
        missing: dict[str, list[str]] = {}
        for department, state in self.departments.states.items():
            expected = {f"{bundle}:{item}" for bundle, item, dept in items if dept == department}
            per_subject = state.duplicate_filings()
            if per_subject:
                duplicated[department] = {f"{k[0]}/{k[1]}": n for k, n in per_subject.items()}
            absent = sorted(expected - set(state.filings))
            extra = sorted(set(state.filings) - expected)
            if absent or extra:
                missing[department] = absent + [f"unexpected {key}" for key in extra]
        return duplicated, missing

    def _undrained(self) -> dict[str, int]:
        depths: dict[str, int] = {}
        with Connection(self.broker_url) as connection:
            for queue in queues(self.catalog.departments):
                declared = queue(connection.default_channel).queue_declare(passive=True)
                if declared.message_count:
                    depths[queue.name] = int(declared.message_count)
        return depths

    def stop(self) -> None:
        if self.supervisor is not None:
            self.supervisor.stop()
        self.collector.stop()
        self.departments.stop()


def _items(database: Database, bundles: set[str]) -> list[tuple[str, str, str]]:
    """(bundle, item, department) of every item that reached a department."""
    with database.transaction() as session:
        rows = session.execute(
            select(ItemRow.bundle_id, ItemRow.code, ItemRow.department, ItemRow.dispatch_id)
        ).all()
    return [
        (str(bundle), code, department)
        for bundle, code, department, dispatch_id in rows
        if str(bundle) in bundles and dispatch_id is not None
    ]


def _order_violations(database: Database, catalog: Catalog, bundles: set[str]) -> list[str]:
    """Items decided before a prerequisite was, or dispatched for a decision before it."""
    with database.transaction() as session:
        events = session.execute(
            select(EventRow.bundle_id, EventRow.item, EventRow.state, EventRow.id).order_by(
                EventRow.id
            )
        ).all()
    first: dict[tuple[str, str | None, str], int] = {}
    for bundle, item, state, event_id in events:
        first.setdefault((str(bundle), item, state), event_id)
    bundle_type = catalog.bundle_types[BUNDLE_TYPE]
    violations = []
    for bundle in bundles:
        for item in bundle_type.items:
            decided = first.get((bundle, item.code, "approved"))
            if decided is None:
                continue
            for group in item.prerequisites:
                before = [first.get((bundle, code, "approved")) for code in group.any_of]
                known = [event for event in before if event is not None]
                if not known or min(known) > decided:
                    violations.append(f"{bundle}: {item.code} approved before {group.any_of}")
    return violations


def provision_credentials(workdir: Path, catalog: Catalog) -> dict[str, str]:
    """API tokens and signing keys for the processes, as an operator provisions them.

    One key directory serves every role here; in production each process holds only its
    own signer's key (see README, signing keys).
    """
    keys = workdir / "keys"
    keys.mkdir(parents=True, exist_ok=True)
    trusted = []
    for signer in (ROUTER_SIGNER, *catalog.departments):
        pem, entry = new_key(signer)
        (keys / f"{signer}.pem").write_bytes(pem)
        trusted.append(entry.as_json())
    (workdir / "trusted.json").write_text(json.dumps(trusted), encoding="utf-8")
    (workdir / "tokens.json").write_text(json.dumps([TEST_API_TOKEN.as_json()]), encoding="utf-8")
    return {
        "LIANBAN_SIGNING_KEYS_DIR": str(keys),
        "LIANBAN_TRUSTED_KEYS": str(workdir / "trusted.json"),
        "LIANBAN_TOKENS_FILE": str(workdir / "tokens.json"),
    }


@contextlib.contextmanager
def running_chaos_stack(
    *, database_url: str, broker_url: str, catalog: Catalog, workdir: Path
) -> Iterator[ChaosStack]:
    stack = ChaosStack(
        database_url=database_url, broker_url=broker_url, catalog=catalog, workdir=workdir
    )
    try:
        stack.start(provision_credentials(workdir, catalog))
        yield stack
    finally:
        stack.stop()
