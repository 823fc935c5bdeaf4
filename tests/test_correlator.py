"""The correlator applies each outcome once, ignores stale ones, and never moves backwards.

Runs on SQLite and (connected) on PostgreSQL.
"""

from __future__ import annotations

import threading
import time
import uuid
from collections import Counter
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from conftest import fresh_postgres_database
from harness import KEYRING, received_dispatches
from sqlalchemy import event, select, text, update

from contracts.catalog import Catalog, default_catalog
from contracts.messages import (
    Accepted,
    CircuitState,
    CorrectionRequested,
    Decided,
    Failed,
    ItemDispatch,
    ItemOutcome,
    ItemTrouble,
    OutcomeResult,
    Rejected,
    ToleratedGap,
    TroubleKind,
)
from router.domain.correlator import Applied, Correlator
from router.domain.states import SYSTEM_FAILURE_REASON
from router.domain.views import bundle_status
from router.store import AuditRow, BundleRow, Database, EventRow, ItemRow, NoticeRow, OutboxRow
from runtime.messaging import Ack, Delivery, Hold, Park
from runtime.messaging.signing import ROUTER_SIGNER
from runtime.storage import LocalMaterialStore


@pytest.fixture
def dispatches(database: Database, catalog: Catalog, tmp_path: Path) -> list[ItemDispatch]:
    """A newborn bundle received; returns the dispatches its intake wrote to the outbox."""
    return received_dispatches(database, catalog, LocalMaterialStore(tmp_path / "materials"))


def _outcome(dispatch: ItemDispatch, result: OutcomeResult) -> ItemOutcome:
    return ItemOutcome(
        bundle_id=dispatch.bundle_id,
        item=dispatch.item,
        department=dispatch.department,
        dispatch_id=dispatch.message_id,
        occurred_at=datetime.now(UTC),
        result=result,
    )


def _item_state(database: Database, dispatch: ItemDispatch) -> str:
    with database.transaction() as session:
        status = bundle_status(session, dispatch.bundle_id, default_catalog())
    assert status is not None
    return next(item.state for item in status.items if item.item == dispatch.item)


def test_a_redelivered_outcome_changes_nothing(
    database: Database, catalog: Catalog, dispatches: list[ItemDispatch]
) -> None:
    correlator = Correlator(database, catalog, keyring=KEYRING)
    decided = _outcome(dispatches[0], Decided(approved=True))

    assert correlator.apply(decided) is Applied.APPLIED
    with database.transaction() as session:
        outbox_after_first = len(session.scalars(select(OutboxRow)).all())
        events_after_first = len(session.scalars(select(EventRow)).all())
    assert correlator.apply(decided) is Applied.DUPLICATE

    with database.transaction() as session:
        assert len(session.scalars(select(OutboxRow)).all()) == outbox_after_first
        assert len(session.scalars(select(EventRow)).all()) == events_after_first


def test_a_late_accepted_does_not_undo_a_decision(
    database: Database, catalog: Catalog, dispatches: list[ItemDispatch]
) -> None:
    correlator = Correlator(database, catalog, keyring=KEYRING)
    dispatch = dispatches[0]

    assert correlator.apply(_outcome(dispatch, Decided(approved=True))) is Applied.APPLIED
    assert correlator.apply(_outcome(dispatch, Accepted())) is Applied.STALE
    assert _item_state(database, dispatch) == "approved"


def test_an_acceptance_with_tolerated_gaps_keeps_the_commitment_and_due_date(
    database: Database, catalog: Catalog, dispatches: list[ItemDispatch]
) -> None:
    gap = ToleratedGap(
        material="父母结婚证", commitment="承诺10个工作日内补交原件", due_date=date(2026, 12, 7)
    )
    dispatch = dispatches[0]
    accepted = _outcome(dispatch, Accepted(receipt_no="R-1", tolerated_gaps=(gap,)))
    assert Correlator(database, catalog, keyring=KEYRING).apply(accepted) is Applied.APPLIED

    with database.transaction() as session:
        status = bundle_status(session, dispatch.bundle_id, default_catalog())
    assert status is not None
    item = next(item for item in status.items if item.item == dispatch.item)
    assert item.tolerated_gaps == (gap,)
    assert item.reason is not None and "父母结婚证" in item.reason and "2026-12-07" in item.reason


