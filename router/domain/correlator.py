"""The correlator: applies department outcomes to bundle state, exactly once each.

Trouble notices (`ItemTrouble`: the adapter retries later, or parked the request) travel
the same way and are deduplicated the same way; they change no state, they tell why an
item waits: kept on the item until the department answers, and a `retrying` or `parked`
step on the timeline.

Each outcome's message id is recorded (inbox) in the same transaction as the change it
causes, and the bundle row is locked for that transaction, so redeliveries and
competing correlator replicas change nothing twice. Outcomes that wait together are
applied together: one transaction, one commit, per batch.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import cache
from typing import Any

import structlog
from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Select, Table, select
from sqlalchemy.exc import DBAPIError, InterfaceError, OperationalError
from sqlalchemy.orm import Session
from sqlalchemy.orm.attributes import set_committed_value

from contracts.api import TimelineEvent
from contracts.catalog import Catalog
from contracts.errors import MessageRefused
from contracts.messages import (
    Accepted,
    CancelRefused,
    ClockNotice,
    Decided,
    DepartmentReport,
    Failed,
    ItemOutcome,
    ItemState,
    ItemTrouble,
    Pending,
    Rejected,
    Unreachable,
)
from router.domain import states, withdrawal
from router.domain.catalogs import CatalogShelf, shelf_of
from router.domain.notices import record_notice
from router.domain.polling import (
    PollPlan,
    awaits_decision,
    record_pending,
    resume_polling,
    stop_polling,
)
from router.domain.progress import advance, cancel_at_department, set_item_state
from router.domain.timekeeping import Timekeeper
from router.domain.workdays import CHINA_TZ, working_calendar
from router.store import Base, BundleRow, Database, DecisionPollRow, InboxRow, ItemRow, audit
from router.store.detached import detached, keyed, one_of, read_rows, write_back
from router.store.engine import insert_skipping_conflicts
from router.store.timeline import Actor, department_actor, record_event
from runtime import clock
from runtime.failpoints import failpoint
from runtime.messaging import Ack, Delivery, Hold, Park, Settlement
from runtime.messaging.signing import ROUTER_SIGNER, Keyring
from runtime.tracing import handling

log = structlog.get_logger(__name__)
_REPORT: TypeAdapter[ItemOutcome | ItemTrouble] = TypeAdapter(DepartmentReport)
Report = ItemOutcome | ItemTrouble


class Applied(StrEnum):
    APPLIED = "applied"
    DUPLICATE = "duplicate"
    STALE = "stale"  # answers a superseded dispatch, or would move the state backwards
    UNKNOWN_BUNDLE = "unknown_bundle"
    NOT_ITS_ITEM = "not_its_item"  # the sender is not the department the item went to


class Correlator:
    def __init__(
        self,
        database: Database,
        catalog: Catalog | CatalogShelf,
        *,
        keyring: Keyring,
        polls: PollPlan | None = None,
    ) -> None:
        """`polls`: the departments' poll schedules (the default schedule for all if None)."""
        self._database = database
        self._catalogs = shelf_of(catalog)
        self._keyring = keyring
        self._polls = polls or PollPlan()

    def handle_one(self, delivery: Delivery) -> Settlement:
        """Consumer handler for one delivery: what `handle_batch` does for a batch of one,
        and data the database refuses (too long, invalid) is parked, since it would fail
        every time; the refusal is recorded in the audit log first."""
        try:
            [settlement] = self.handle_batch([delivery])
        except DBAPIError as error:
            reason = f"the database refuses this outcome: {error.orig!r}"[:500]
            try:
                with self._database.transaction() as session:
                    _audit_refusal(session, delivery, reason)
            except (OperationalError, InterfaceError) as unavailable:
                # Not parked before it is recorded: held until the database is back.
                return Hold(f"database unavailable: {unavailable.orig!r}")
            return Park(reason)
        return settlement

    def handle_batch(self, deliveries: Sequence[Delivery]) -> list[Settlement]:
        """Consumer handler for the deliveries waiting together: apply them in order in one
        transaction (one commit and one lock per bundle for all). Each is acknowledged
        after the commit, or parked when refused (the refusal recorded in the audit log,
        in the same transaction); all are held while the database is unreachable.

        Another database error propagates: the consumer loop then hands the same
        deliveries to `handle_one` one at a time, which parks the one at fault.
        """
        settlements: dict[int, Settlement] = {}
        valid: list[tuple[int, Delivery, Report]] = []
        for position, delivery in enumerate(deliveries):
            try:
                valid.append((position, delivery, self._outcome_of(delivery)))
            except MessageRefused as refusal:
                settlements[position] = Park(refusal.reason)
        try:
            with self._database.transaction() as session:
                results = self._apply_all(
                    session,
                    [outcome for _, _, outcome in valid],
                    [delivery.headers for _, delivery, _ in valid],
                )
                for (position, _, outcome), result in zip(valid, results, strict=True):
                    settlements[position] = _settlement_of(result, outcome)
                for position, delivery in enumerate(deliveries):
                    settlement = settlements[position]
                    if isinstance(settlement, Park):
                        _audit_refusal(session, delivery, settlement.reason)
                session.flush()
                failpoint("correlator.before_commit")
        except (OperationalError, InterfaceError) as error:
            # Connection-level trouble: nothing was committed; try the same ones again.
            return [Hold(f"database unavailable: {error.orig!r}")] * len(deliveries)
        failpoint("correlator.after_commit")
        return [settlements[position] for position in range(len(deliveries))]

    def _outcome_of(self, delivery: Delivery) -> Report:
        signer = self._keyring.verify_delivery(delivery)
        try:
            outcome = _REPORT.validate_json(delivery.body)
        except ValidationError as error:
            raise MessageRefused(f"breaks the outcome contract: {error}"[:500]) from error
        # A department answers for itself only; the router signs what its manual work
        # queue decided on a department's behalf.
        if signer not in (outcome.department, ROUTER_SIGNER):
            raise MessageRefused(f"an outcome of {outcome.department} signed by {signer}")
        return outcome

    def apply(self, outcome: Report) -> Applied:
        """Apply one outcome in a transaction of its own."""
        [result] = self.apply_all([outcome])
        return result

    def apply_all(self, outcomes: Sequence[Report]) -> list[Applied]:
        """Apply outcomes in order, in one transaction."""
        with self._database.transaction() as session:
            results = self._apply_all(session, outcomes, [None] * len(outcomes))
            session.flush()
            failpoint("correlator.before_commit")
        return results

    def _apply_all(
        self,
        session: Session,
        outcomes: Sequence[Report],
        headers: Sequence[Mapping[str, Any] | None],
    ) -> list[Applied]:
        # The lock order, and why the items are read in a statement of their own, after
        # the lock: `_lock_and_load`.
        locked = _lock_and_load(session, sorted({outcome.bundle_id for outcome in outcomes}))
        bundles = locked.bundles
        first_deliveries = _record_in_inbox(
            session, [outcome for outcome in outcomes if outcome.bundle_id in bundles]
        )
        results = []
        for outcome, outcome_headers in zip(outcomes, headers, strict=True):
            with handling("correlator.apply", outcome, outcome_headers):
                bundle = bundles.get(outcome.bundle_id)
                message_id = str(outcome.message_id)
                if bundle is None:
                    log.error("outcome.unknown_bundle")
                    results.append(Applied.UNKNOWN_BUNDLE)
                elif message_id not in first_deliveries:
                    log.info("outcome.duplicate")
                    results.append(Applied.DUPLICATE)
                else:
                    first_deliveries.remove(message_id)  # the same message twice in one batch
                    results.append(self._apply_to(session, bundle, outcome))
        locked.write_back(session)
        return results

    def _apply_to(self, session: Session, bundle: BundleRow, outcome: Report) -> Applied:
        item = next((row for row in bundle.items if row.code == outcome.item), None)
        if item is not None and item.department != outcome.department:
            # The signer was checked against `outcome.department`; the item's own
            # department, read under the bundle lock, is what decides who may answer it.
            log.warning("outcome.not_its_item", item_department=item.department)
            return Applied.NOT_ITS_ITEM
        if isinstance(outcome, ItemTrouble):
            return _apply_trouble(session, item, outcome)
        if isinstance(outcome.result, ClockNotice):
            return _apply_clock_notice(session, item, outcome, outcome.result)
        result = outcome.result
        if _answers_a_cancel(item, outcome):
            assert item is not None  # for mypy: _answers_a_cancel says so
            return self._apply_after_cancel(session, bundle, item, outcome)
        if isinstance(result, CancelRefused):
            return _stale(session, bundle, outcome, item, result.status)
        if isinstance(result, Pending | Unreachable):
            # News about the filing, not a step of the item: its state stays.
            if item is None or item.dispatch_id != outcome.dispatch_id:
                return _stale(session, bundle, outcome, item, result.status)
            if not awaits_decision(item):
                return _stale(session, bundle, outcome, item, result.status)
            if isinstance(result, Pending):
                _clear_trouble(item)  # the department answered
                record_pending(session, self._polls, item, result, clock.now())
            else:
                record_event(
                    session,
                    bundle.id,
                    item.code,
                    TimelineEvent.UNREACHABLE,
                    result.reason,
                    actor=department_actor(outcome.department),
                )
            log.info("outcome.noted", status=result.status)
            return Applied.APPLIED
        awaiting = item is not None and item.awaiting_prerequisites
        target = states.target_state(outcome.result, awaiting_prerequisites=awaiting)
        if (
            item is None
            or item.dispatch_id != outcome.dispatch_id
            or not states.allowed(ItemState(item.state), target, awaiting_prerequisites=awaiting)
        ):
            return _stale(session, bundle, outcome, item, target.value)
        _clear_trouble(item)
        if isinstance(result, Decided):
            item.result = result.model_dump(mode="json")
        if isinstance(result, Accepted):
            item.receipt_no = result.receipt_no or item.receipt_no
            if result.tolerated_gaps:
                item.tolerated_gaps = [gap.model_dump(mode="json") for gap in result.tolerated_gaps]
        set_item_state(
            session,
            item,
            target,
            actor=department_actor(outcome.department),
            reason=states.reason_of(result),
            operator_detail=states.operator_detail_of(result),
        )
        if isinstance(result, Accepted | Rejected):
            # 受理 / 不予受理: a notice to issue, committed with the state (never lost, and
            # never twice: a redelivery stops at the inbox above).
            record_notice(session, bundle, item, result, clock.now())
        if target.is_final or target is ItemState.CORRECTION_REQUESTED:
            was_filed = stop_polling(item)
            if was_filed and isinstance(result, Failed):
                # The department's own failure: withdraw what it still holds.
                cancel_at_department(session, bundle, item, states.reason_of(result) or "")
        # Under the version it was accepted under, whatever has been published since.
        catalog = self._catalogs.for_bundle(bundle)
        advance(session, bundle, catalog.bundle_types[bundle.bundle_type])
        audit.record_decided(session, outcome, target)
        log.info("outcome.applied", state=target.value)
        return Applied.APPLIED

    def _apply_after_cancel(
        self, session: Session, bundle: BundleRow, item: ItemRow, outcome: ItemOutcome
    ) -> Applied:
        """router.domain.withdrawal: a decision the department could no longer cancel
        stands. Refused with the decision not in yet, a polled department is asked for it
        at once (polling stopped when the item was cancelled)."""
        if isinstance(outcome.result, CancelRefused):
            withdrawal.cancel_refused(session, bundle, item, outcome.result)
            if item.state == ItemState.CANCELLED:
                resume_polling(self._polls, item, clock.now())
        elif isinstance(outcome.result, Decided):
            withdrawal.decided_after_cancel(session, bundle, item, outcome.result)
            stop_polling(item)
        audit.record_decided(session, outcome, ItemState(item.state))
        log.info("outcome.applied_after_cancel", state=item.state, status=outcome.result.status)
        return Applied.APPLIED


