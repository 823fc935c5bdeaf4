"""Wires the roles together: intake API, relay, correlator and department adapters.

Each role runs on threads of its own, so one process can run any subset: a single role
(`lianban relay`), the router's three (`lianban router`), everything (`lianban run-all`),
or the embedded demo. A process of adapters alone is `lianban.adapter_process`'s.

A role's own libraries are imported where the role starts: the web framework and the
report workbook by the intake API, the PDF notices by the relay, so that a process
holds only what its roles run (tests/test_lean_processes.py).
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import timedelta
from enum import StrEnum
from functools import cached_property
from typing import TYPE_CHECKING

import structlog

from adapters.base import Adapter
from adapters.certificates import CertificateLibrary, certificate_library
from adapters.decisions import CalledBack, Polled
from adapters.registry import installed_adapters
from contracts.catalog import Catalog
from lianban.adapter_process import AdapterProcess
from lianban.settings import Settings, callback_secret, open_database, outbound_policy
from router.channels.applicant_messages import ApplicantMessageSender
from router.channels.callbacks import CallbackSender
from router.channels.couriers import HttpJsonCourier
from router.channels.notifiers import SmsGateway
from router.channels.waybills import WaybillSender
from router.domain.calendar_watcher import CalendarWatcher
from router.domain.catalogs import CatalogShelf
from router.domain.correlator import Correlator
from router.domain.deadlines import DeadlineWatcher
from router.domain.intake import Intake
from router.domain.polling import PollPlan, PollScheduler
from router.domain.routing import AdapterAreas
from router.domain.workdays import on_change
from router.store import audit
from router.store.audit_chain import AuditSealer, retention_from_days
from router.store.outbox import OutboxPublisher, Relay
from runtime.health import broker_problem
from runtime.messaging import ConsumerLoop, Publisher, declare_topology
from runtime.messaging.declaration import outcomes_queue

if TYPE_CHECKING:
    from router.http.auth import Tokens
    from runtime.serving import ThreadedServer

log = structlog.get_logger(__name__)


class Role(StrEnum):
    SERVE = "serve"
    RELAY = "relay"
    CORRELATE = "correlate"


class Stack(AdapterProcess):
    """Starts the chosen roles, and any adapters, on threads and stops them together."""

    def __init__(
        self,
        settings: Settings,
        catalog: Catalog,
        roles: Iterable[Role],
        adapters: Iterable[Adapter] = (),
    ) -> None:
        super().__init__(settings, catalog.departments, adapters)
        self.catalog = catalog
        self.roles = frozenset(roles)
        self.database = open_database(settings)
        self._server: ThreadedServer | None = None
        self.outbound = outbound_policy(settings)
        self.library = licence_library(settings)
        # The catalog versions: the newest accepts, each bundle finishes under its own.
        self.catalogs = CatalogShelf(catalog, settings.catalog_dir)
        self.intake = Intake(
            self.database,
            self.catalogs,
            self.materials,
            outbound=self.outbound,
            library=self.library,
            adapter_areas=AdapterAreas(settings.adapter_areas),
        )

    @cached_property
    def polls(self) -> PollPlan:
        """How each department reports its decisions, for the relay's polls and the
        correlator: only a process that runs one of them loads the installed adapters."""
        return poll_plan([*installed_adapters().values(), *map(type, self.adapters)])

    def start(self) -> None:
        if self.roles:  # an adapter-only process never touches the database
            self.database.migrate()
            # Every router role computes deadlines, so each keeps its live calendar current.
            calendar = CalendarWatcher(every_seconds=self.settings.calendar_check_seconds)
            self._spawn("calendar", calendar.run)
            if self.settings.catalog_dir is not None:
                every = self.settings.catalog_check_seconds
                self._spawn("catalog", lambda stop: self.catalogs.run(stop, every))
        if self.roles:
            # The router owns the topology. An adapter-only process declares nothing: its
            # broker user may only read its own queue (deploy/rabbitmq/definitions.json).
            with self.broker.connect() as connection:
                declare_topology(connection, self.catalog.departments, self.settings.adapter_areas)
            # Every router role publishes the outbox rows it commits, at once.
            outbox = OutboxPublisher(self.database, Publisher(self.broker), keyring=self.keyring)
            self._spawn("outbox-publisher", outbox.run)
        if Role.RELAY in self.roles:
            relay = Relay(
                self.database,
                Publisher(self.broker),
                keyring=self.keyring,
                in_hand_here=outbox.in_hand,
            )
            self._spawn("relay", relay.run)
            sender = CallbackSender(
                self.database,
                self.outbound,
                secret=callback_secret(self.settings),
                backoff_seconds=self.settings.callback_backoff_seconds,
            )
            self._spawn("callbacks", sender.run)
            self._start_notices()
            if self.settings.courier_url is not None:
                waybills = WaybillSender(
                    self.database,
                    HttpJsonCourier(self.settings.courier_url, self.outbound),
                    backoff_seconds=self.settings.courier_backoff_seconds,
                    tracking_seconds=self.settings.courier_tracking_seconds,
                )
                self._spawn("waybills", waybills.run)
            deadlines = DeadlineWatcher(
                self.database, every_seconds=self.settings.deadline_check_seconds
            )
            self._on_stop.append(on_change(deadlines.calendar_changed))
            self._spawn("deadlines", deadlines.run)
            scheduler = PollScheduler(
                self.database,
                self.polls,
                every_seconds=self.settings.poll_round_seconds,
                jitter=timedelta(seconds=self.settings.poll_jitter_seconds),
            )
            self._spawn("polls", scheduler.run)
            retention = retention_from_days(self.settings.audit_retention_days)
            self._spawn("audit-sealer", AuditSealer(self.database, retention).run)
            if self.settings.filedrop_dir is not None:
                from router.channels.filedrop import Layout
                from router.channels.filedrop_export import ReplyExporter
                from router.channels.filedrop_notices import NoticeExporter

                layout = Layout(self.settings.filedrop_dir)
                exporter = ReplyExporter(layout, self.database, self.materials)
                self._spawn("filedrop-export", exporter.run)
                notices = NoticeExporter(layout, self.database, self.materials, self.catalog)
                self._spawn("filedrop-notices", notices.run)
        if Role.CORRELATE in self.roles:
            correlator = Correlator(
                self.database,
                self.catalogs,
                keyring=self.keyring,
                polls=self.polls,
            )
            consumer = ConsumerLoop(
                self.broker,
                outcomes_queue(),
                correlator.handle_one,
                batch_handler=correlator.handle_batch,
            )
            self._ready.append(consumer.ready)
            self._spawn("correlator", consumer.run)
        self._start_adapters(declare_queues=bool(self.roles))
        if Role.SERVE in self.roles:
            self._start_server()
            if self.settings.filedrop_dir is not None:
                from router.channels.filedrop import Layout, PackageWatcher
                from router.channels.filedrop_proofs import ProofWatcher

                layout = Layout(self.settings.filedrop_dir)
                watcher = PackageWatcher(layout, self.intake, self.materials, self.catalogs)
                self._spawn("filedrop-inbox", watcher.run)
                proofs = ProofWatcher(layout, self.database)
                self._spawn("filedrop-proofs", proofs.run)
        self._start_monitoring([self.database.problem] if self.roles else [])
        self._wait_ready()
        log.info("stack.started", roles=sorted(self.roles), adapters=len(self.adapters))

    @property
    def base_url(self) -> str:
        if self._server is None:
            raise RuntimeError("the intake API is not running in this process")
        return self._server.url

    def stop(self) -> None:
        if self._server is not None:
            self._server.stop()
        super().stop()
        if self.library is not None:
            self.library.close()
        self.database.dispose()

    def _start_notices(self) -> None:
        """受理 / 不予受理 notices issued and pushed; the applicant told by SMS with a gateway."""
        from router.channels.notice_desk import NoticeDesk
        from router.channels.notice_document import NoticeRenderer

        gateway = self.settings.sms_gateway_url
        desk = NoticeDesk(
            self.database,
            self.catalogs,
            self.materials,
            NoticeRenderer(self.settings.notice_font_file),
            message_channel=None if gateway is None else SmsGateway.channel,
        )
        self._spawn("notices", desk.run)
        if gateway is not None:
            messages = ApplicantMessageSender(
                self.database,
                SmsGateway(gateway),
                backoff_seconds=self.settings.callback_backoff_seconds,
            )
            self._spawn("applicant-messages", messages.run)

    def _start_server(self) -> None:
        from router.http.app import create_app
        from router.http.guessing import CredentialGuesses
        from router.http.services import Services
        from router.operations.dlq import DeadLetterQueues
        from router.operations.overview import OpsServices
        from router.operations.queues import count_source
        from runtime.serving import ThreadedServer

        services = Services(
            self.database,
            self.intake,
            self.materials,
            api_tokens=api_tokens(self.settings),
            guesses=CredentialGuesses(
                self.settings.auth_failures_per_minute, audit.credential_refusals(self.database)
            ),
            readiness=lambda: self.database.problem() or broker_problem(self.broker),
            max_body_bytes=self.settings.max_body_bytes,
            rectification_working_days=self.settings.rectification_working_days,
            ops=OpsServices(
                self.database,
                self.catalog,
                count_source(self.broker, self.settings.rabbitmq_management_url),
                DeadLetterQueues(self.broker, self.catalog.departments),
                adapter_metrics_urls=self.settings.adapter_metrics_urls,
                catalogs=self.catalogs,
            ),
        )
        app = create_app(self.catalogs, services)
        tls = self.settings.tls.uvicorn_options() if self.settings.tls else {}
        # One line per request only where info lines are written: uvicorn sets its access
        # logger to info itself, so at warning each would still be built, masked and printed.
        self._server = ThreadedServer(
            app,
            self.settings.host,
            self.settings.port,
            ssl=tls,
            access_log=self.settings.log_level in ("debug", "info"),
        )
        self._server.start()
        log.info("serve.listening", url=self._server.url, docs=f"{self._server.url}/docs")
        if self.settings.tokens_file is None and not self.settings.api_tokens:
            log.warning(
                "serve.no_tokens",
                hint="no LIANBAN_TOKENS_FILE: the API refuses every request; "
                "mint one with `lianban token new`",
            )


def poll_plan(adapter_classes: Iterable[type[Adapter]]) -> PollPlan:
    """How the adapters declare their departments report decisions (a later class wins
    for its department)."""
    declared = {cls.department: cls.decisions for cls in adapter_classes}
    return PollPlan(
        {dept: how.schedule for dept, how in declared.items() if isinstance(how, Polled)},
        called_back=frozenset(
            dept for dept, how in declared.items() if isinstance(how, CalledBack)
        ),
    )


def licence_library(settings: Settings) -> CertificateLibrary | None:
    """The configured certificate library (电子证照库), or None."""
    if settings.certificate_library_url is None:
        return None
    return certificate_library(
        settings.certificate_library_plugin,
        settings.certificate_library_url,
        timeout=settings.certificate_library_timeout_seconds,
        concurrency=settings.certificate_library_concurrency,
    )


def api_tokens(settings: Settings) -> Tokens:
    """LIANBAN_TOKENS_FILE, read again when it changes, when it is set; else the fixed ones."""
    from router.http.auth import fixed_tokens, load_tokens
    from runtime.reloading import ReloadingFile

    if settings.tokens_file is not None:
        return ReloadingFile(settings.tokens_file, load_tokens).current
    return fixed_tokens(settings.api_tokens)
