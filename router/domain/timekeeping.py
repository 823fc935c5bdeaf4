"""Timekeeping: which clock starts, pauses, resumes and stops when an item or a bundle moves.

Seeds 001 and 004 (第十六条), and 行政许可法 第四十二条/第四十五条:

| what happens                  | acceptance (1 day)     | decision (承诺办结时限)       |
|-------------------------------|------------------------|-------------------------------|
| dispatched                    | starts                 | armed with the promised limit |
| accepted (受理)               | finishes               | starts ("办件计时开始")       |
| pre-reviewed (容缺预审)       | finishes               | armed until results forwarded |
| correction requested (补正)   | finishes               | pauses, days used kept        |
| resubmitted                   | anew if never accepted | resumes                       |
| extended (延期), excluded time | —                      | once + reason; stops, resumes |
| decided, rejected, failed …   | finishes               | finishes                      |

A tolerated-gap (容缺) commitment's due day is kept beside the clocks (`gap_due_at`): the
item goes on while the material is outstanding, which is the point of 容缺受理, so the
decision clock does not stop for it; the watcher warns the applicant's promise is due.
The bundle's own clock promises its longest chain of items (each: acceptance and its
limit) and pauses while any item waits for the applicant.

Every change is a timeline step. Each clock's live deadline is stored beside it (`*_due_at`)
for the watcher's indexed query; None while paused or finished.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts.api import BundleState, DeadlineKind, TimelineEvent
from contracts.catalog import (
    ACCEPTANCE_WORKING_DAYS,
    BundleType,
    Catalog,
    Service,
    promised_working_days,
)
from contracts.errors import UnknownYearError
from contracts.messages import (
    ClockNotice,
    ClockResumed,
    ClockStopped,
    Extended,
    ItemState,
    ToleratedGap,
)
from router.domain.clocks import Clock
from router.domain.workdays import WorkingCalendar, end_of_day
from router.store import OPEN_BUNDLE, OPEN_ITEM, BundleRow, ItemRow
from router.store.timeline import Actor, record_event

WAITING_FOR_APPLICANT = "等待申请人补齐补正"

ACCEPT, DECIDE = DeadlineKind.ACCEPTANCE, DeadlineKind.DECISION
_CLOCK_COLUMNS = {
    ACCEPT: ("accept_clock", "accept_due_at"),
    DECIDE: ("decide_clock", "decide_due_at"),
}


def item_clock(item: ItemRow, kind: DeadlineKind) -> Clock | None:
    document = getattr(item, _CLOCK_COLUMNS[kind][0])
    return None if document is None else Clock.model_validate(document)


def bundle_clock(bundle: BundleRow) -> Clock | None:
    return None if bundle.clock is None else Clock.model_validate(bundle.clock)


def respond_by(item: ItemRow) -> datetime | None:
    """The item's current deadline: its decision's once accepted, else its acceptance's."""
    return item.decide_due_at or item.accept_due_at