def test_a_failed_item_tells_the_applicant_plain_words_and_the_operator_the_error(
    database: Database, catalog: Catalog, dispatches: list[ItemDispatch]
) -> None:
    """The applicant's reasons (the item's and its dependents') carry no exception text;
    the timeline keeps the technical error for the operator, personal data masked."""
    (prerequisite,) = [d for d in dispatches if d.item == "birth_medical_certificate"]
    error = "RuntimeError: SOAP fault for 11010519491231002X: connection reset"
    failed = _outcome(prerequisite, Failed(error=error))
    assert Correlator(database, catalog, keyring=KEYRING).apply(failed) is Applied.APPLIED

    with database.transaction() as session:
        status = bundle_status(session, prerequisite.bundle_id, catalog)
    assert status is not None
    reasons = {item.item: item.reason or "" for item in status.items}
    assert reasons["birth_medical_certificate"] == SYSTEM_FAILURE_REASON
    dependents = [r for code, r in reasons.items() if r.startswith("前置事项")]
    assert dependents and all(SYSTEM_FAILURE_REASON in reason for reason in dependents)
    assert not any("Error" in reason or "SOAP" in reason for reason in reasons.values())
    (step,) = [e for e in status.timeline if e.state == "failed"]
    assert step.detail is not None and "RuntimeError: SOAP fault" in step.detail
    assert "11010519491231002X" not in step.detail


def test_a_pre_reviewed_item_is_not_decided_before_its_prerequisites(
    database: Database, catalog: Catalog, dispatches: list[ItemDispatch]
) -> None:
    correlator = Correlator(database, catalog, keyring=KEYRING)
    (pre_review,) = [d for d in dispatches if d.item == "social_security_card_application"]
    assert pre_review.pre_review and pre_review.prerequisite_results == ()

    assert correlator.apply(_outcome(pre_review, Accepted(receipt_no="R-2"))) is Applied.APPLIED
    assert _item_state(database, pre_review) == "pre_reviewed"
    assert correlator.apply(_outcome(pre_review, Decided(approved=True))) is Applied.STALE
    assert _item_state(database, pre_review) == "pre_reviewed"


def test_an_outcome_for_another_dispatch_or_bundle_is_not_applied(
    database: Database, catalog: Catalog, dispatches: list[ItemDispatch]
) -> None:
    correlator = Correlator(database, catalog, keyring=KEYRING)
    dispatch = dispatches[0]
    foreign = _outcome(dispatch, Decided(approved=True)).model_copy(
        update={"dispatch_id": uuid.uuid4()}
    )
    unknown = _outcome(dispatch, Decided(approved=True)).model_copy(
        update={"bundle_id": uuid.uuid4()}
    )

    assert correlator.apply(foreign) is Applied.STALE
    assert correlator.apply(unknown) is Applied.UNKNOWN_BUNDLE
    assert _item_state(database, dispatch) == "dispatched"


def _signed_delivery(body: bytes, message_id: str = "m-1", signer: str = ROUTER_SIGNER) -> Delivery:
    """A delivery of `body`, signed by `signer`, as the consumer loop hands it over."""
    return Delivery(
        body=body,
        headers=KEYRING.sign(signer, body=body, message_id=message_id, correlation_id="c-1"),
        message_id=message_id,
        correlation_id="c-1",
    )


def _delivery_of(outcome: ItemOutcome) -> Delivery:
    return _signed_delivery(outcome.model_dump_json().encode(), str(outcome.message_id))


def test_a_message_breaking_the_contract_is_parked_not_applied(
    database: Database, catalog: Catalog, dispatches: list[ItemDispatch]
) -> None:
    correlator = Correlator(database, catalog, keyring=KEYRING)
    settlement = correlator.handle_one(_signed_delivery(b'{"status": "approved"}'))
    assert isinstance(settlement, Park) and "outcome contract" in settlement.reason
    with database.transaction() as session:
        refused = session.scalars(select(AuditRow).where(AuditRow.event == "refused")).all()
    assert [(row.message_id, row.outcome) for row in refused] == [("m-1", "parked")]
    assert "outcome contract" in (refused[0].detail or "")

    valid = _delivery_of(_outcome(dispatches[0], Accepted()))
    assert correlator.handle_one(valid) == Ack()
    assert _item_state(database, dispatches[0]) == "accepted"