@dataclass(frozen=True)
class _Locked:
    """A batch's bundles, locked, with their items and the items' polls as loaded: read
    with Core into objects in no session (router.store.detached), so its flushes leave
    them alone, and written back by `write_back` before the commit."""

    bundles: dict[uuid.UUID, BundleRow]
    polls: dict[ItemRow, DecisionPollRow | None]

    def write_back(self, session: Session) -> None:
        """Write what the batch changed: the bundles' and items' changed columns, and
        the polls started, changed and stopped (`router.domain.polling`)."""
        changed: list[Base] = [*self.bundles.values()]
        added: list[Base] = []
        dropped: list[Base] = []
        for item, loaded in self.polls.items():
            changed.append(item)
            poll = item.decision_poll
            if poll is not None and poll is loaded:
                changed.append(poll)
                continue
            if loaded is not None:
                dropped.append(loaded)
            if poll is not None:
                added.append(poll)
        write_back(session.connection(), changed=changed, added=added, dropped=dropped)


_BUNDLES: Table = BundleRow.__table__  # type: ignore[assignment]
_ITEMS: Table = ItemRow.__table__  # type: ignore[assignment]
_POLLS: Table = DecisionPollRow.__table__  # type: ignore[assignment]


@cache
def _lock_bundles(count: int) -> Select[Any]:
    return (
        select(_BUNDLES)
        .where(one_of(_BUNDLES.c.id, count))
        .order_by(_BUNDLES.c.id)
        .with_for_update()
    )


