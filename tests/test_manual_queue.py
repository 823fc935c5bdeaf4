"""The manual work queue's rules, without HTTP (tests/test_manual_department.py drives it
through the API, the manual adapter and the correlator)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from sqlalchemy import func, select

from adapters.testing.dispatches import dispatch_for
from contracts.api import ManualItemState
from contracts.messages import (
    Accepted,
    Certificate,
    Decided,
    ItemDispatch,
    ItemOutcome,
    ItemSupplement,
    PrerequisiteResult,
    SupplementPurpose,
)
from router.domain.manual_queue import ManualQueue, Refusal, Taken
from router.store import AuditRow, Database, OutboxRow

APPROVED = Decided(
    approved=True,
    certificates=(
        Certificate(
            certificate_name="出生医学证明",
            certificate_number="Q410000001",
            issuer_name="郑州市妇幼保健院",
            issue_date=date(2026, 11, 23),
        ),
    ),
)


@pytest.fixture
def database(tmp_path: Path) -> Iterator[Database]:
    database = Database(f"sqlite:///{tmp_path / 'manual.db'}")
    database.migrate()
    yield database
    database.dispose()


@pytest.fixture
def dispatch() -> ItemDispatch:
    return dispatch_for("birth_medical_certificate_issuance", department="health")


def test_filing_again_returns_the_first_item_and_another_departments_dispatch_is_refused(
    database: Database, dispatch: ItemDispatch
) -> None:
    health = ManualQueue(database, "health")
    first = health.file(dispatch)
    assert not isinstance(first, Refusal) and first.state == ManualItemState.OPEN
    assert health.file(dispatch) == first
    assert health.items(ManualItemState.OPEN) == [first]
    assert ManualQueue(database, "police").file(dispatch) is Refusal.OTHER_DEPARTMENT


def test_another_departments_item_is_not_in_its_queue(
    database: Database, dispatch: ItemDispatch
) -> None:
    filed = ManualQueue(database, "health").file(dispatch)
    assert not isinstance(filed, Refusal)
    police = ManualQueue(database, "police")
    for item_id in (filed.id, uuid.uuid4()):
        assert police.dispatch(item_id) is Refusal.NOT_IN_QUEUE
        assert police.claim(item_id, "警员") is Refusal.NOT_IN_QUEUE
        assert police.decide(item_id, Accepted(), "警员") is Refusal.NOT_IN_QUEUE
    supplement = _supplement(dispatch, SupplementPurpose.CORRECTION)
    assert police.supplement(supplement) is Refusal.NOT_IN_QUEUE
    assert police.items(ManualItemState.OPEN) == []


def test_an_item_claimed_by_one_staff_is_taken_for_the_others(
    database: Database, dispatch: ItemDispatch
) -> None:
    health = ManualQueue(database, "health")
    filed = health.file(dispatch)
    assert not isinstance(filed, Refusal)
    claimed = health.claim(filed.id, "王医生")
    assert not isinstance(claimed, Refusal | Taken)
    assert (claimed.state, claimed.claimed_by) == (ManualItemState.CLAIMED, "王医生")
    again = health.claim(filed.id, "王医生")  # e.g. a retried request
    assert not isinstance(again, Refusal | Taken) and again.claimed_by == "王医生"
    assert health.claim(filed.id, "李医生") == Taken(again)


def test_a_claim_is_enforced_and_every_step_names_its_staff_member(
    database: Database, dispatch: ItemDispatch
) -> None:
    """Finding 8: a second staff member cannot decide an item the first claimed."""
    health = ManualQueue(database, "health")
    filed = health.file(dispatch)
    assert not isinstance(filed, Refusal)
    health.claim(filed.id, "王医生", actor="王医生 (token aaaa)")

    assert health.decide(filed.id, APPROVED, "李医生") is Refusal.CLAIMED_BY_OTHER
    decided = health.decide(filed.id, APPROVED, "王医生", actor="王医生 (token aaaa)")
    assert not isinstance(decided, Refusal) and decided.state == ManualItemState.DONE
    with database.transaction() as session:
        audited = session.execute(
            select(AuditRow.actor, AuditRow.event).where(AuditRow.item == dispatch.item)
        ).all()
    assert audited == [("王医生 (token aaaa)", "claimed"), ("王医生 (token aaaa)", "decided")]


def test_acceptance_keeps_the_item_and_a_decision_closes_it_each_answer_through_the_outbox(
    database: Database, dispatch: ItemDispatch
) -> None:
    health = ManualQueue(database, "health")
    filed = health.file(dispatch)
    assert not isinstance(filed, Refusal)

    accepted = health.decide(filed.id, Accepted(), "王医生")
    assert not isinstance(accepted, Refusal) and accepted.state == ManualItemState.CLAIMED
    decided = health.decide(filed.id, APPROVED, "王医生")
    assert not isinstance(decided, Refusal) and decided.state == ManualItemState.DONE
    assert health.decide(filed.id, APPROVED, "王医生") is Refusal.DECIDED
    assert isinstance(health.claim(filed.id, "王医生"), Taken)

    with database.transaction() as session:
        outcomes = [
            ItemOutcome.model_validate_json(row.body)
            for row in session.scalars(select(OutboxRow).order_by(OutboxRow.id))
        ]
    assert [outcome.result for outcome in outcomes] == [Accepted(), APPROVED]
    assert {outcome.dispatch_id for outcome in outcomes} == {dispatch.message_id}


def test_a_supplement_merges_once_and_its_prerequisites_end_the_pre_review(
    database: Database, dispatch: ItemDispatch
) -> None:
    health = ManualQueue(database, "health")
    filed = health.file(dispatch.model_copy(update={"pre_review": True}))
    assert not isinstance(filed, Refusal)
    correction = _supplement(dispatch, SupplementPurpose.CORRECTION)
    health.supplement(correction)
    assert health.dispatch(filed.id) == dispatch.model_copy(update={"pre_review": True})

    prerequisites = _supplement(dispatch, SupplementPurpose.PREREQUISITES)
    for _ in range(2):
        health.supplement(prerequisites)
    merged = health.dispatch(filed.id)
    assert isinstance(merged, ItemDispatch)
    assert merged.prerequisite_results == prerequisites.prerequisite_results
    assert merged.materials == dispatch.materials  # nothing added twice
    assert merged.pre_review is False
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(OutboxRow)) == 0


def _supplement(dispatch: ItemDispatch, purpose: SupplementPurpose) -> ItemSupplement:
    """A supplement to `dispatch`: the materials it already has, and for `PREREQUISITES`
    a decided prerequisite."""
    results = (
        (PrerequisiteResult(item="birth_registration", department="police"),)
        if purpose is SupplementPurpose.PREREQUISITES
        else ()
    )
    return ItemSupplement(
        **dispatch.filing(),
        item_name_zh=dispatch.item_name_zh,
        purpose=purpose,
        prerequisite_results=results,
        materials=dispatch.materials,
    )