def test_a_department_cannot_decide_another_departments_item(
    database: Database, catalog: Catalog, dispatches: list[ItemDispatch]
) -> None:
    """Finding 1: police, signing as itself, named another department's dispatch."""
    victim = next(d for d in dispatches if d.department != "police")
    forged = _outcome(victim, Rejected(reason="伪造")).model_copy(update={"department": "police"})
    delivery = _signed_delivery(
        forged.model_dump_json().encode(), str(forged.message_id), signer="police"
    )

    settlement = Correlator(database, catalog, keyring=KEYRING).handle_one(delivery)

    assert isinstance(settlement, Park) and "another department" in settlement.reason
    assert _item_state(database, victim) == "dispatched"
    with database.transaction() as session:
        refused = session.scalars(select(AuditRow).where(AuditRow.event == "refused")).all()
    assert [row.message_id for row in refused] == [str(forged.message_id)]


def test_outcomes_waiting_together_are_applied_in_one_transaction(
    database: Database, catalog: Catalog, dispatches: list[ItemDispatch]
) -> None:
    commits: list[object] = []
    event.listen(database.engine, "commit", commits.append)
    health, vaccination = dispatches[0], dispatches[1]
    decided = _outcome(health, Decided(approved=True))
    unknown = _outcome_for_unknown_item()
    batch = [
        _delivery_of(_outcome(health, Accepted(receipt_no="R-1"))),
        _delivery_of(decided),
        _delivery_of(_outcome(vaccination, Decided(approved=True))),
        _delivery_of(unknown),
        _signed_delivery(b'{"status": "approved"}', "m-broken"),
        _delivery_of(decided),  # redelivered while the first copy waits
    ]

    settlements = Correlator(database, catalog, keyring=KEYRING).handle_batch(batch)

    assert len(commits) == 1
    assert settlements[:3] == [Ack()] * 3 and settlements[5] == Ack()
    unknown_parked, broken_parked = settlements[3], settlements[4]
    assert unknown_parked == Park(f"no bundle {unknown.bundle_id}")
    assert isinstance(broken_parked, Park)
    assert broken_parked.reason.startswith("breaks the outcome contract")
    assert _item_state(database, health) == _item_state(database, vaccination) == "approved"
    with database.transaction() as session:
        audited = session.execute(select(AuditRow.event, AuditRow.message_id)).all()
    assert {"m-broken", str(unknown.message_id)} <= {
        message_id for kind, message_id in audited if kind == "refused"
    }
    assert [message_id for kind, message_id in audited if kind == "decided"].count(
        str(decided.message_id)
    ) == 1


def test_a_batch_reads_its_bundles_once_and_writes_each_table_once(
    database: Database, catalog: Catalog, dispatches: list[ItemDispatch]
) -> None:
    """Set-based, however many outcomes wait together: one SELECT locks the bundle, one
    (after the lock) loads its items with their polls, each table gets one INSERT
    (inbox, timeline, audit, notices: one multi-row statement each), and the items one
    UPDATE per set of columns they changed (accepted and pre-reviewed ones change
    different clocks). Counted statements,
    never time: a lookup, an INSERT or an UPDATE per outcome shows as soon as it is back."""
    statements: list[str] = []
    run_per_row: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, params: object, *_: object) -> None:
        statements.append(" ".join(statement.split()[:3]).upper())
        if isinstance(params, list) and isinstance(params[0], dict | tuple):
            run_per_row.append(statements[-1])  # the driver's executemany

    accepted = [
        _outcome(dispatch, Accepted(receipt_no=f"R-{dispatch.item}")) for dispatch in dispatches
    ]
    assert len(accepted) >= 2
    correlator = Correlator(database, catalog, keyring=KEYRING)
    event.listen(database.engine, "before_cursor_execute", count)
    try:
        assert correlator.apply_all(accepted) == [Applied.APPLIED] * len(accepted)
    finally:
        event.remove(database.engine, "before_cursor_execute", count)

    assert len([statement for statement in statements if statement.startswith("SELECT")]) == 2
    inserts = Counter(statement for statement in statements if statement.startswith("INSERT"))
    assert {"INSERT INTO INBOX", "INSERT INTO EVENTS", "INSERT INTO NOTICES"} <= set(inserts)
    assert set(inserts.values()) == {1}, inserts
    # Each INSERT one multi-row statement, not one per row in a driver's executemany.
    assert not [statement for statement in run_per_row if statement.startswith("INSERT")]
    assert statements.count("UPDATE ITEMS SET") <= 2 < len(accepted), statements