@cache
def _items_with_polls(count: int) -> Select[Any]:
    return (
        select(_ITEMS, _POLLS)
        .outerjoin(
            _POLLS, (_POLLS.c.bundle_id == _ITEMS.c.bundle_id) & (_POLLS.c.item == _ITEMS.c.code)
        )
        .where(one_of(_ITEMS.c.bundle_id, count))
        .order_by(_ITEMS.c.bundle_id, _ITEMS.c.position)
    )


_BUNDLE_KEYS = _BUNDLES.c.keys()
_ITEM_KEYS = _ITEMS.c.keys()
_POLL_KEYS = _POLLS.c.keys()


def _lock_and_load(session: Session, bundle_ids: list[uuid.UUID]) -> _Locked:
    """Lock every bundle concerned up front, in one order: competing correlators applying
    overlapping batches wait for each other instead of deadlocking. Their items and polls
    come with them, for the whole batch, in a statement of their own: after the lock is
    granted, so they are read as the correlator that held it committed them. (Joined into
    the locking statement, they would be read as they were before its wait, under
    PostgreSQL's READ COMMITTED: a stale item state.)"""
    if not bundle_ids:  # every delivery of the batch refused
        return _Locked({}, {})
    connection = session.connection()
    bundles: dict[uuid.UUID, BundleRow] = {}
    for row in read_rows(connection, _lock_bundles(len(bundle_ids)), keyed(bundle_ids)):
        bundle = detached(BundleRow, dict(zip(_BUNDLE_KEYS, row, strict=True)))
        bundles[bundle.id] = bundle
    items: dict[uuid.UUID, list[ItemRow]] = {bundle_id: [] for bundle_id in bundles}
    polls: dict[ItemRow, DecisionPollRow | None] = {}
    if bundles:
        locked = list(bundles)
        for row in read_rows(connection, _items_with_polls(len(locked)), keyed(locked)):
            poll_values = dict(zip(_POLL_KEYS, row[len(_ITEM_KEYS) :], strict=True))
            poll = None if poll_values["item"] is None else detached(DecisionPollRow, poll_values)
            item_values = dict(zip(_ITEM_KEYS, row[: len(_ITEM_KEYS)], strict=True))
            bundle = bundles[item_values["bundle_id"]]
            item = detached(ItemRow, item_values, bundle=bundle, decision_poll=poll)
            items[item.bundle_id].append(item)
            polls[item] = poll
    for bundle in bundles.values():
        set_committed_value(bundle, "items", items[bundle.id])
    return _Locked(bundles, polls)


