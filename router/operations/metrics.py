"""Prometheus metrics, served at `/metrics` by `lianban serve` (bearer token with scope `ops`).

Figures about bundles and items are read from the database at scrape time, so every
replica of `lianban serve` reports the same, whole truth, and a restart loses nothing;
relay and correlator processes therefore need no metrics endpoint. Dead letters are read
from the broker at scrape time. Only what lives in one process is counted there: the
circuit breakers of adapter processes (`runtime.breakers`, served on their own port).

`METRICS` lists every name with its type, labels and meaning: the contract for dashboards
and alerts (deploy/, docs/operations.md).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import structlog
from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector
from sqlalchemy import func, or_, select

from contracts.messages import FINAL_ITEM_STATES, ItemState
from router.domain.workdays import working_calendar
from router.operations.calendar_status import calendar_status
from router.operations.supervision import ItemTiming, item_timings
from router.store import BundleRow, CallbackRow, Database, DeadlineAlertRow, ItemRow, OutboxRow
from runtime import clock
from runtime.breakers import CIRCUIT_BREAKER_STATE
from runtime.process_metrics import BreakerCollector

log = structlog.get_logger(__name__)


@dataclass(frozen=True)
class MetricName:
    name: str
    type: str
    labels: tuple[str, ...]
    help: str


BUNDLES_RECEIVED = MetricName(
    "lianban_bundles_received_total", "counter", ("bundle_type",), "Bundles accepted at intake."
)
BUNDLES_REPLIED = MetricName(
    "lianban_bundles_replied_total",
    "counter",
    ("bundle_type",),
    "Bundles given their one reply (every item final, or withdrawn).",
)
ITEMS_ACCEPTED = MetricName(
    "lianban_items_accepted_total",
    "counter",
    ("department",),
    "Items the department accepted (受理, 容缺预审, or decided without a separate acceptance).",
)
ITEMS_REJECTED = MetricName(
    "lianban_items_rejected_total",
    "counter",
    ("department",),
    "Items the department refused to accept (不予受理).",
)
ITEMS_DECIDED = MetricName(
    "lianban_items_decided_total",
    "counter",
    ("department", "decision"),
    "Items decided (办结), decision approved or denied.",
)
ITEMS_FAILED = MetricName(
    "lianban_items_failed_total",
    "counter",
    ("department",),
    "Items failed: the department could not be reached or answered nonsense.",
)
DEADLINE_ALERTS = MetricName(
    "lianban_deadline_alerts_total",
    "counter",
    ("department", "kind", "level"),
    "预警 (warning) and 超期 (missed) raised, each once per deadline; kind acceptance, "
    "decision, tolerated_gap or bundle (department empty for a bundle).",
)
ITEMS_OVERDUE_OPEN = MetricName(
    "lianban_items_overdue_open",
    "gauge",
    ("department",),
    "Items not final yet and past a live deadline: someone should act.",
)
ITEMS_BY_STATE = MetricName(
    "lianban_items", "gauge", ("department", "state"), "Items by their current state."
)
INTAKE_DURATION = MetricName(
    "lianban_item_intake_duration_seconds",
    "histogram",
    ("department",),
    "收件时限: from dispatch to the department's acceptance or rejection.",
)
DECISION_DURATION = MetricName(
    "lianban_item_decision_duration_seconds",
    "histogram",
    ("department",),
    "办理时限: from dispatch to the decision (approved or denied).",
)
ON_TIME_RATIO = MetricName(
    "lianban_items_on_time_ratio",
    "gauge",
    ("department",),
    "Share of decided items decided within their promised time limit (按时办结率).",
)
OUTBOX_BACKLOG = MetricName(
    "lianban_outbox_backlog",
    "gauge",
    (),
    "Outbox messages not yet marked sent: unpublished, or published by the process that "
    "committed them and not yet marked (it marks them within about a second).",
)
OUTBOX_OLDEST_AGE = MetricName(
    "lianban_outbox_oldest_age_seconds",
    "gauge",
    (),
    "Age of the oldest outbox message not yet marked sent (0 when none).",
)
DEAD_LETTERS = MetricName(
    "lianban_dead_letters",
    "gauge",
    ("queue",),
    "Messages resting in a parking-lot queue, waiting for an operator.",
)
CALLBACK_FAILURES = MetricName(
    "lianban_callback_failures_total",
    "counter",
    (),
    "Callback pushes to the platform that failed (each failed attempt).",
)
CALLBACKS_UNDELIVERED = MetricName(
    "lianban_callbacks_undelivered",
    "gauge",
    (),
    "Callbacks not yet taken by the platform (being retried with backoff).",
)
CALENDAR_NEXT_YEAR_OFFICIAL = MetricName(
    "lianban_calendar_next_year_official",
    "gauge",
    ("year",),
    "1 when next year's working days are official (its holiday notice is in), 0 while "
    "they are provisional; alerted from 1 November.",
)
CIRCUIT_BREAKER = MetricName(
    CIRCUIT_BREAKER_STATE,
    "gauge",
    ("department", "state"),
    "1 for the breaker's current state (closed, open, half_open); from adapter processes.",
)

METRICS = (
    BUNDLES_RECEIVED,
    BUNDLES_REPLIED,
    ITEMS_ACCEPTED,
    ITEMS_REJECTED,
    ITEMS_DECIDED,
    ITEMS_FAILED,
    DEADLINE_ALERTS,
    ITEMS_OVERDUE_OPEN,
    ITEMS_BY_STATE,
    INTAKE_DURATION,
    DECISION_DURATION,
    ON_TIME_RATIO,
    OUTBOX_BACKLOG,
    OUTBOX_OLDEST_AGE,
    DEAD_LETTERS,
    CALLBACK_FAILURES,
    CALLBACKS_UNDELIVERED,
    CALENDAR_NEXT_YEAR_OFFICIAL,
    CIRCUIT_BREAKER,
)

# Departments answer in seconds when automated and within working days when people decide.
DURATION_BUCKETS = (1, 10, 60, 300, 1800, 3600, 4 * 3600, 86400, 3 * 86400, 7 * 86400, 30 * 86400)


def _family(metric: MetricName) -> CounterMetricFamily | GaugeMetricFamily:
    labels = list(metric.labels)
    if metric.type == "counter":
        return CounterMetricFamily(metric.name.removesuffix("_total"), metric.help, labels=labels)
    return GaugeMetricFamily(metric.name, metric.help, labels=labels)


class DatabaseCollector(Collector):
    """Bundles, items, outbox and callbacks, read from the database at each scrape.

    The item figures read every item's timeline milestones (one grouped query), so a
    scrape costs in proportion to the items kept in the database.
    """

    def __init__(self, database: Database) -> None:
        self._database = database

    def collect(self) -> Iterator[Metric]:
        with self._database.transaction() as session:
            bundles = session.execute(
                select(
                    BundleRow.bundle_type,
                    func.count(),
                    func.count(BundleRow.replied_at),
                ).group_by(BundleRow.bundle_type)
            ).all()
            backlog, oldest = session.execute(
                select(func.count(), func.min(OutboxRow.created_at)).where(
                    OutboxRow.sent_at.is_(None)
                )
            ).one()
            attempts, delivered, callbacks = session.execute(
                select(
                    func.coalesce(func.sum(CallbackRow.attempts), 0),
                    func.count(CallbackRow.delivered_at),
                    func.count(),
                )
            ).one()
            now = clock.now()
            overdue_open = session.execute(
                select(ItemRow.department, func.count())
                .where(
                    or_(
                        ItemRow.accept_due_at < now,
                        ItemRow.decide_due_at < now,
                        ItemRow.gap_due_at < now,
                    ),
                    ItemRow.state.not_in([state.value for state in FINAL_ITEM_STATES]),
                )
                .group_by(ItemRow.department)
            ).all()
            alerts = session.execute(
                select(
                    DeadlineAlertRow.department,
                    DeadlineAlertRow.kind,
                    DeadlineAlertRow.level,
                    func.count(),
                ).group_by(
                    DeadlineAlertRow.department, DeadlineAlertRow.kind, DeadlineAlertRow.level
                )
            ).all()
            items = item_timings(session)
        received, replied = _family(BUNDLES_RECEIVED), _family(BUNDLES_REPLIED)
        for bundle_type, count, replied_count in bundles:
            received.add_metric([bundle_type], count)
            replied.add_metric([bundle_type], replied_count)
        yield from (received, replied)
        yield from _item_families(items)
        alerts_family = _family(DEADLINE_ALERTS)
        for department, kind, level, count in sorted(alerts, key=lambda row: tuple(map(str, row))):
            alerts_family.add_metric([department or "", kind, level], count)
        yield alerts_family
        open_family = _family(ITEMS_OVERDUE_OPEN)
        for department, count in overdue_open:
            open_family.add_metric([department], count)
        yield open_family
        yield _single(OUTBOX_BACKLOG, backlog)
        age = (datetime.now(UTC) - _aware(oldest)).total_seconds() if oldest else 0.0
        yield _single(OUTBOX_OLDEST_AGE, max(age, 0.0))
        # Each attempt either delivered its callback or failed: failures never go down.
        yield _single(CALLBACK_FAILURES, attempts - delivered)
        yield _single(CALLBACKS_UNDELIVERED, callbacks - delivered)


def _aware(moment: datetime) -> datetime:
    # An aggregate (MIN) comes back from SQLite without the column's type, hence naive.
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _single(metric: MetricName, value: float) -> Metric:
    family = _family(metric)
    family.add_metric([], value)
    return family


def _item_families(items: Iterable[ItemTiming]) -> Iterator[Metric]:
    counts: dict[MetricName, Counter[tuple[str, ...]]] = {
        metric: Counter()
        for metric in (
            ITEMS_ACCEPTED,
            ITEMS_REJECTED,
            ITEMS_DECIDED,
            ITEMS_FAILED,
            ITEMS_BY_STATE,
        )
    }
    intake: dict[str, list[float]] = {}
    decision: dict[str, list[float]] = {}
    on_time: dict[str, list[bool]] = {}
    for item in items:
        department = item.department
        counts[ITEMS_BY_STATE][department, item.state.value] += 1
        if item.accepted_at is not None:
            counts[ITEMS_ACCEPTED][(department,)] += 1
        if item.rejected_at is not None:
            counts[ITEMS_REJECTED][(department,)] += 1
        if item.decided_at is not None:
            decision_label = "approved" if item.state is ItemState.APPROVED else "denied"
            counts[ITEMS_DECIDED][department, decision_label] += 1
        if item.state is ItemState.FAILED:
            counts[ITEMS_FAILED][(department,)] += 1
        if item.intake_seconds is not None:
            intake.setdefault(department, []).append(item.intake_seconds)
        if item.decision_seconds is not None:
            decision.setdefault(department, []).append(item.decision_seconds)
        if item.decided_on_time is not None:
            on_time.setdefault(department, []).append(item.decided_on_time)
    for metric, counter in counts.items():
        family = _family(metric)
        for labels, count in sorted(counter.items()):
            family.add_metric(list(labels), count)
        yield family
    yield _histogram(INTAKE_DURATION, intake)
    yield _histogram(DECISION_DURATION, decision)
    ratio = _family(ON_TIME_RATIO)
    for department, flags in sorted(on_time.items()):
        ratio.add_metric([department], sum(flags) / len(flags))
    yield ratio


def _histogram(metric: MetricName, durations: Mapping[str, list[float]]) -> Metric:
    family = HistogramMetricFamily(metric.name, metric.help, labels=list(metric.labels))
    for department, values in sorted(durations.items()):
        buckets = [
            (str(float(bound)), float(sum(1 for value in values if value <= bound)))
            for bound in DURATION_BUCKETS
        ]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric([department], buckets, sum_value=sum(values))
    return family


class DeadLetterCollector(Collector):
    """How many messages rest in each parking-lot queue, asked of the broker at scrape time.

    While the broker cannot be asked the family is empty (an alert on absent data fires),
    and the database's figures are still served: they matter most in such an outage.
    """

    def __init__(self, counts: Callable[[], Mapping[str, int]]) -> None:
        self._counts = counts

    def collect(self) -> Iterator[Metric]:
        family = _family(DEAD_LETTERS)
        try:
            counts = self._counts()
        except Exception as error:
            log.warning("metrics.dead_letters_unavailable", error=repr(error))
            counts = {}
        for queue, count in sorted(counts.items()):
            family.add_metric([queue], count)
        yield family


class CalendarCollector(Collector):
    """Whether next year is official in the live working calendar, at scrape time."""

    def collect(self) -> Iterator[Metric]:
        status = calendar_status(working_calendar())
        family = _family(CALENDAR_NEXT_YEAR_OFFICIAL)
        family.add_metric([str(status.next_year)], int(status.next_year_official))
        yield family


def router_registry(
    database: Database, dead_letter_counts: Callable[[], Mapping[str, int]]
) -> CollectorRegistry:
    """What `lianban serve` exposes: the database's figures, dead letters, and the breakers
    of any adapters running in the same process (`lianban run-all`)."""
    registry = CollectorRegistry()
    registry.register(DatabaseCollector(database))
    registry.register(DeadLetterCollector(dead_letter_counts))
    registry.register(CalendarCollector())
    registry.register(BreakerCollector())
    ProcessCollector(registry=registry)
    return registry