def test_an_item_accepted_again_after_a_correction_keeps_its_one_notice(
    database: Database, catalog: Catalog, dispatches: list[ItemDispatch]
) -> None:
    """受理, 补齐补正, 受理 again: the first notice stands, whether the three arrive in one
    batch or one at a time (written at commit, a notice skips the one the item has)."""
    correlator = Correlator(database, catalog, keyring=KEYRING)

    def accepted_corrected_accepted(dispatch: ItemDispatch) -> list[ItemOutcome]:
        return [
            _outcome(dispatch, Accepted(receipt_no="SL-1")),
            _outcome(dispatch, CorrectionRequested(reason="缺少出生医学证明原件")),
            _outcome(dispatch, Accepted(receipt_no="SL-2")),
        ]

    together, apart = dispatches[0], dispatches[1]
    assert correlator.apply_all(accepted_corrected_accepted(together)) == [Applied.APPLIED] * 3
    for outcome in accepted_corrected_accepted(apart):
        assert correlator.apply(outcome) is Applied.APPLIED

    with database.transaction() as session:
        notices = session.execute(
            select(NoticeRow.item, NoticeRow.receipt_no).where(
                NoticeRow.bundle_id == together.bundle_id
            )
        ).all()
    assert sorted(notices) == sorted([(together.item, "SL-1"), (apart.item, "SL-1")])


def test_an_unreachable_database_holds_the_outcome_rather_than_refusing_it(
    catalog: Catalog,
) -> None:
    unreachable = Database("postgresql+psycopg://postgres@127.0.0.1:1/nowhere")
    delivery = _delivery_of(_outcome_for_unknown_item())
    settlement = Correlator(unreachable, catalog, keyring=KEYRING).handle_one(delivery)
    assert isinstance(settlement, Hold) and "database unavailable" in settlement.reason


@pytest.mark.connected
def test_an_outcome_the_database_refuses_is_parked_not_retried_forever(
    postgres_url: str, catalog: Catalog, tmp_path: Path
) -> None:
    database = Database(postgres_url)
    database.migrate()
    newborn = dispatches.__wrapped__(database, catalog, tmp_path)  # type: ignore[attr-defined]
    # PostgreSQL text cannot hold NUL: the same outcome would fail on every redelivery.
    poison = _delivery_of(_outcome(newborn[0], Rejected(reason="材料不全\x00")))
    settlement = Correlator(database, catalog, keyring=KEYRING).handle_one(poison)
    assert isinstance(settlement, Park) and "database refuses" in settlement.reason
    assert _item_state(database, newborn[0]) == "dispatched"
    database.dispose()


def _outcome_for_unknown_item() -> ItemOutcome:
    return ItemOutcome(
        bundle_id=uuid.uuid4(),
        item="nothing",
        department="police",
        dispatch_id=uuid.uuid4(),
        occurred_at=datetime.now(UTC),
        result=Accepted(),
    )


def _trouble(dispatch: ItemDispatch, attempt: int, **changes: object) -> ItemTrouble:
    notice = ItemTrouble.about(
        dispatch,
        TroubleKind.RETRYING,
        attempt=attempt,
        last_error="ConnectError: All connection attempts failed",
        circuit=CircuitState.OPEN,
        next_retry_at=datetime.now(UTC) + timedelta(seconds=5),
    )
    return notice.model_copy(update=changes)


def _report_of(report: ItemOutcome | ItemTrouble) -> Delivery:
    """`report` signed by the department it names, as its adapter sends it."""
    body = report.model_dump_json().encode()
    return _signed_delivery(body, str(report.message_id), signer=report.department)


def _steps(database: Database, dispatch: ItemDispatch) -> list[str]:
    with database.transaction() as session:
        status = bundle_status(session, dispatch.bundle_id, default_catalog())
    assert status is not None
    return [step.state for step in status.timeline if step.item == dispatch.item]


