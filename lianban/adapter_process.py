"""Runs department adapters on threads, with the health, metrics and decision endpoints:
the whole of `lianban adapter <department>`, and the base the router's `Stack` adds its
roles to.

It imports nothing of the router (no web framework, no database): an adapter process
holds the messaging runtime, the contracts, its adapter and the signing keys, and stays
small. The decision endpoint (FastAPI) is imported only by a process whose department
calls back.
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Callable, Iterable
from http.server import ThreadingHTTPServer
from typing import TYPE_CHECKING
from wsgiref.simple_server import WSGIServer

import structlog

from adapters.base import Adapter
from adapters.decisions import CalledBack
from adapters.worker import AdapterWorker
from contracts.errors import ConfigurationError
from lianban.settings import Settings
from runtime.health import Health, serve_health
from runtime.messaging import Broker
from runtime.messaging.signing import ROUTER_SIGNER, Keyring
from runtime.storage import LocalMaterialStore, MaterialStore, open_store

if TYPE_CHECKING:
    from runtime.serving import ThreadedServer

log = structlog.get_logger(__name__)


class AdapterProcess:
    """Starts the adapters' workers on threads and stops them together."""

    def __init__(
        self, settings: Settings, departments: Iterable[str], adapters: Iterable[Adapter]
    ) -> None:
        """`departments`: every department of the catalog, whose keys an unconfigured
        keyring makes up."""
        self.settings = settings
        self.adapters = list(adapters)
        self.broker = Broker(settings.broker_url)
        self.materials = material_store(settings)
        self.keyring = message_keyring(settings, departments)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._on_stop: list[Callable[[], None]] = []
        self._ready: list[threading.Event] = []
        self._decisions_server: ThreadedServer | None = None
        self._metrics_server: WSGIServer | None = None
        self._health_server: ThreadingHTTPServer | None = None

    def start(self) -> None:
        # The router declares the topology: an adapter's broker user may only read its own
        # queue (deploy/rabbitmq/definitions.json).
        self._start_adapters(declare_queues=False)
        self._start_monitoring(checks=[])
        self._wait_ready()
        log.info("adapters.started", adapters=[adapter.department for adapter in self.adapters])

    @property
    def decisions_url(self) -> str:
        if self._decisions_server is None:
            raise RuntimeError("no decision endpoint in this process (LIANBAN_DECISIONS_PORT)")
        return self._decisions_server.url

    def wait(self) -> None:
        """Block until stopped (by `stop` or Ctrl-C). Every long-running process
        (`lianban serve`, `relay`, `correlate`, `router`, `adapter`) waits here once started,
        so this is where its garbage collection is tuned for serving."""
        serve_with_young_garbage_collection()
        try:
            while not self._stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        for undo in self._on_stop:
            undo()
        if self._decisions_server is not None:
            self._decisions_server.stop()
        for server in (self._metrics_server, self._health_server):
            if server is not None:
                server.shutdown()
                server.server_close()
        # An adapter worker may spend its grace period finishing department calls in
        # flight, then closing its clients: wait longer than that.
        deadline = time.monotonic() + 30
        for thread in self._threads:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
            if thread.is_alive():
                log.warning("stack.thread_did_not_stop", thread=thread.name)

    def _start_adapters(self, *, declare_queues: bool) -> None:
        for adapter in self.adapters:
            self._check_area(adapter)
            worker = AdapterWorker(
                adapter,
                self.broker,
                materials=self.materials,
                keyring=self.keyring,
                declare_queue=declare_queues,
            )
            self._ready.append(worker.ready)
            self._spawn(f"adapter-{adapter.department}", worker.run)
        if self.settings.decisions_port is not None:
            self._start_decision_endpoint()

    def _start_monitoring(self, checks: list[Callable[[], str | None]]) -> None:
        """The metrics and health ports, when configured; `checks` are what else health
        reports on besides the threads and consumers."""
        if self.settings.metrics_port is not None:
            from runtime.process_metrics import serve_process_metrics

            self._metrics_server = serve_process_metrics(
                self.settings.metrics_host, self.settings.metrics_port
            )
        if self.settings.health_port is not None:
            health = Health(self._threads, self._ready, checks)
            self._health_server = serve_health(
                health, self.settings.health_host, self.settings.health_port
            )

    def _wait_ready(self) -> None:
        for ready in self._ready:
            if not ready.wait(timeout=30):
                raise TimeoutError("a consumer did not connect within 30 s")

    def _check_area(self, adapter: Adapter) -> None:
        """An adapter reads its area's queue only if the router routes by that area: a
        province-wide queue beside area queues (or the reverse) would get items twice."""
        declared = self.settings.adapter_areas.get(adapter.department)
        if (adapter.area is None) != (declared is None) or (
            declared is not None and adapter.area not in declared
        ):
            raise ConfigurationError(
                f"adapter {adapter.department!r} serves area {adapter.area or 'the province'}, "
                f"but LIANBAN_ADAPTER_AREAS lists {declared or 'no areas'} for it: start it "
                "with --area set to one of the listed areas, or list its area"
            )

    def _start_decision_endpoint(self) -> None:
        calling_back = {
            adapter.department: adapter
            for adapter in self.adapters
            if isinstance(adapter.decisions, CalledBack)
        }
        if not calling_back:
            return
        if not self.settings.decisions_secret:
            raise ConfigurationError(
                "departments that call back need LIANBAN_DECISIONS_SECRET: the secret their "
                "decision pushes are signed with"
            )
        from adapters.decision_endpoint import decision_app
        from runtime.messaging import Publisher
        from runtime.serving import ThreadedServer

        app = decision_app(
            calling_back, self.keyring, Publisher(self.broker), self.settings.decisions_secret
        )
        self._decisions_server = ThreadedServer(
            app, self.settings.decisions_host, self.settings.decisions_port or 0
        )
        self._decisions_server.start()

    def _spawn(self, name: str, target: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(target=target, args=(self._stop,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)


YOUNG_COLLECTION_THRESHOLD = 10_000
"""Container allocations (net of deallocations) between two collections of the youngest
generation: ten times CPython's 700. Most of a message's objects are freed by reference
counting before then; the cyclic garbage left (a few hundred objects a bundle) waits a
little longer, a few MiB at most."""


def serve_with_young_garbage_collection() -> None:
    """Collect the start-up garbage, then freeze what survives: the imported modules,
    catalogs and pools are never traversed again, so a full collection under load scans
    only the objects made since (at 10 bundles/s one took ~100 ms of CPU over 185,000
    objects in `serve`). Young collections come less often (`YOUNG_COLLECTION_THRESHOLD`).
    """
    gc.collect()
    gc.freeze()
    _, *older = gc.get_threshold()
    gc.set_threshold(YOUNG_COLLECTION_THRESHOLD, *older)


def material_store(settings: Settings) -> MaterialStore:
    """LIANBAN_MATERIALS_URL when it is set (s3://… or file://…), else the local
    LIANBAN_MATERIALS_DIR."""
    if settings.materials_url:
        return open_store(settings.materials_url)
    return LocalMaterialStore(settings.materials_dir)


def message_keyring(settings: Settings, departments: Iterable[str]) -> Keyring:
    """The configured signing and trusted keys; without any, fresh keys for the router
    and every department, which only this process knows — enough when every role runs
    here (the demo, `run-all`, tests), never across processes."""
    if settings.signing_keys_dir or settings.trusted_keys:
        return Keyring.load(settings.signing_keys_dir, settings.trusted_keys)
    if not Broker(settings.broker_url).is_memory:
        log.warning(
            "signing.ephemeral_keys",
            hint="set LIANBAN_SIGNING_KEYS_DIR and LIANBAN_TRUSTED_KEYS, or other processes "
            "will refuse this one's messages",
        )
    return Keyring.ephemeral([ROUTER_SIGNER, *departments])
