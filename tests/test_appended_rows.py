"""Rows a transaction appends, written together at commit (router.store.appended; on
PostgreSQL as an array per column, router.store.unnested): each value lands in its own
row and column, in the order appended, as its column binds it.

Runs on SQLite and (connected) on PostgreSQL.
"""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from harness import received_dispatches
from sqlalchemy import select

from contracts.api import TimelineEvent
from contracts.catalog import Catalog
from router.store import AuditRow, Database, EventRow, audit
from router.store.audit import AuditEvent, written_by_the_application
from router.store.timeline import Actor, record_event
from runtime.storage import LocalMaterialStore

AT = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def test_audit_records_written_together_keep_their_values_and_signatures(
    database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    bundle_id = received_dispatches(database, catalog, LocalMaterialStore(tmp_path))[0].bundle_id
    with database.transaction() as session:
        for index in range(4):
            audit.record(
                session,
                actor=f"tester:{index}",
                event=AuditEvent.DECIDED,
                outcome="approved",
                bundle_id=bundle_id if index % 2 else None,
                item="birth_registration" if index == 3 else None,
                message_id=f"message-{index}",
            )
    with database.snapshot() as session:
        stored = session.scalars(
            select(AuditRow).where(AuditRow.actor.like("tester:%")).order_by(AuditRow.id)
        ).all()
    assert [(row.actor, row.bundle_id, row.item, row.detail) for row in stored] == [
        ("tester:0", None, None, None),
        ("tester:1", bundle_id, None, None),
        ("tester:2", None, None, None),
        ("tester:3", bundle_id, "birth_registration", None),
    ]
    assert all(written_by_the_application(database.audit_key, row) for row in stored)


def test_timeline_steps_are_stored_in_the_order_they_were_recorded(
    database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    bundle_id = received_dispatches(database, catalog, LocalMaterialStore(tmp_path))[0].bundle_id
    steps = [TimelineEvent.RECEIVED, TimelineEvent.VALIDATED, TimelineEvent.APPLIED] * 5
    with database.transaction() as session:
        for index, step in enumerate(steps):
            # No item on any step: a column all NULL is written as such.
            record_event(session, bundle_id, None, step, f"step {index}", actor=Actor.ROUTER, at=AT)
    with database.snapshot() as session:
        stored = session.execute(
            select(EventRow.state, EventRow.detail, EventRow.item, EventRow.at)
            .where(EventRow.bundle_id == bundle_id, EventRow.detail.like("step %"))
            .order_by(EventRow.id)
        ).all()
    assert [tuple(row) for row in stored] == [
        (step, f"step {index}", None, AT) for index, step in enumerate(steps)
    ]
