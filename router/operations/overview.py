"""What the ops page shows: each department's queue, answers and circuit, the deadlines
raised 预警 or 超期, the supervision figures (电子监察), dead letters, and a bundle found by id or
case number. `router/http/ops.py` serves these as JSON; `/metrics` reads the same
database through `OpsServices.metrics`.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from functools import cached_property
from typing import Any

import httpx
import structlog
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from pydantic import BaseModel
from sqlalchemy import and_, func, select

from contracts.api import AlertLevel, BundleState, BundleStatus, DeadlineKind, TimelineEvent
from contracts.catalog import Catalog
from contracts.messages import ItemState
from contracts.personal_data import mask_fields, mask_text
from router.domain.catalogs import CatalogShelf
from router.domain.timekeeping import deadlines
from router.domain.views import bundle_status, find_bundle
from router.operations.dlq import DeadLetter, DeadLetterQueues, DeadLetterSummary
from router.operations.metrics import router_registry
from router.operations.queues import (
    QueueCountSource,
    department_queues,
    oldest_unanswered_dispatches,
)
from router.operations.satisfaction import RatingFigures, rating_figures
from router.operations.supervision import (
    BundleFigures,
    Figures,
    bundle_figures_by_type,
    bundle_timings,
    figures_by,
    item_timings,
)
from router.store import BundleRow, Database, DeadlineAlertRow, EventRow, ItemRow
from router.store.timeline import DEPARTMENT_ACTOR_PREFIX
from runtime import clock
from runtime.breakers import BREAKERS, CIRCUIT_BREAKER_STATE, BreakerState

log = structlog.get_logger(__name__)
CHINA = timedelta(hours=8)  # the page's periods are China dates


@dataclass(frozen=True)
class OpsServices:
    database: Database
    catalog: Catalog
    queue_counts: QueueCountSource
    dead_letters: DeadLetterQueues
    adapter_metrics_urls: Sequence[str] = ()
    catalogs: CatalogShelf | None = None
    """Every loaded catalog version, so a bundle is shown under its own."""

    @cached_property
    def metrics(self) -> CollectorRegistry:
        """The registry `/metrics` serves, built once: its collectors read at scrape time."""
        return router_registry(self.database, self.dead_letters.counts)


class DepartmentHealth(BaseModel):
    department: str
    name_zh: str
    ready: int
    unacknowledged: int | None
    consumers: int
    oldest_age_seconds: float | None
    dead_letters: int
    outcomes: int  # department answers and trouble notices within the window
    failed: int  # of which failures: failed items, retries, parked requests, unreachable
    error_ratio: float | None
    circuit: str | None  # closed, open, half_open; None when no adapter reports it


class DeadlineEntry(BaseModel):
    """A live deadline raised 预警 or 超期: of an open item, or of a bundle (item None)."""

    bundle_id: uuid.UUID
    project_no: str
    bundle_type: str
    item: str | None
    name_zh: str | None
    department: str | None
    state: str
    kind: DeadlineKind
    level: AlertLevel
    due_at: datetime
    raised_at: datetime


class SupervisionFigures(BaseModel):
    since: date
    until: date
    by_department: dict[str, dict[str, Any]]
    by_bundle_type: dict[str, dict[str, Any]]
    bundles_by_type: dict[str, dict[str, Any]]  # bundles against their own promise
    ratings_by_department: dict[str, dict[str, Any]]  # 好差评 and 整改
    ratings_by_bundle_type: dict[str, dict[str, Any]]
    names: dict[str, str]


class DeadLetterEntry(DeadLetterSummary):
    body: str  # its start, masked: enough to recognise it, never megabytes in the page
    project_no: str | None  # the case number of its bundle, when it names a known one

    @classmethod
    def of(cls, letter: DeadLetter, project_no: str | None) -> DeadLetterEntry:
        summary = letter.summary().model_dump()
        summary["reason"] = mask_text(summary["reason"])
        return cls(**summary, body=_masked_body(letter.body)[:2000], project_no=project_no)


def case_numbers(database: Database, bundle_ids: Iterable[str]) -> dict[str, str]:
    """The case numbers (办件编号) of the given bundle ids; ids naming no bundle are left out."""
    known: set[uuid.UUID] = set()
    for text in bundle_ids:
        try:
            known.add(uuid.UUID(text))
        except ValueError:  # a correlation id that is no bundle id
            continue
    if not known:
        return {}
    with database.transaction() as session:
        rows = session.execute(
            select(BundleRow.id, BundleRow.project_no).where(BundleRow.id.in_(known))
        ).all()
    return {str(bundle_id): project_no for bundle_id, project_no in rows}


def _masked_body(body: bytes) -> str:
    """A message body as an operator may read it: personal data masked by field name
    (a dispatch's form) when it is JSON, by pattern otherwise."""
    text = body.decode("utf-8", "replace")
    try:
        parsed = json.loads(text)
    except ValueError:
        return mask_text(text)
    return json.dumps(mask_fields(parsed), ensure_ascii=False)


def department_health(ops: OpsServices, window: timedelta) -> list[DepartmentHealth]:
    """Each department's queue, its answers in the last `window`, and its circuit."""
    since = datetime.now(UTC) - window
    with ops.database.transaction() as session:
        oldest = oldest_unanswered_dispatches(session)
        answers = session.execute(
            select(EventRow.actor, EventRow.state, func.count())
            .where(EventRow.at >= since, EventRow.actor.startswith(DEPARTMENT_ACTOR_PREFIX))
            .group_by(EventRow.actor, EventRow.state)
        ).all()
    outcomes: dict[str, int] = {}
    failures: dict[str, int] = {}
    for actor, state, count in answers:
        code = actor.removeprefix(DEPARTMENT_ACTOR_PREFIX)
        outcomes[code] = outcomes.get(code, 0) + count
        if state in _FAILURES:
            failures[code] = failures.get(code, 0) + count
    circuits = circuit_states(ops.adapter_metrics_urls)
    health = [
        DepartmentHealth(
            department=queue.department,
            name_zh=ops.catalog.departments[queue.department].name_zh,
            ready=queue.ready,
            unacknowledged=queue.unacknowledged,
            consumers=queue.consumers,
            oldest_age_seconds=queue.oldest_age_seconds,
            dead_letters=queue.dead_letters,
            outcomes=outcomes.get(queue.department, 0),
            failed=failures.get(queue.department, 0),
            error_ratio=failures.get(queue.department, 0) / outcomes[queue.department]
            if outcomes.get(queue.department)
            else None,
            circuit=circuits.get(queue.department),
        )
        for queue in department_queues(ops.queue_counts, ops.catalog.departments, oldest)
    ]
    return sorted(health, key=attention_order)


# Steps that say a department could not be reached or failed the item: while its circuit is
# open, its error rate counts the retries, never reads 0.0% for want of answers.
_FAILURES = frozenset(
    {
        ItemState.FAILED.value,
        TimelineEvent.RETRYING.value,
        TimelineEvent.PARKED.value,
        TimelineEvent.UNREACHABLE.value,
    }
)


def attention_order(department: DepartmentHealth) -> tuple[int, int, str]:
    """What needs an operator first (a circuit not closed, a dead letter to replay), then
    other trouble (failed items, work waiting), then activity, then the idle ones: the one
    that is down never hides among thirty quiet rows."""
    needs_action = (
        department.circuit in (BreakerState.OPEN.value, BreakerState.HALF_OPEN.value)
        or department.dead_letters > 0
    )
    troubled = department.failed > 0 or (department.oldest_age_seconds or 0) > 0
    active = department.outcomes + department.ready + (department.unacknowledged or 0)
    rank = 0 if needs_action else 1 if troubled else 2 if active else 3
    return (rank, -active, department.department)


def circuit_states(adapter_metrics_urls: Iterable[str]) -> dict[str, str]:
    """Breaker states of the adapters in this process and of those at the given /metrics
    URLs (an unreachable adapter reports nothing; the queue's consumers tell it is gone)."""
    states = {department: state.value for department, state in BREAKERS.states().items()}
    for url in adapter_metrics_urls:
        try:
            text = httpx.get(url, timeout=2.0).text
        except httpx.HTTPError as error:
            log.warning("ops.adapter_metrics_unreachable", url=url, error=str(error))
            continue
        for family in text_string_to_metric_families(text):
            if family.name != CIRCUIT_BREAKER_STATE:
                continue
            for sample in family.samples:
                if sample.value == 1 and _worse(sample.labels["state"], states, sample.labels):
                    states[sample.labels["department"]] = sample.labels["state"]
    return states


_SEVERITY = [BreakerState.CLOSED.value, BreakerState.HALF_OPEN.value, BreakerState.OPEN.value]


def _worse(state: str, known: dict[str, str], labels: dict[str, str]) -> bool:
    """Replicas of one adapter each have a breaker: the page shows the worst."""
    current = known.get(labels["department"], BreakerState.CLOSED.value)
    return _SEVERITY.index(state) >= _SEVERITY.index(current)


def deadline_entries(database: Database, limit: int) -> list[DeadlineEntry]:
    """Live deadlines raised 预警 or 超期, the earliest due first: an alert whose deadline
    has since moved or finished (accepted, decided, replied) is history, not shown."""
    with database.transaction() as session:
        rows = session.execute(
            select(DeadlineAlertRow, BundleRow, ItemRow)
            .join(BundleRow, BundleRow.id == DeadlineAlertRow.bundle_id)
            .outerjoin(
                ItemRow,
                and_(ItemRow.bundle_id == BundleRow.id, ItemRow.code == DeadlineAlertRow.item),
            )
            .where(BundleRow.state == BundleState.IN_PROGRESS)
            .order_by(DeadlineAlertRow.due_at, DeadlineAlertRow.id)
        ).all()
        latest: dict[tuple[uuid.UUID, str, str], DeadlineEntry] = {}
        for alert, bundle, item in rows:
            live = dict(
                ((kind, due) for kind, due, _ in deadlines(item))
                if item is not None
                else [(DeadlineKind.BUNDLE, bundle.due_at)]
            )
            if live.get(DeadlineKind(alert.kind)) != alert.due_at:
                continue
            latest[alert.bundle_id, alert.item, alert.kind] = DeadlineEntry(
                bundle_id=bundle.id,
                project_no=bundle.project_no,
                bundle_type=bundle.bundle_type,
                item=item.code if item else None,
                name_zh=item.name_zh if item else None,
                department=alert.department,
                state=item.state if item else bundle.state,
                kind=DeadlineKind(alert.kind),
                level=AlertLevel(alert.level),
                due_at=alert.due_at,
                raised_at=alert.raised_at,
            )
        return list(latest.values())[:limit]


def supervision_figures(ops: OpsServices, since: date, until: date) -> SupervisionFigures:
    """The figures of the bundles received from `since` to `until` (China dates, both
    included)."""
    start, end = china_period(since, until)
    with ops.database.transaction() as session:
        items = item_timings(session, start, end)
        bundles = bundle_timings(session, start, end)
        ratings = rating_figures(session, start, end, clock.now())
    catalog = ops.catalog
    names = {code: department.name_zh for code, department in catalog.departments.items()}
    names |= catalog.bundle_type_names()
    return SupervisionFigures(
        since=since,
        until=until,
        by_department=_as_json(figures_by(items, lambda item: item.department)),
        by_bundle_type=_as_json(figures_by(items, lambda item: item.bundle_type)),
        bundles_by_type=_as_json(bundle_figures_by_type(bundles)),
        ratings_by_department=_as_json(ratings.by_department),
        ratings_by_bundle_type=_as_json(ratings.by_bundle_type),
        names=names,
    )


def china_period(since: date, until: date) -> tuple[datetime, datetime]:
    """The instants from the start of China date `since` to the end of `until`."""
    start = datetime.combine(since, time(), tzinfo=UTC) - CHINA
    return start, datetime.combine(until + timedelta(days=1), time(), tzinfo=UTC) - CHINA


def _as_json(
    groups: Mapping[str, Figures | BundleFigures | RatingFigures],
) -> dict[str, dict[str, Any]]:
    return {name: vars(figures) for name, figures in groups.items()}


def bundle_by_key(ops: OpsServices, key: str) -> BundleStatus | None:
    """A bundle by id or case number (办件编号), with its whole timeline."""
    with ops.database.transaction() as session:
        bundle_id = find_bundle(session, key.strip())
        catalogs = ops.catalogs or ops.catalog
        return bundle_status(session, bundle_id, catalogs) if bundle_id else None
