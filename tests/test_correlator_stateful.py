"""A Hypothesis state machine drives the correlator the way the broker may: department
answers in any order, delivered late, twice, or into a transaction that dies before its
commit, one at a time or several in one transaction — and the invariants hold after
every step:

- a bundle has at most one reply, and only once every item is final;
- an item never leaves a final state, and its timeline never goes back;
- once everything is delivered, every bundle has exactly one reply, and every dependent
  item was decided after a prerequisite of each of its groups was approved.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import hypothesis.strategies as st
import pytest
from harness import KEYRING, new_project_no
from hypothesis import HealthCheck, settings
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule
from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.orm import Session

from contracts import topology
from contracts.catalog import default_catalog
from contracts.messages import (
    Accepted,
    Decided,
    DepartmentMessage,
    ItemDispatch,
    ItemOutcome,
    ItemState,
    ItemSupplement,
    OutcomeResult,
)
from contracts.samples import SAMPLE_PDF, sample_application
from router.domain.correlator import Correlator
from router.domain.intake import Intake, Received
from router.store import Database, EventRow, ItemRow, OutboxRow
from runtime.storage import LocalMaterialStore

pytestmark = pytest.mark.chaos

CATALOG = default_catalog()
FINAL = {state.value for state in ItemState if state.is_final}
_DEPARTMENT_MESSAGE: TypeAdapter[DepartmentMessage] = TypeAdapter(DepartmentMessage)


class Crash(Exception):
    """The process died between applying an outcome and committing it."""


class CrashingDatabase(Database):
    """A database whose next transaction dies just before its commit, when told to."""

    crash_next = False

    @contextmanager
    def transaction(self) -> Iterator[Session]:
        with super().transaction() as session:
            yield session
            if self.crash_next:
                self.crash_next = False
                raise Crash


_template: Path | None = None


def _replied_bundles(session: Session) -> list[str]:
    """One entry per reply written to the outbox (a bundle twice if replied twice)."""
    return list(
        session.scalars(
            select(OutboxRow.correlation_id).where(
                OutboxRow.exchange == topology.REPLIES_EXCHANGE,
                OutboxRow.routing_key == topology.reply_routing_key("newborn"),
            )
        )
    )


def _migrated_copy(directory: Path) -> str:
    """A migrated SQLite database, copied from one built once (migrating per example
    would dominate the run)."""
    global _template
    if _template is None:
        _template = Path(tempfile.mkdtemp()) / "template.db"
        template = Database(f"sqlite:///{_template}")
        template.migrate()
        template.dispose()
    shutil.copy(_template, directory / "lianban.db")
    return f"sqlite:///{directory / 'lianban.db'}"


class CorrelatorWorld(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.directory = Path(tempfile.mkdtemp())
        self.database = CrashingDatabase(_migrated_copy(self.directory))
        self.correlator = Correlator(self.database, CATALOG, keyring=KEYRING)
        materials = LocalMaterialStore(self.directory / "materials")
        materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
        intake = Intake(self.database, CATALOG, materials)
        self.bundles = []
        for _ in range(2):
            project_no = new_project_no()
            application = sample_application(CATALOG.bundle_types["newborn"], project_no)
            received = intake.submit(application, project_no)
            assert isinstance(received, Received)
            self.bundles.append(received.receipt.bundle_id)
        self.requests: list[ItemDispatch | ItemSupplement] = []  # at departments
        self.outcomes: list[ItemOutcome] = []  # answered, not yet delivered for good
        self.seen_states: dict[tuple[str, str], str] = {}
        self._collect_published()

    def teardown(self) -> None:
        self.database.dispose()
        shutil.rmtree(self.directory, ignore_errors=True)

    def _collect_published(self) -> None:
        """What the relay would publish now: department messages reach the departments."""
        with self.database.transaction() as session:
            rows = session.scalars(
                select(OutboxRow).where(OutboxRow.sent_at.is_(None)).order_by(OutboxRow.id)
            ).all()
            for row in rows:
                row.sent_at = row.created_at
                if row.exchange == topology.DISPATCH_EXCHANGE:
                    message = _DEPARTMENT_MESSAGE.validate_json(row.body)
                    if isinstance(message, ItemDispatch | ItemSupplement):
                        self.requests.append(message)

    def _answers(self, request: ItemDispatch | ItemSupplement) -> list[OutcomeResult]:
        if isinstance(request, ItemDispatch) and request.pre_review:
            return [Accepted()]  # decided only after the supplement (see AdapterRunner)
        return [Accepted(), Decided(approved=True)]

    @precondition(lambda self: self.requests)
    @rule(data=st.data())
    def a_department_answers(self, data: st.DataObject) -> None:
        request = data.draw(st.sampled_from(self.requests))
        answers = self._answers(request)
        # A department may skip straight to its decision, and may answer twice.
        result = data.draw(st.sampled_from(answers))
        self.outcomes.append(ItemOutcome.answering(request, result))

    @precondition(lambda self: self.outcomes)
    @rule(data=st.data(), again=st.booleans())
    def an_outcome_is_delivered(self, data: st.DataObject, again: bool) -> None:
        index = data.draw(st.integers(0, len(self.outcomes) - 1))
        outcome = self.outcomes[index] if again else self.outcomes.pop(index)
        self.correlator.apply(outcome)
        self._collect_published()

    @precondition(lambda self: self.outcomes)
    @rule(data=st.data())
    def several_outcomes_are_delivered_together(self, data: st.DataObject) -> None:
        # What waits in the prefetch goes into one transaction, redeliveries included.
        batch = data.draw(st.lists(st.sampled_from(self.outcomes), min_size=2, max_size=6))
        self.correlator.apply_all(batch)
        for outcome in batch:
            if outcome in self.outcomes:
                self.outcomes.remove(outcome)
        self._collect_published()

    @precondition(lambda self: self.outcomes)
    @rule(data=st.data())
    def the_correlator_dies_before_committing(self, data: st.DataObject) -> None:
        # They stay: they are redelivered.
        batch = data.draw(st.lists(st.sampled_from(self.outcomes), min_size=1, max_size=4))
        self.database.crash_next = True
        with suppress(Crash):
            self.correlator.apply_all(batch)
        self.database.crash_next = False

    @invariant()
    def replies_are_single_and_final(self) -> None:
        with self.database.transaction() as session:
            replies = _replied_bundles(session)
            items = session.execute(select(ItemRow.bundle_id, ItemRow.code, ItemRow.state)).all()
        assert len(replies) == len(set(replies)), "a bundle was replied twice"
        for bundle, code, state in items:
            if str(bundle) in replies:
                assert state in FINAL, f"replied while {code} is {state}"

    @invariant()
    def final_states_stay_final(self) -> None:
        with self.database.transaction() as session:
            items = session.execute(select(ItemRow.bundle_id, ItemRow.code, ItemRow.state)).all()
        for bundle, code, state in items:
            before = self.seen_states.get((str(bundle), code))
            if before in FINAL:
                assert state == before, f"{code} left final state {before} for {state}"
            self.seen_states[(str(bundle), code)] = state

    def run_to_completion(self) -> None:
        """Every department answers everything, every outcome is delivered."""
        for _ in range(50):
            for request in self.requests:
                for result in self._answers(request):
                    self.outcomes.append(ItemOutcome.answering(request, result))
            self.requests.clear()
            while self.outcomes:
                self.correlator.apply(self.outcomes.pop(0))
                self._collect_published()
            if not self.requests:
                return
        raise AssertionError("the bundles never settled")


class CorrelatorWorldToCompletion(CorrelatorWorld):
    def teardown(self) -> None:
        try:
            self.run_to_completion()
            self._check_completed()
        finally:
            super().teardown()

    def _check_completed(self) -> None:
        with self.database.transaction() as session:
            replies = _replied_bundles(session)
            events = session.execute(
                select(EventRow.bundle_id, EventRow.item, EventRow.state, EventRow.id)
            ).all()
        assert sorted(replies) == sorted(str(bundle) for bundle in self.bundles)
        approved = {
            (str(bundle), item): event_id
            for bundle, item, state, event_id in events
            if state == ItemState.APPROVED.value
        }
        for bundle in self.bundles:
            for item in CATALOG.bundle_types["newborn"].items:
                decided = approved.get((str(bundle), item.code))
                if decided is None:
                    continue
                for group in item.prerequisites:
                    before = [approved.get((str(bundle), code)) for code in group.any_of]
                    assert any(event is not None and event < decided for event in before), (
                        f"{item.code} approved before {group.any_of}"
                    )


# `make chaos` runs many more (LIANBAN_STATEFUL_EXAMPLES).
CorrelatorWorldToCompletion.TestCase.settings = settings(
    max_examples=int(os.environ.get("LIANBAN_STATEFUL_EXAMPLES", "8")),
    stateful_step_count=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
TestCorrelatorUnderRandomDelivery = CorrelatorWorldToCompletion.TestCase