def _answers_a_cancel(item: ItemRow | None, outcome: ItemOutcome) -> bool:
    """The department's refusal to withdraw the cancelled item, or its decision for it
    (the first decision only: one held already is not replaced)."""
    if item is None or item.dispatch_id != outcome.dispatch_id:
        return False
    if item.state != ItemState.CANCELLED:
        return False
    if isinstance(outcome.result, CancelRefused):
        return item.cancel_refused_at is None
    return isinstance(outcome.result, Decided) and item.result is None


def _apply_trouble(session: Session, item: ItemRow | None, notice: ItemTrouble) -> Applied:
    """Keep the adapter's latest word on why the item waits, and note it on the timeline.
    A notice about a superseded filing or a final item changes nothing (and is not
    noted: the retries it describes are over)."""
    if item is None or item.dispatch_id != notice.dispatch_id or ItemState(item.state).is_final:
        log.info("trouble.stale", trouble=notice.trouble.value)
        return Applied.STALE
    if item.trouble_at is None or notice.occurred_at >= item.trouble_at:  # not out of order
        item.trouble = notice.trouble.value
        item.trouble_at = notice.occurred_at
        item.trouble_attempt = notice.attempt
        item.next_retry_at = notice.next_retry_at
        item.last_error = notice.last_error
        item.circuit = notice.circuit.value
    when = (
        f"next retry {notice.next_retry_at.astimezone(CHINA_TZ).isoformat(timespec='seconds')}"
        if notice.next_retry_at is not None
        else "parked until an operator replays it"
    )
    record_event(
        session,
        notice.bundle_id,
        notice.item,
        TimelineEvent(notice.trouble.value),
        f"attempt {notice.attempt}, {when}, circuit {notice.circuit.value}: {notice.last_error}",
        actor=department_actor(notice.department),
    )
    log.info("trouble.noted", trouble=notice.trouble.value, attempt=notice.attempt)
    return Applied.APPLIED


