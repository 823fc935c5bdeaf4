"""Wires the roles together: intake API, relay, correlator and department adapters.

Each role runs on threads of its own, so one process can run any subset: a single role
(`lianban relay`), everything (`lianban run-all`), or the embedded demo.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable
from enum import StrEnum

import structlog

from adapters.base import Adapter
from adapters.messaging import Broker, ConsumerLoop, Publisher, declare_topology
from adapters.messaging.topology import outcomes_queue
from adapters.serving import ThreadedServer
from adapters.worker import AdapterWorker
from contracts.catalog import Catalog
from router.api import Services, create_app
from router.callbacks import CallbackSender
from router.correlator import Correlator
from router.db import Database
from router.deadlines import DeadlineWatcher
from router.filedrop import Layout, PackageWatcher
from router.filedrop_export import ReplyExporter
from router.intake import Intake
from router.materials import material_store
from router.outbox import Relay
from router.settings import Settings

log = structlog.get_logger(__name__)


class Role(StrEnum):
    SERVE = "serve"
    RELAY = "relay"
    CORRELATE = "correlate"


class Stack:
    """Starts the chosen roles on threads and stops them together."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        roles: Iterable[Role],
        adapters: Iterable[Adapter] = (),
    ) -> None:
        self.settings = settings
        self.catalog = catalog
        self.roles = frozenset(roles)
        self.adapters = list(adapters)
        self.database = Database(settings.database_url)
        self.broker = Broker(settings.broker_url)
        self.materials = material_store(settings)
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self._ready: list[threading.Event] = []
        self._server: ThreadedServer | None = None
        self.relay_wake = threading.Event()
        self.intake = Intake(self.database, catalog, self.materials, on_commit=self.relay_wake.set)

    def start(self) -> None:
        if self.roles:  # an adapter-only process never touches the database
            self.database.migrate()
        with self.broker.connect() as connection:
            declare_topology(connection, self.catalog.departments)
        if Role.RELAY in self.roles:
            relay = Relay(self.database, Publisher(self.broker), wake=self.relay_wake)
            self._spawn("relay", relay.run)
            sender = CallbackSender(
                self.database, backoff_seconds=self.settings.callback_backoff_seconds
            )
            self._spawn("callbacks", sender.run)
            self._spawn("deadlines", DeadlineWatcher(self.database).run)
            if self.settings.filedrop_dir is not None:
                layout = Layout(self.settings.filedrop_dir)
                exporter = ReplyExporter(layout, self.database, self.materials)
                self._spawn("filedrop-export", exporter.run)
        if Role.CORRELATE in self.roles:
            correlator = Correlator(self.database, self.catalog, on_commit=self.relay_wake.set)
            consumer = ConsumerLoop(self.broker, outcomes_queue(), correlator.handle_message)
            self._ready.append(consumer.ready)
            self._spawn("correlator", consumer.run)
        for adapter in self.adapters:
            worker = AdapterWorker(adapter, self.broker, materials=self.materials)
            self._ready.append(worker.ready)
            self._spawn(f"adapter-{adapter.department}", worker.run)
        if Role.SERVE in self.roles:
            self._start_server()
            if self.settings.filedrop_dir is not None:
                layout = Layout(self.settings.filedrop_dir)
                watcher = PackageWatcher(layout, self.intake, self.materials, self.catalog)
                self._spawn("filedrop-inbox", watcher.run)
        for ready in self._ready:
            if not ready.wait(timeout=30):
                raise TimeoutError("a consumer did not connect within 30 s")
        log.info("stack.started", roles=sorted(self.roles), adapters=len(self.adapters))

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the intake API is not running in this process")
        return self._server.url

    def wait(self) -> None:
        """Block until stopped (by `stop` or Ctrl-C)."""
        try:
            while not self._stop.wait(1.0):
                pass
        except KeyboardInterrupt:
            pass
        finally:
            self.stop()

    def stop(self) -> None:
        self._stop.set()
        if self._server is not None:
            self._server.stop()
        for thread in self._threads:
            thread.join(timeout=10)
        self.database.dispose()

    def _start_server(self) -> None:
        services = Services(
            self.database,
            self.intake,
            self.materials,
            manual_tokens=self.settings.manual_tokens,
            on_commit=self.relay_wake.set,
        )
        app = create_app(self.catalog, services)
        self._server = ThreadedServer(app, self.settings.host, self.settings.port)
        self._server.start()

    def _spawn(self, name: str, target: Callable[[threading.Event], None]) -> None:
        thread = threading.Thread(target=target, args=(self._stop,), name=name, daemon=True)
        thread.start()
        self._threads.append(thread)
