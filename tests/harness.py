"""Runs the whole stack inside a test and talks to it over its real HTTP API."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar, TypeVar

import httpx
from fastapi import FastAPI, Request, Response
from kombu import Connection, Queue
from PIL import Image
from sqlalchemy import select

from adapters.base import Adapter
from adapters.context import AdapterContext
from adapters.registry import simulate_every_department
from adapters.resilience import RetryPolicy
from adapters.simulated import DecisionLedger, Scenario
from contracts import topology
from contracts.catalog import Catalog, default_catalog
from contracts.messages import Decided, ItemDispatch, OutcomeResult
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.settings import Settings
from lianban.stack import Role, Stack
from router.domain.intake import Intake, Received
from router.http.auth import Scope, mint
from router.store import Database, OutboxRow
from runtime.messaging import Broker, ConsumerLoop, Outgoing, Publisher, declare_topology
from runtime.messaging.declaration import department_queue, replies_queue
from runtime.messaging.signing import ROUTER_SIGNER, Keyring
from runtime.serving import ThreadedServer
from runtime.storage import MaterialStore

T = TypeVar("T")

# The tests call the API as the platform and as an operator: one token with every scope.
TEST_TOKEN, TEST_API_TOKEN = mint("tests", Scope)
AUTH = {"Authorization": f"Bearer {TEST_TOKEN.get_secret_value()}"}
# Keys for the router and every department, all trusted: for workers and correlators that
# tests build themselves (a Stack without configured keys makes its own the same way).
KEYRING = Keyring.ephemeral([ROUTER_SIGNER, *default_catalog().departments])


ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def python_blocks(page: Path) -> list[str]:
    """The ```python examples of a docs page, in order."""
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


def eventually(
    observe: Callable[[], T],
    until: Callable[[T], object] = bool,
    *,
    timeout: float,
    every: float = 0.05,
    message: str,
) -> T:
    """What `observe` returns once `until` holds of it (by default: once it is truthy),
    observed every `every` seconds; after `timeout` seconds, AssertionError with `message`
    and the last observation.

    For waiting on other threads and processes; time itself is simulated, never waited for.
    """
    deadline = time.monotonic() + timeout
    while True:
        observed = observe()
        if until(observed):
            return observed
        if time.monotonic() >= deadline:
            raise AssertionError(f"{message} within {timeout} s; last seen: {observed!r:.2000}")
        time.sleep(every)


def signed(message: Outgoing, signer: str = ROUTER_SIGNER, keyring: Keyring = KEYRING) -> Outgoing:
    """`message` with `signer`'s signature headers."""
    signature = keyring.sign(
        signer,
        body=message.body,
        message_id=message.message_id,
        correlation_id=message.correlation_id,
    )
    return dataclasses.replace(message, headers={**message.headers, **signature})


@dataclass
class Running:
    stack: Stack
    client: httpx.Client
    ledger: DecisionLedger

    def submit(self, application: dict[str, Any]) -> httpx.Response:
        return self.client.post(
            "/v1/bundles", json=application, headers={"Idempotency-Key": application["project_no"]}
        )

    def wait_for_reply(self, reply_url: str, timeout: float = 60.0) -> dict[str, Any]:
        response = eventually(
            lambda: self.client.get(reply_url),
            lambda response: response.status_code == 200,
            timeout=timeout,
            every=0.02,
            message=f"no reply at {reply_url}",
        )
        reply: dict[str, Any] = response.json()
        return reply

    def wait_for_item(self, status_url: str, item: str, state: str, timeout: float = 30.0) -> None:
        def item_state() -> str:
            items = {i["item"]: i["state"] for i in self.client.get(status_url).json()["items"]}
            return items[item]

        eventually(
            item_state,
            lambda now: now == state,
            timeout=timeout,
            every=0.02,
            message=f"{item} never reached {state}",
        )


@contextmanager
def running_stack(
    settings: Settings,
    catalog: Catalog,
    scenario: Scenario | None = None,
    adapters: Sequence[Adapter] = (),
) -> Iterator[Running]:
    """Every role, the given adapters, and a simulator for every other department."""
    ledger = DecisionLedger()
    simulators = simulate_every_department(
        catalog, scenario, ledger, except_for=[adapter.department for adapter in adapters]
    )
    stack = Stack(settings, catalog, set(Role), [*adapters, *simulators])
    stack.start()
    try:
        with httpx.Client(base_url=stack.base_url, headers=AUTH, timeout=30) as client:
            put_sample_material(client)
            yield Running(stack, client, ledger)
    finally:
        stack.stop()


def put_sample_material(client: httpx.Client) -> None:
    """Store the sample PDF the sample applications cite (by its SHA-256)."""
    client.put(
        f"/v1/materials/{hashlib.sha256(SAMPLE_PDF).hexdigest()}",
        content=SAMPLE_PDF,
        headers={"Content-Type": "application/pdf"},
    ).raise_for_status()


def intake_with_sample_material(
    database: Database, catalog: Catalog, materials: MaterialStore
) -> Intake:
    """Intake in process, the sample applications' material stored for it."""
    materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    return Intake(database, catalog, materials)


def received_dispatches(
    database: Database, catalog: Catalog, materials: MaterialStore, bundle_type: str = "newborn"
) -> list[ItemDispatch]:
    """A bundle received through intake (its sample material stored first); the
    dispatches intake wrote to the outbox."""
    project_no = new_project_no()
    result = intake_with_sample_material(database, catalog, materials).submit(
        sample_application(catalog.bundle_types[bundle_type], project_no), project_no
    )
    assert isinstance(result, Received)
    with database.transaction() as session:
        rows = session.scalars(
            select(OutboxRow).where(OutboxRow.correlation_id == str(result.receipt.bundle_id))
        ).all()
        return [ItemDispatch.model_validate_json(row.body) for row in rows]


class Platform:
    """The platform's callback endpoint on loopback; it can refuse the first few pushes.
    It keeps each push it took as sent (headers and body bytes), for its signature."""

    def __init__(self, refuse_first: int = 0) -> None:
        self.received: list[dict[str, Any]] = []
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.refused_requests: list[tuple[dict[str, str], bytes]] = []
        self.refused = 0
        self._refuse_first = refuse_first
        self._lock = threading.Lock()
        app = FastAPI()

        @app.post("/callback")
        async def callback(request: Request) -> Response:
            raw = await request.body()
            with self._lock:
                if self.refused < self._refuse_first:
                    self.refused += 1
                    self.refused_requests.append((dict(request.headers), raw))
                    return Response(status_code=503)
                self.received.append(json.loads(raw))
                self.requests.append((dict(request.headers), raw))
            return Response(status_code=204)

        self.server = ThreadedServer(app)

    def __enter__(self) -> Platform:
        self.server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.stop()

    @property
    def url(self) -> str:
        return f"{self.server.url}/callback"

    def of(self, bundle_id: str, kind: str | None = None) -> list[dict[str, Any]]:
        """The bundle's pushes (of one `kind`: reply, item_notice, acceptance), in order."""
        with self._lock:
            return [
                body
                for body in self.received
                if body["bundle_id"] == bundle_id and kind in (None, body["kind"])
            ]

    def requests_of(self, bundle_id: str) -> list[tuple[dict[str, str], bytes]]:
        with self._lock:
            return [r for r in self.requests if json.loads(r[1])["bundle_id"] == bundle_id]


def replies_on_queue(broker_url: str, bundle_id: str) -> list[dict[str, Any]]:
    """Drain the replies queue (what an AMQP consumer of replies gets); the bodies of
    this bundle's replies, in the order they came."""
    found = []
    with Connection(broker_url) as connection:
        queue = connection.SimpleQueue(replies_queue())
        try:
            while True:
                message = queue.get(timeout=1)
                if message.properties.get("correlation_id") == bundle_id:
                    found.append(json.loads(message.body))
                message.ack()
        except queue.Empty:
            return found
        finally:
            queue.close()


def put_material(
    stack: Stack, digest: str, content: bytes | Iterator[bytes], media_type: str
) -> httpx.Response:
    """Upload a material (or anything claiming to be one) to a running intake API."""
    return httpx.put(
        f"{stack.base_url}/v1/materials/{digest}",
        content=content,
        headers={"Content-Type": media_type, **AUTH},
        timeout=60,
    )


def sample_png() -> bytes:
    """A small PNG an image reader opens (material checks parse images whole)."""
    buffer = io.BytesIO()
    Image.new("RGB", (4, 4), "white").save(buffer, "PNG")
    return buffer.getvalue()


def new_project_no() -> str:
    return f"T{uuid.uuid4().hex[:20].upper()}"


def free_port() -> int:
    """A port that was free a moment ago, for a server whose URL must be known before it starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


@contextmanager
def serving_intake(directory: Path, catalog: Catalog) -> Iterator[Stack]:
    """The intake API alone on a real port, on SQLite in `directory`: nothing consumes,
    so the outbox keeps its rows."""
    settings = Settings(
        database_url=f"sqlite:///{directory / 'intake.db'}",
        materials_dir=directory / "materials",
        port=0,
        api_tokens=(TEST_API_TOKEN,),
    )
    stack = Stack(settings, catalog, {Role.SERVE})
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


def emptied_department_queue(broker_url: str, catalog: Catalog, department: str) -> Broker:
    """A broker with the topology declared, and `department`'s queue and parking lot
    empty."""
    broker = Broker(broker_url)
    queue = department_queue(department)
    with broker.connect() as connection:
        declare_topology(connection, catalog.departments)
        for name in (queue.name, topology.parking_queue(queue.name)):
            Queue(name, no_declare=True)(connection.default_channel).purge()
    return broker


def publish_to_department(broker: Broker, department: str, *bodies: bytes) -> list[str]:
    """Publish raw bodies onto `department`'s queue; returns their message ids."""
    outgoing = [
        Outgoing(
            exchange=topology.DISPATCH_EXCHANGE,
            routing_key=topology.dispatch_routing_key(department, "any"),
            body=body,
            message_id=str(uuid.uuid4()),
            correlation_id=str(uuid.uuid4()),
        )
        for body in bodies
    ]
    with Publisher(broker) as publisher:
        publisher.publish_many(outgoing)
    return [message.message_id for message in outgoing]


@contextmanager
def consuming(loop: ConsumerLoop) -> Iterator[None]:
    """Run `loop` on a thread of its own while the block runs."""
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    assert loop.ready.wait(30)
    try:
        yield
    finally:
        stop.set()
        thread.join(30)


class PoliceBehindAPort(Adapter):
    """Police's system over HTTP at `url` (POST /filings): down while nothing listens
    there. One call a delivery; the circuit opens at each failure and half-opens 0.5 s
    later (within a delivery's 1 s budget, so each delivery probes); the request is
    parked once it has been retried for 3 s (the 1 s and 5 s delays make that the third
    delivery)."""

    department = "police"
    services = default_catalog().services_of("police")
    retry = RetryPolicy(
        max_attempts=1, initial_backoff=0.01, budget_seconds=1, give_up_after_seconds=3
    )
    breaker_threshold = 1
    breaker_reset_seconds = 0.5
    url: ClassVar[str] = ""

    async def handle(self, item: object, ctx: AdapterContext) -> OutcomeResult:
        (await ctx.http.post(f"{self.url}/filings")).raise_for_status()
        return Decided(approved=True)


def police_system(port: int) -> ThreadedServer:
    """Police's system come back: a loopback server on `port` that takes every filing."""
    system = FastAPI()

    @system.post("/filings")
    def file() -> dict[str, str]:
        return {"filed": "ok"}

    server = ThreadedServer(system, port=port)
    server.start()
    return server


def item_status(running: Running, status_url: str, item: str) -> dict[str, Any]:
    """One item of a bundle's status, as the API gives it."""
    items = {entry["item"]: entry for entry in running.client.get(status_url).json()["items"]}
    return items[item]
