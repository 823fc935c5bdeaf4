"""The platform's side of the benchmark: posts bundles over HTTP and times each one's
reply as it arrives on `lianban.replies`.

Closed loop: `clients` applicants each post, wait for the reply, post again.
Open loop: bundles are posted on a fixed schedule whatever the replies do, so queueing
shows up in the latency instead of slowing the offered load down.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import threading
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass

import httpx
import pika

from contracts import topology
from contracts.catalog import BundleType
from contracts.samples import SAMPLE_PDF, sample_application


class ReplyListener:
    """Consumes the replies queue on a thread of its own and wakes whoever waits."""

    def __init__(self, amqp_url: str) -> None:
        self._parameters = pika.URLParameters(amqp_url)
        self._waiting: dict[uuid.UUID, tuple[asyncio.AbstractEventLoop, asyncio.Future[float]]] = {}
        self._early: dict[uuid.UUID, float] = {}  # replies that beat their registration
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="replies", daemon=True)
        self.received = 0

    def __enter__(self) -> ReplyListener:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)

    def expect(self, bundle_id: uuid.UUID) -> asyncio.Future[float]:
        """A future set to the monotonic time the bundle's reply arrived."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[float] = loop.create_future()
        with self._lock:
            arrived = self._early.pop(bundle_id, None)
            if arrived is None:
                self._waiting[bundle_id] = (loop, future)
        if arrived is not None:
            future.set_result(arrived)
        return future

    def _run(self) -> None:
        # Other work on this machine restarts RabbitMQ now and then: reconnect, and take
        # the replies the durable queue kept meanwhile (their latency includes the outage).
        while not self._stop.is_set():
            try:
                self._consume()
            except pika.exceptions.AMQPError:
                self._stop.wait(1.0)

    def _consume(self) -> None:
        connection = pika.BlockingConnection(self._parameters)
        try:
            channel = connection.channel()
            channel.basic_qos(prefetch_count=500)
            for method, _properties, body in channel.consume(
                topology.REPLIES_QUEUE, inactivity_timeout=0.1
            ):
                if self._stop.is_set():
                    return
                if method is None:
                    continue
                arrived = time.monotonic()
                channel.basic_ack(method.delivery_tag)
                message = json.loads(body)
                if message.get("kind") == "reply":
                    self._arrived(uuid.UUID(message["bundle_id"]), arrived)
        finally:
            if connection.is_open:
                connection.close()

    def _arrived(self, bundle_id: uuid.UUID, arrived: float) -> None:
        self.received += 1
        with self._lock:
            waiter = self._waiting.pop(bundle_id, None)
            if waiter is None:
                self._early[bundle_id] = arrived
        if waiter is not None:
            loop, future = waiter
            loop.call_soon_threadsafe(_settle, future, arrived)


def _settle(future: asyncio.Future[float], value: float) -> None:
    if not future.done():
        future.set_result(value)


@dataclass(frozen=True)
class Timed:
    """One bundle: when it was posted, when intake answered, when its reply arrived."""

    bundle_id: uuid.UUID
    sent: float
    accepted: float
    replied: float | None

    @property
    def intake_seconds(self) -> float:
        return self.accepted - self.sent

    @property
    def reply_seconds(self) -> float | None:
        return None if self.replied is None else self.replied - self.sent


class Platform:
    """Posts applications of one bundle type with a chosen selection of items."""

    def __init__(self, base_url: str, token: str, listener: ReplyListener) -> None:
        self._base_url = base_url
        self._headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self._listener = listener
        self._sequence = 0

    def upload_sample_material(self) -> None:
        response = httpx.put(
            f"{self._base_url}/v1/materials/{hashlib.sha256(SAMPLE_PDF).hexdigest()}",
            content=SAMPLE_PDF,
            headers={**self._headers, "Content-Type": "application/pdf"},
        )
        response.raise_for_status()

    def applications(
        self, bundle_type: BundleType, items: Sequence[str], count: int, phase: str
    ) -> list[bytes]:
        """Ready-encoded applications whose case numbers start with `phase-` (so a
        phase's bundles can be found in the database) and are not used before."""
        bodies = []
        for _ in range(count):
            self._sequence += 1
            project_no = f"{phase}-{self._sequence:09d}"
            application = sample_application(bundle_type, project_no, list(items), self._sequence)
            bodies.append(json.dumps(application, ensure_ascii=False).encode())
        return bodies

    async def post(
        self, client: httpx.AsyncClient, body: bytes, wait_for_reply: bool, reply_timeout: float
    ) -> Timed:
        project_no = json.loads(body)["project_no"]
        sent = time.monotonic()
        response = await client.post(
            "/v1/bundles", content=body, headers={**self._headers, "Idempotency-Key": project_no}
        )
        accepted = time.monotonic()
        if response.status_code != 202:
            raise RuntimeError(f"intake answered {response.status_code}: {response.text[:500]}")
        bundle_id = uuid.UUID(response.json()["bundle_id"])
        replied = None
        if wait_for_reply:
            try:
                replied = await asyncio.wait_for(self._listener.expect(bundle_id), reply_timeout)
            except TimeoutError:
                replied = None
        return Timed(bundle_id, sent, accepted, replied)

    def client(self, connections: int) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=self._base_url,
            timeout=60,
            limits=httpx.Limits(max_connections=connections, max_keepalive_connections=connections),
        )


async def closed_loop(
    platform: Platform,
    bodies: Sequence[bytes],
    clients: int,
    seconds: float,
    wait_for_replies: bool = True,
) -> tuple[list[Timed], float]:
    """Each client posts and waits for the reply (or only for intake's answer), until
    `seconds` pass or `bodies` run out; returns what finished and the elapsed time."""
    queue = list(reversed(bodies))
    finished: list[Timed] = []
    deadline = time.monotonic() + seconds

    async def applicant(client: httpx.AsyncClient) -> None:
        while queue and time.monotonic() < deadline:
            body = queue.pop()
            finished.append(await platform.post(client, body, wait_for_replies, 60))

    start = time.monotonic()
    async with platform.client(clients) as client:
        await asyncio.gather(*(applicant(client) for _ in range(clients)))
    return finished, time.monotonic() - start


async def open_loop(
    platform: Platform, bodies: Sequence[bytes], rate: float, wait_for_replies: bool = True
) -> tuple[list[Timed], float]:
    """Posts `bodies` at `rate` per second on a fixed schedule; returns every bundle and
    the time from the first post to the last reply (or to the last post's answer)."""
    async with platform.client(256) as client:
        start = time.monotonic()
        tasks = []
        for index, body in enumerate(bodies):
            delay = start + index / rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(platform.post(client, body, wait_for_replies, 60)))
        timed = await asyncio.gather(*tasks)
    ends = [t.replied or t.accepted for t in timed]
    return list(timed), max(ends) - start