class Timekeeper:
    """Moves the clocks of one transaction's items and bundles, with the calendar given."""

    def __init__(self, session: Session, calendar: WorkingCalendar) -> None:
        self._session = session
        self._calendar = calendar

    def open_bundle(
        self, bundle: BundleRow, catalog: Catalog, bundle_type: BundleType, at: datetime
    ) -> None:
        days = promised_working_days(catalog, bundle_type, (item.code for item in bundle.items))
        clock = Clock(kind=DeadlineKind.BUNDLE, limit=days).start(at)
        self._store_bundle(bundle, clock, TimelineEvent.CLOCK_STARTED, f"{days} 个工作日", at)

    def arm(self, item: ItemRow, service: Service) -> None:
        """At intake: the decision clock waits, armed with the service's promised limit,
        for 受理."""
        armed = Clock(
            kind=DECIDE, limit=service.promise_days, extendable_days=service.extension_days
        )
        self._store_item(item, armed, None, None, None)

    def moved(self, item: ItemRow, state: ItemState, at: datetime) -> None:
        """The item entered `state`: finish, start, pause or resume its clocks."""
        if state is ItemState.DISPATCHED:
            self._dispatched(item, at)
        elif state is not ItemState.WAITING:
            self._finish(item, ACCEPT, at)
        if state in (ItemState.ACCEPTED, ItemState.APPROVED, ItemState.DENIED):
            # Deciding outright is 受理 too; a department may also accept (or decide)
            # while a correction is outstanding, which ends the wait.
            self._start_decision(item, at)
            self._resume(item, at)
        if state is ItemState.ACCEPTED:
            self._set_gaps(item)
        elif state is ItemState.CORRECTION_REQUESTED:
            self._pause(item, WAITING_FOR_APPLICANT, at)
        elif state.is_final:
            self._finish(item, DECIDE, at)
            item.gap_due_at = None
        self._follow_bundle(item.bundle, at)

    def notice(self, item: ItemRow, notice: ClockNotice, at: datetime, actor: str) -> str | None:
        """Apply a department's 延期 or excluded time; returns why it was refused, if so."""
        clock = item_clock(item, DECIDE)
        if clock is None or clock.started_at is None or clock.finished:
            return "the decision clock is not running: 受理 first"
        match notice:
            case Extended(days=days, reason=reason):
                try:
                    extended = clock.extend(days, reason)
                except ValueError as refused:
                    return str(refused)
                self._store_item(
                    item,
                    extended,
                    TimelineEvent.DEADLINE_EXTENDED,
                    f"延期 {days} 个工作日：{reason}",
                    at,
                    actor,
                )
            case ClockStopped(cause=cause):
                self._pause(item, cause.value, at, actor)
            case ClockResumed():
                self._resume(item, at, actor)
        return None

    def replied(self, bundle: BundleRow, at: datetime) -> None:
        clock = bundle_clock(bundle)
        if clock is not None:
            self._store_bundle(bundle, clock.finish(self._calendar, at), None, None, at)

    def recompute(self) -> int:
        """Recompute every open deadline with the calendar (a year became official, or an
        estimate was corrected); each one that moved is a `deadline_moved` step."""
        moved = 0
        for item in self._session.scalars(select(ItemRow).where(OPEN_ITEM).with_for_update()):
            for kind in (ACCEPT, DECIDE):
                clock = item_clock(item, kind)
                before = getattr(item, _CLOCK_COLUMNS[kind][1])
                if clock is not None and self._due(item.bundle_id, item.code, clock) != before:
                    self._store_item(
                        item, clock, TimelineEvent.DEADLINE_MOVED, f"from {before}", None
                    )
                    moved += 1
        bundles = select(BundleRow).where(OPEN_BUNDLE, BundleRow.clock.is_not(None))
        for bundle in self._session.scalars(bundles.with_for_update()):
            clock, before = bundle_clock(bundle), bundle.due_at
            if clock is not None and self._due(bundle.id, None, clock) != before:
                self._store_bundle(
                    bundle, clock, TimelineEvent.DEADLINE_MOVED, f"from {before}", None
                )
                moved += 1
        return moved

    def _dispatched(self, item: ItemRow, at: datetime) -> None:
        """Dispatched, or resubmitted after a correction: an accepted item's decision
        resumes; one never accepted gets a new acceptance deadline, never its old one."""
        decision = item_clock(item, DECIDE)
        if decision is not None and decision.started_at is not None:
            self._resume(item, at)
        else:
            acceptance = Clock(kind=ACCEPT, limit=ACCEPTANCE_WORKING_DAYS).start(at)
            self._store_item(item, acceptance, TimelineEvent.CLOCK_STARTED, "受理时限", at)

    def _start_decision(self, item: ItemRow, at: datetime) -> None:
        clock = item_clock(item, DECIDE)
        if clock is not None and clock.started_at is None:
            detail = f"{clock.limit} 个工作日，自受理起计"
            self._store_item(item, clock.start(at), TimelineEvent.CLOCK_STARTED, detail, at)

    def _pause(self, item: ItemRow, cause: str, at: datetime, actor: str = Actor.ROUTER) -> None:
        clock = item_clock(item, DECIDE)
        if clock is not None and clock.running:
            paused = clock.pause(self._calendar, at, cause)
            self._store_item(item, paused, TimelineEvent.CLOCK_PAUSED, cause, at, actor)

    def _resume(self, item: ItemRow, at: datetime, actor: str = Actor.ROUTER) -> None:
        clock = item_clock(item, DECIDE)
        if clock is not None and clock.paused_cause is not None and not clock.finished:
            used = f"已用 {clock.used} 个工作日"
            self._store_item(item, clock.resume(at), TimelineEvent.CLOCK_RESUMED, used, at, actor)

    def _finish(self, item: ItemRow, kind: DeadlineKind, at: datetime) -> None:
        clock = item_clock(item, kind)
        if clock is not None and clock.started_at is not None and not clock.finished:
            self._store_item(item, clock.finish(self._calendar, at), None, None, at)

    def _set_gaps(self, item: ItemRow) -> None:
        gaps = [ToleratedGap.model_validate(gap) for gap in item.tolerated_gaps or ()]
        item.gap_due_at = end_of_day(min(gap.due_date for gap in gaps)) if gaps else None

    def _follow_bundle(self, bundle: BundleRow, at: datetime) -> None:
        """The bundle's clock stops while any of its items waits for the applicant."""
        clock = bundle_clock(bundle)
        if clock is None or clock.finished or bundle.state != BundleState.IN_PROGRESS:
            return
        waiting = any(row.state == ItemState.CORRECTION_REQUESTED for row in bundle.items)
        if waiting and clock.running:
            paused = clock.pause(self._calendar, at, WAITING_FOR_APPLICANT)
            self._store_bundle(
                bundle, paused, TimelineEvent.CLOCK_PAUSED, WAITING_FOR_APPLICANT, at
            )
        elif not waiting and clock.paused_cause is not None:
            used = f"已用 {clock.used} 个工作日"
            self._store_bundle(bundle, clock.resume(at), TimelineEvent.CLOCK_RESUMED, used, at)

    def _store_item(
        self,
        item: ItemRow,
        clock: Clock,
        step: TimelineEvent | None,
        detail: str | None,
        at: datetime | None,
        actor: str = Actor.ROUTER,
    ) -> None:
        clock_column, due_column = _CLOCK_COLUMNS[clock.kind]
        due = self._due(item.bundle_id, item.code, clock)
        setattr(item, clock_column, clock.model_dump(mode="json"))
        setattr(item, due_column, due)
        if step is not None:
            self._record(item.bundle_id, item.code, step, clock, detail, due, at, actor)

    def _store_bundle(
        self,
        bundle: BundleRow,
        clock: Clock,
        step: TimelineEvent | None,
        detail: str | None,
        at: datetime | None,
    ) -> None:
        bundle.due_at = self._due(bundle.id, None, clock)
        bundle.clock = clock.model_dump(mode="json")
        if step is not None:
            self._record(bundle.id, None, step, clock, detail, bundle.due_at, at, Actor.ROUTER)

    def _due(self, bundle_id: Any, item: str | None, clock: Clock) -> datetime | None:
        try:
            return clock.due(self._calendar)
        except UnknownYearError as error:
            # Never a guessed deadline: the operator sees why there is none and adds the year.
            record_event(
                self._session,
                bundle_id,
                item,
                TimelineEvent.DEADLINE_UNKNOWN,
                f"{clock.kind}: {error}"[:1000],
                actor=Actor.ROUTER,
            )
            return None

    def _record(
        self,
        bundle_id: Any,
        item: str | None,
        step: TimelineEvent,
        clock: Clock,
        detail: str | None,
        due: datetime | None,
        at: datetime | None,
        actor: str,
    ) -> None:
        parts = [clock.kind.value, detail, f"due {due.isoformat()}" if due else None]
        text = " · ".join(part for part in parts if part)
        record_event(self._session, bundle_id, item, step, text, actor=actor, at=at)


def deadlines(item: ItemRow) -> Iterator[tuple[DeadlineKind, datetime, Clock | None]]:
    """The item's live deadlines, each with its clock (a commitment has none)."""
    for kind in (ACCEPT, DECIDE):
        due = getattr(item, _CLOCK_COLUMNS[kind][1])
        if due is not None:
            yield kind, due, item_clock(item, kind)
    if item.gap_due_at is not None:
        yield DeadlineKind.TOLERATED_GAP, item.gap_due_at, None
