"""The audit log: every message received, sent and decided is recorded in a hash chain, and
`lianban audit verify` finds any record changed, removed or reordered — on SQLite and on
PostgreSQL, with writers and sealers running concurrently."""

from __future__ import annotations

import itertools
import json
import threading
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from harness import new_project_no, running_stack
from sqlalchemy import delete, select, update

from contracts.catalog import Catalog
from contracts.errors import ChainBroken, ConfigurationError
from contracts.samples import sample_application
from lianban.cli import main
from lianban.settings import Settings
from router.store import AuditChainRow, AuditRow, Database, audit
from router.store.audit import AuditEvent
from router.store.audit_chain import (
    DEFAULT_RETENTION,
    MINIMUM_RETENTION,
    prune,
    record_hash,
    retention_from_days,
    seal_pending,
    verify,
)


def _write(database: Database, count: int, actor: str = "platform") -> None:
    for n in range(count):
        with database.transaction() as session:
            audit.record(
                session,
                actor=actor,
                event=AuditEvent.RECEIVED,
                outcome="accepted",
                bundle_id=uuid.uuid4(),
                message_id=f"P{n}",
                detail=f"record {n}",
            )


def _ids_by_seq(database: Database) -> list[int]:
    with database.transaction() as session:
        return list(
            session.scalars(
                select(AuditRow.id).where(AuditRow.seq.is_not(None)).order_by(AuditRow.seq)
            )
        )


def test_sealed_records_form_a_chain_that_verifies(database: Database) -> None:
    _write(database, 5)
    assert verify(database).unsealed == 5
    assert seal_pending(database) == 5
    result = verify(database)
    assert result.ok, result.problem
    assert (result.records, result.unsealed, result.head_seq) == (5, 0, 5)
    with database.transaction() as session:
        rows = session.scalars(select(AuditRow).order_by(AuditRow.seq)).all()
    assert [row.seq for row in rows] == [1, 2, 3, 4, 5]
    assert all(row.prev_hash == before.hash for before, row in itertools.pairwise(rows))
    assert rows[-1].hash == result.head_hash


def _change(database: Database, ids: list[int]) -> int:
    with database.transaction() as session:
        session.execute(update(AuditRow).where(AuditRow.id == ids[2]).values(outcome="refused"))
    return ids[2]


def _remove(database: Database, ids: list[int]) -> int:
    with database.transaction() as session:
        session.execute(delete(AuditRow).where(AuditRow.id == ids[2]))
    return ids[3]  # the first record whose predecessor is gone


def _swap(database: Database, ids: list[int]) -> int:
    with database.transaction() as session:  # exchange the places of records 2 and 3
        session.execute(update(AuditRow).where(AuditRow.id == ids[1]).values(seq=-1))
        session.execute(update(AuditRow).where(AuditRow.id == ids[2]).values(seq=2))
        session.execute(update(AuditRow).where(AuditRow.id == ids[1]).values(seq=3))
    return ids[2]


def _rehash_after_change(database: Database, ids: list[int]) -> int:
    """A forger who changes a record and recomputes its hash cannot sign it as a writer."""
    with database.transaction() as session:
        row = session.get(AuditRow, ids[2])
        assert row is not None and row.seq is not None and row.prev_hash is not None
        row.detail = "forged"
        row.hash = record_hash(row, row.seq, row.prev_hash)
    return ids[2]


def _truncate(database: Database, ids: list[int]) -> int | None:
    with database.transaction() as session:
        session.execute(delete(AuditRow).where(AuditRow.id == ids[-1]))
    return None  # nothing is wrong with a record: the chain stops short of its head