def test_trouble_notices_are_kept_once_in_order_until_the_department_answers(
    database: Database, catalog: Catalog, dispatches: list[ItemDispatch]
) -> None:
    correlator = Correlator(database, catalog, keyring=KEYRING)
    dispatch = dispatches[0]
    first, second = _trouble(dispatch, 1), _trouble(dispatch, 2)

    assert correlator.handle_one(_report_of(second)) == Ack()
    assert correlator.handle_one(_report_of(second)) == Ack()  # redelivered: one step
    assert correlator.handle_one(_report_of(first)) == Ack()  # late: noted, not kept
    assert _steps(database, dispatch).count("retrying") == 2
    with database.transaction() as session:
        status = bundle_status(session, dispatch.bundle_id, default_catalog())
    assert status is not None
    (item,) = [item for item in status.items if item.item == dispatch.item]
    assert item.state == "dispatched" and item.trouble is not None
    assert (item.trouble.state, item.trouble.attempts, item.trouble.circuit) == (
        "retrying",
        2,
        "open",
    )
    assert item.trouble.next_retry_at == second.next_retry_at
    assert item.trouble.last_error == "ConnectError: All connection attempts failed"

    assert correlator.handle_one(_report_of(_outcome(dispatch, Accepted()))) == Ack()
    with database.transaction() as session:
        status = bundle_status(session, dispatch.bundle_id, default_catalog())
    assert status is not None
    assert all(item.trouble is None for item in status.items)
    assert "accepted" in _steps(database, dispatch)


def test_a_trouble_notice_of_another_department_or_a_finished_item_changes_nothing(
    database: Database, catalog: Catalog, dispatches: list[ItemDispatch]
) -> None:
    correlator = Correlator(database, catalog, keyring=KEYRING)
    victim = next(d for d in dispatches if d.department != "police")
    forged = _trouble(victim, 1, department="police")
    settlement = correlator.handle_one(_report_of(forged))
    assert isinstance(settlement, Park) and "another department" in settlement.reason

    assert correlator.apply(_outcome(victim, Decided(approved=True))) is Applied.APPLIED
    assert correlator.handle_one(_report_of(_trouble(victim, 2))) == Ack()
    assert "retrying" not in _steps(database, victim)


@pytest.mark.connected
def test_a_correlator_that_waited_for_the_bundle_lock_reads_the_items_as_committed(
    catalog: Catalog, tmp_path: Path
) -> None:
    """Replicas answer the same bundle at once: the correlator that waited for the bundle's
    lock reads its items as the one holding it committed them. (PostgreSQL's READ COMMITTED
    gives rows a statement did not lock that statement's snapshot: items read along with
    the lock would be as they were before the wait, and the approval below undone.)"""
    with fresh_postgres_database() as url:
        database = Database(url)
        database.migrate()
        try:
            dispatch = received_dispatches(
                database, catalog, LocalMaterialStore(tmp_path / "materials")
            )[0]
            correlator = Correlator(database, catalog, keyring=KEYRING)
            late: list[Applied] = []
            waiting = threading.Thread(
                target=lambda: late.extend(correlator.apply_all([_outcome(dispatch, Accepted())]))
            )
            # Another correlator: holds the bundle's lock and has approved the item.
            with database.transaction() as session:
                session.execute(
                    select(BundleRow).where(BundleRow.id == dispatch.bundle_id).with_for_update()
                )
                session.execute(
                    update(ItemRow)
                    .where(ItemRow.bundle_id == dispatch.bundle_id, ItemRow.code == dispatch.item)
                    .values(state="approved")
                )
                waiting.start()
                _until_a_session_waits_for_a_lock(database)
            waiting.join()

            assert late == [Applied.STALE]  # an acceptance cannot undo the decision
            assert _item_state(database, dispatch) == "approved"
        finally:
            database.dispose()


def _until_a_session_waits_for_a_lock(database: Database) -> None:
    """Return once another session of this database waits for a lock (10 s at most)."""
    waits = text(
        "SELECT count(*) FROM pg_stat_activity"
        " WHERE wait_event_type = 'Lock' AND datname = current_database()"
    )
    deadline = time.monotonic() + 10
    while True:
        # A transaction per look: within one, pg_stat_activity answers from the snapshot
        # its first read took.
        with database.engine.connect() as connection:
            if connection.scalar(waits):
                return
        assert time.monotonic() < deadline, "the second correlator never waited for the lock"
        time.sleep(0.01)