def _clear_trouble(item: ItemRow) -> None:
    """The department answered: whatever kept it from it is over (the timeline keeps it)."""
    if item.trouble is not None:
        item.trouble = item.trouble_at = item.trouble_attempt = None
        item.next_retry_at = item.last_error = item.circuit = None


def _apply_clock_notice(
    session: Session, item: ItemRow | None, outcome: ItemOutcome, notice: ClockNotice
) -> Applied:
    """延期 or excluded time: the item's state stays; its decision clock changes, or the
    refusal (a second 延期, one beyond the days allowed) is noted on the timeline."""
    actor = department_actor(outcome.department)
    if item is None or item.dispatch_id != outcome.dispatch_id or ItemState(item.state).is_final:
        refused: str | None = "the item is unknown, final or filed anew"
    else:
        refused = Timekeeper(session, working_calendar()).notice(item, notice, clock.now(), actor)
        if refused is None:
            audit.record_decided(session, outcome, ItemState(item.state))
            log.info("outcome.applied", clock=notice.status)
            return Applied.APPLIED
    record_event(
        session,
        outcome.bundle_id,
        outcome.item,
        TimelineEvent.IGNORED,
        f"{notice.status}: {refused}",
        actor=actor,
    )
    log.warning("outcome.clock_notice_refused", reason=refused)
    return Applied.STALE


def _stale(
    session: Session, bundle: BundleRow, outcome: ItemOutcome, item: ItemRow | None, what: str
) -> Applied:
    """Note on the timeline an outcome that changes nothing (too late, out of order)."""
    record_event(
        session,
        bundle.id,
        outcome.item,
        TimelineEvent.IGNORED,
        f"stale outcome {what} (item is {item.state if item else 'unknown'})",
        actor=department_actor(outcome.department),
    )
    log.warning("outcome.stale", target=what)
    return Applied.STALE


def _settlement_of(result: Applied, outcome: Report) -> Settlement:
    if result is Applied.UNKNOWN_BUNDLE and isinstance(outcome, ItemTrouble):
        return Ack()  # news about a bundle this router never had: nothing to keep
    if result is Applied.UNKNOWN_BUNDLE:
        return Park(f"no bundle {outcome.bundle_id}")
    if result is Applied.NOT_ITS_ITEM:
        return Park(f"{outcome.department} answered item {outcome.item} of another department")
    return Ack()


_INBOX: Table = InboxRow.__table__  # type: ignore[assignment]
_RECORD_IN_INBOX = {
    name: insert.returning(_INBOX.c.message_id)
    for name, insert in insert_skipping_conflicts(_INBOX).items()
}


def _record_in_inbox(session: Session, outcomes: Sequence[Report]) -> set[str]:
    """Record the outcomes' message ids; return those seen for the first time.

    One `INSERT … ON CONFLICT DO NOTHING RETURNING` for the whole batch: the ids it
    returns are new, the others were applied before (a redelivery)."""
    if not outcomes:
        return set()
    connection = session.connection()
    now = datetime.now(UTC)
    rows = [
        {"message_id": str(o.message_id), "bundle_id": o.bundle_id, "processed_at": now}
        for o in outcomes
    ]
    return set(connection.scalars(_RECORD_IN_INBOX[connection.dialect.name], rows))


def _audit_refusal(session: Session, delivery: Delivery, reason: str) -> None:
    audit.record(
        session,
        actor=Actor.ROUTER,
        event=audit.AuditEvent.REFUSED,
        outcome="parked",
        bundle_id=_uuid_or_none(delivery.correlation_id),
        message_id=delivery.message_id,
        detail=reason,
    )


def _uuid_or_none(value: object) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(value))
    except ValueError:
        return None