@pytest.mark.parametrize(
    "tamper", [_change, _remove, _swap, _rehash_after_change, _truncate], ids=lambda f: f.__name__
)
def test_tampering_is_found_and_named(
    database: Database,
    tamper: Callable[[Database, list[int]], int | None],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    _write(database, 5)
    seal_pending(database)
    ids = _ids_by_seq(database)
    bad = tamper(database, ids)

    result = verify(database)
    assert not result.ok
    assert result.bad_record == bad, result.problem

    monkeypatch.setenv("LIANBAN_DATABASE_URL", database.url)
    assert main(["audit", "verify"]) == 1
    error = capsys.readouterr().err
    assert "does not verify" in error
    assert (f"record id={bad}" if bad else "the chain's end") in error


@pytest.mark.parametrize("signature", [None, "a guess"], ids=["unsigned", "wrong key"])
def test_a_row_inserted_from_outside_is_never_sealed_and_fails_verification(
    database: Database,
    signature: str | None,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Finding 8: a forged, back-dated record inserted straight into the table."""
    _write(database, 2)
    forged = AuditRow(
        at=datetime.now(UTC) - timedelta(days=30),
        actor="platform",
        event="withdrawn",
        outcome="withdrawn",
        bundle_id=uuid.uuid4(),
    )
    if signature is not None:
        forged.writer_mac = audit.writer_mac(b"a key the forger guessed, not ours", forged)
    with database.transaction() as session:
        session.add(forged)
    _write(database, 1)

    assert seal_pending(database) == 4
    assert _ids_by_seq(database) == [id for id in _all_ids(database) if id != forged.id]
    result = verify(database)
    assert not result.ok and result.bad_record == forged.id
    assert "not signed by a writer" in (result.problem or "")
    monkeypatch.setenv("LIANBAN_DATABASE_URL", database.url)
    assert main(["audit", "verify"]) == 1
    assert f"record id={forged.id}" in capsys.readouterr().err


def test_the_chain_head_is_exported_for_anchoring(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(database, 3)
    monkeypatch.setenv("LIANBAN_DATABASE_URL", database.url)
    assert main(["audit", "head"]) == 0
    exported = json.loads(capsys.readouterr().out)
    result = verify(database)
    assert (exported["head_seq"], exported["head_hash"]) == (3, result.head_hash)


def _all_ids(database: Database) -> list[int]:
    with database.transaction() as session:
        return list(session.scalars(select(AuditRow.id).order_by(AuditRow.id)))


def test_the_cli_reports_a_chain_that_verifies(
    database: Database, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    _write(database, 3)
    seal_pending(database)
    monkeypatch.setenv("LIANBAN_DATABASE_URL", database.url)
    assert main(["audit", "verify"]) == 0
    assert "3 records up to seq 3" in capsys.readouterr().out


def test_concurrent_writers_and_sealers_make_one_unbroken_chain(database: Database) -> None:
    """Four writers and two sealers at once: every record sealed exactly once, in one chain."""
    writers_done = threading.Event()
    failures: list[BaseException] = []

    def seal_until_done() -> None:
        try:
            while not writers_done.is_set() or seal_pending(database, batch_size=7) > 0:
                seal_pending(database, batch_size=7)
        except BaseException as error:  # two sealers fought over a place in the chain
            failures.append(error)

    sealers = [threading.Thread(target=seal_until_done) for _ in range(2)]
    writers = [threading.Thread(target=_write, args=(database, 40, f"w{n}")) for n in range(4)]
    for thread in [*sealers, *writers]:
        thread.start()
    for thread in writers:
        thread.join()
    writers_done.set()
    for thread in sealers:
        thread.join()
    seal_pending(database)

    assert failures == []
    result = verify(database)
    assert result.ok, result.problem
    assert (result.records, result.unsealed, result.head_seq) == (160, 0, 160)


def _write_old(database: Database, count: int, days: int) -> None:
    """Records as the application wrote them `days` ago (signed with its key)."""
    with database.transaction() as session:
        for n in range(count):
            row = AuditRow(
                at=datetime.now(UTC) - timedelta(days=days),
                actor="router",
                event=AuditEvent.SENT.value,
                outcome="confirmed",
                message_id=f"old{n}",
            )
            row.writer_mac = audit.writer_mac(database.audit_key, row)
            session.add(row)


def test_pruning_past_retention_keeps_the_rest_verifiable(database: Database) -> None:
    _write_old(database, 4, days=400)
    _write(database, 2)
    seal_pending(database)
    ids = _ids_by_seq(database)

    assert prune(database, DEFAULT_RETENTION) == 4
    assert _ids_by_seq(database) == ids[4:]
    result = verify(database)
    assert result.ok, result.problem
    assert result.records == 2
    with database.transaction() as session:
        chain = session.get(AuditChainRow, 1)
        assert chain is not None and chain.anchor_seq == 4
    _write(database, 1)
    seal_pending(database)
    assert verify(database).ok
    assert prune(database, DEFAULT_RETENTION) == 0


def test_pruning_refuses_a_tampered_chain(database: Database) -> None:
    _write(database, 3)
    seal_pending(database)
    ids = _ids_by_seq(database)
    _change(database, ids)
    with pytest.raises(ChainBroken):
        prune(database, DEFAULT_RETENTION, now=datetime.now(UTC) + timedelta(days=1000))
    assert len(_ids_by_seq(database)) == 3


def test_retention_is_at_least_six_months() -> None:
    assert DEFAULT_RETENTION >= MINIMUM_RETENTION >= timedelta(days=184)
    assert Settings().audit_retention_days >= 184
    assert retention_from_days(365) == timedelta(days=365)
    with pytest.raises(ConfigurationError, match="网络安全法"):
        retention_from_days(90)


def test_a_bundles_messages_are_audited(settings: Settings, catalog: Catalog) -> None:
    newborn = catalog.bundle_types["newborn"]
    with running_stack(settings, catalog) as running:
        application = sample_application(newborn, new_project_no())
        receipt = running.submit(application).json()
        reply = running.wait_for_reply(receipt["reply_url"])
        refused = running.submit({**application, "items": ["no_such_item"]})
        database = running.stack.database
    # Sealed once the stack has stopped: a record written after the reply (the platform
    # told, a notice pushed) would otherwise land after the seal and be read unsealed.
    seal_pending(database)
    with database.transaction() as session:
        bundle_id = uuid.UUID(receipt["bundle_id"])
        rows = session.scalars(select(AuditRow).where(AuditRow.bundle_id == bundle_id)).all()
        refusal = session.scalars(
            select(AuditRow).where(
                AuditRow.message_id == application["project_no"],
                AuditRow.outcome == "refused",
            )
        ).one()
    result = verify(database)

    assert refused.status_code == 422
    assert result.ok, result.problem
    events = [(row.event, row.outcome) for row in rows]
    assert events.count(("received", "accepted")) == 1
    decided = {row.item for row in rows if row.event == "decided"}
    assert decided == {item["item"] for item in reply["items"]}
    sent = [row for row in rows if row.event == "sent"]
    assert len(sent) >= len(reply["items"]) + 1  # each dispatch, and the reply
    assert all(row.seq is not None and row.hash for row in rows)
    assert {row.actor for row in rows if row.event == "decided"} <= {
        f"department:{item.department}" for item in newborn.items
    }
    assert refusal.event == "received" and "item" in (refusal.detail or "")
