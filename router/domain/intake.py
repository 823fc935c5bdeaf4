"""Intake (收件): validate an application, store the bundle and dispatch its first items.

The case number (办件编号) is the idempotency key: posting the same application again
returns the first receipt; posting a different one under the same number is a conflict.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache
from typing import Any

import structlog
from sqlalchemy import null, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from contracts.api import BundleState, IntakeReceipt, OneTimeNotice, Problem, TimelineEvent
from contracts.application import Application
from contracts.catalog import Catalog, dependency_order
from contracts.ids import new_id
from contracts.messages import ItemState
from router.domain.applicants import audit_applicant, validated_detail, who_applied
from router.domain.catalogs import CatalogShelf, shelf_of
from router.domain.citations import Citations, LicenceSource, Verified
from router.domain.evidence import Evidence
from router.domain.progress import advance
from router.domain.routing import LEVEL_ZH, AdapterAreas, deciding_office
from router.domain.timekeeping import Timekeeper
from router.domain.validation import find_problems
from router.domain.views import bundle_promise, item_promise
from router.domain.workdays import working_calendar
from router.store import BundleRow, Database, ItemRow, audit
from router.store.audit import AuditEvent
from router.store.detached import write_back
from router.store.timeline import Actor, record_event
from runtime import clock
from runtime.failpoints import failpoint
from runtime.outbound import OutboundPolicy
from runtime.storage import MaterialStore

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class Received:
    """收件: stored now, or earlier under the same case number (`replayed`)."""

    receipt: IntakeReceipt
    replayed: bool


@dataclass(frozen=True)
class ProblemsFound:
    """Nothing stored: the one-time notice (一次告知) lists every problem."""

    notice: OneTimeNotice


@dataclass(frozen=True)
class CaseNumberTaken:
    """Nothing stored: the case number belongs to a different application."""

    message: str


IntakeResult = Received | ProblemsFound | CaseNumberTaken


class Intake:
    def __init__(
        self,
        database: Database,
        catalog: Catalog | CatalogShelf,
        materials: MaterialStore,
        outbound: OutboundPolicy | None = None,
        library: LicenceSource | None = None,
        adapter_areas: AdapterAreas | None = None,
    ) -> None:
        self._database = database
        self._catalogs = shelf_of(catalog)
        self._materials = materials
        self._outbound = outbound or OutboundPolicy()
        self._citations = Citations(database, materials, library)
        self._areas = adapter_areas or AdapterAreas()

    def submit(
        self, raw: Any, idempotency_key: str | None, *, actor: str = Actor.PLATFORM
    ) -> IntakeResult:
        """Validate and store one application; `actor` (the token that sent it) is named
        in the audit log (the timeline, which the platform reads, says `platform`)."""
        catalog = self._catalogs.current()
        # An area's view is a copy of the catalog, built anew each call: once per submit.
        view_of_area = cache(catalog.for_area)
        # The licences and earlier results it cites are verified whatever else is wrong,
        # so their problems join the same notice; only a clean application fetches files.
        verified = Verified()

        def check_citations(document: dict[str, Any]) -> tuple[frozenset[str], list[Problem]]:
            nonlocal verified
            area = document.get("area_code")
            view = view_of_area(area) if isinstance(area, str) else None
            verified, problems = self._citations.verify(document, view or catalog)
            return verified.types, problems

        application, problems = find_problems(raw, catalog, self._materials.exists, check_citations)
        key_problem = _idempotency_problem(raw, idempotency_key)
        if key_problem is not None:
            problems.append(key_problem)
        callback_url = raw.get("callback_url") if isinstance(raw, dict) else None
        if isinstance(callback_url, str):
            problems += _callback_problems(self._outbound, callback_url)
        if application is not None:
            # Validated: the area lies in the province, so it has a view.
            view = view_of_area(application.area_code) or catalog
            routes = self._routes(application, view)
            problems.extend(self._unserved(application, view, routes))
        evidence = Evidence()
        if application is not None and not problems:
            evidence, fetch_problems = self._citations.fetch(verified)
            problems.extend(fetch_problems)
        if application is None or problems:
            codes = ", ".join(sorted({problem.code for problem in problems}))
            self._audit_received(raw, actor, "refused", codes)
            return ProblemsFound(OneTimeNotice(problems=tuple(problems)))
        try:
            result: IntakeResult = self._store(application, view, routes, evidence, actor)
        except IntegrityError:
            # The case number is taken (the unique index says so, no query before each
            # new one): by an earlier request, or by another that committed first.
            result = self._replay(application)
        match result:
            case CaseNumberTaken():
                self._audit_received(raw, actor, "conflict")
            case Received(replayed=True):
                self._audit_received(raw, actor, "duplicate")
        failpoint("intake.after_commit")
        return result

    def _store(
        self,
        application: Application,
        view: Catalog,
        routes: dict[str, str | None],
        evidence: Evidence,
        actor: str,
    ) -> Received:
        """Store a new bundle, its items routed by `routes`, under `view` (its area's
        catalog); IntegrityError when its case number is already taken."""
        with self._database.transaction() as session:
            bundle_type = view.bundle_types[application.bundle_type]
            now = clock.now()
            bundle = BundleRow(
                id=new_id(),
                project_no=application.project_no,
                bundle_type=application.bundle_type,
                state=BundleState.IN_PROGRESS,
                application=application.model_dump(mode="json"),
                received_at=now,
                replied_at=None,
                evidence=evidence.model_dump(mode="json") if evidence.stored else None,
                catalog_version=view.version,
                catalog_region=view.region,
            )
            record_event(
                session,
                bundle.id,
                None,
                TimelineEvent.RECEIVED,
                bundle_type.name_zh,
                actor=Actor.PLATFORM,
                at=now,
            )
            applied_by, applied = who_applied(application)
            record_event(
                session, bundle.id, None, TimelineEvent.APPLIED, applied, actor=applied_by, at=now
            )
            audit.record(
                session,
                actor=actor,
                event=AuditEvent.RECEIVED,
                outcome="accepted",
                bundle_id=bundle.id,
                message_id=application.project_no,
                detail=f"{application.bundle_type}; {audit_applicant(application)}",
            )
            record_event(
                session,
                bundle.id,
                None,
                TimelineEvent.VALIDATED,
                validated_detail(application, evidence),
                actor=Actor.ROUTER,
                at=now,
            )
            for position, code in enumerate(dependency_order(bundle_type, application.items)):
                item = bundle_type.item(code)
                bundle.items.append(
                    ItemRow(
                        bundle_id=bundle.id,
                        code=code,
                        position=position,
                        service=item.service,
                        department=item.department,
                        route=routes[code],
                        name_zh=item.name_zh,
                        state=ItemState.WAITING.value,
                        # What dispatching sets, set on every item (the server's default
                        # neither), so that all go in one INSERT (`_insert_new`); a waiting
                        # item's accept clock is SQL NULL (None would store JSON null).
                        reason=None,
                        dispatch_id=None,
                        accept_clock=null(),
                        accept_due_at=None,
                        awaiting_prerequisites=False,
                        updated_at=now,
                    )
                )
            timekeeper = Timekeeper(session, working_calendar())
            for item_row in bundle.items:
                timekeeper.arm(item_row, view.services[item_row.service])
            timekeeper.open_bundle(bundle, view, bundle_type, now)
            advance(session, bundle, bundle_type)
            _insert_new(session, bundle)
            log.info(
                "intake.accepted",
                bundle_id=str(bundle.id),
                bundle_type=bundle.bundle_type,
                items=len(bundle.items),
                catalog_version=view.version,
                catalog_region=view.region,
            )
            return Received(receipt_for(bundle, view), replayed=False)

    def _routes(self, application: Application, view: Catalog) -> dict[str, str | None]:
        """Each item's route to its department's adapter (None: no adapter serves it)."""
        bundle_type = view.bundle_types[application.bundle_type]
        return {
            code: self._areas.route(bundle_type.item(code), application.area_code)
            for code in application.items
        }

    def _unserved(
        self, application: Application, view: Catalog, routes: dict[str, str | None]
    ) -> list[Problem]:
        """An item whose deciding office no adapter of its department serves: refused now,
        rather than stored and left waiting in no queue."""
        bundle_type = view.bundle_types[application.bundle_type]
        problems = []
        for index, code in enumerate(application.items):
            item = bundle_type.item(code)
            if routes[code] is None:
                name = view.departments[item.department].name_zh
                office, level = deciding_office(item, application.area_code)
                problems.append(
                    Problem(
                        pointer=f"/items/{index}",
                        code="area_not_served",
                        message_zh=f"事项“{item.name_zh}”由{LEVEL_ZH[level]}{name}（行政区划 "
                        f"{office}）办理，本平台尚未接入该部门系统",
                        message_en=f"item {code!r} is decided by the {level.value}-level "
                        f"{item.department!r} office of area {office}, which no adapter serves",
                    )
                )
        return problems

    def _audit_received(
        self, raw: Any, actor: str, outcome: str, detail: str | None = None
    ) -> None:
        """An application that stored nothing (refused, repeated, conflicting) is audited too."""
        project_no = raw.get("project_no") if isinstance(raw, dict) else None
        with self._database.transaction() as session:
            audit.record(
                session,
                actor=actor,
                event=AuditEvent.RECEIVED,
                outcome=outcome,
                message_id=str(project_no)[:64] if project_no is not None else None,
                detail=detail,
            )

    def _replay(self, application: Application) -> IntakeResult:
        with self._database.transaction() as session:
            existing = session.scalars(
                select(BundleRow).where(BundleRow.project_no == application.project_no)
            ).one()
            return _replay_of(existing, application, self._catalogs.for_bundle(existing))


def _insert_new(session: Session, bundle: BundleRow) -> None:
    """Insert a new bundle, then its items, as they stand after intake: Core INSERTs on
    the session's connection, the bundle's first, so a case number already taken fails
    it before anything else is written.

    They were built outside the session, clocks armed and first items dispatched in
    memory: no unit of work, nor the ORM's bulk layer, per row; no UPDATE of what was
    just inserted. The rows that refer to the bundle (dispatches, timeline, audit) are
    written after, at commit.
    """
    write_back(session.connection(), added=[bundle, *bundle.items])


def receipt_for(bundle: BundleRow, catalog: Catalog) -> IntakeReceipt:
    return IntakeReceipt(
        bundle_id=bundle.id,
        project_no=bundle.project_no,
        bundle_type=bundle.bundle_type,
        received_at=bundle.received_at,
        status_url=f"/v1/bundles/{bundle.id}",
        reply_url=f"/v1/bundles/{bundle.id}/reply",
        promised_working_days=bundle_promise(catalog, bundle),
        items=tuple(item_promise(catalog, item) for item in bundle.items),
    )


def _replay_of(existing: BundleRow, application: Application, catalog: Catalog) -> IntakeResult:
    if existing.application != application.model_dump(mode="json"):
        return CaseNumberTaken(
            f"case number {application.project_no} was already used for a different application"
        )
    return Received(receipt_for(existing, catalog), replayed=True)


def _callback_problems(outbound: OutboundPolicy, url: str) -> list[Problem]:
    """The callback URL outside the operator's prefixes, and/or refused by the host policy."""
    problems = []
    if outbound.callback_refusal(url) is not None:
        problems.append(
            Problem(
                pointer="/callback_url",
                code="callback_url_not_allowed",
                message_zh="回调地址不在运营方允许的回调地址范围内",
                message_en="the callback URL is not under a callback URL prefix the operator "
                "allows (LIANBAN_CALLBACK_URL_PREFIXES)",
            )
        )
    if (refusal := outbound.refusal(url)) is not None:
        problems.append(
            Problem(
                pointer="/callback_url",
                code="callback_url_refused",
                message_zh="回调地址不被允许（须为允许的主机，不含用户名密码，不指向内网地址）",
                message_en=f"the callback URL is not allowed: {refusal}",
            )
        )
    return problems


def _idempotency_problem(raw: Any, key: str | None) -> Problem | None:
    project_no = raw.get("project_no") if isinstance(raw, dict) else None
    if not key:
        return Problem(
            pointer="/project_no",
            code="idempotency_key_missing",
            message_zh="请求头缺少Idempotency-Key（应为办件编号）",
            message_en="the Idempotency-Key header (the case number) is missing",
        )
    if key != project_no:
        return Problem(
            pointer="/project_no",
            code="idempotency_key_mismatch",
            message_zh="Idempotency-Key应与办件编号一致",
            message_en="the Idempotency-Key header must equal project_no",
        )
    return None
