"""What intake writes for a new bundle: one INSERT per table, round trips the platform's
POST waits for."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

from harness import intake_with_sample_material, new_project_no
from sqlalchemy import event, select

from contracts.catalog import Catalog
from contracts.messages import ItemState
from contracts.samples import sample_application
from router.domain.intake import Received
from router.store import Database, ItemRow
from runtime.storage import LocalMaterialStore


def test_a_new_bundle_is_written_with_one_insert_per_table(
    database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    intake = intake_with_sample_material(database, catalog, LocalMaterialStore(tmp_path))
    project_no = new_project_no()
    application = sample_application(catalog.bundle_types["newborn"], project_no)
    inserts: Counter[str] = Counter()

    def keep(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        if statement.startswith("INSERT INTO"):
            inserts[statement.split()[2]] += 1

    event.listen(database.engine, "before_cursor_execute", keep)
    try:
        assert isinstance(intake.submit(application, project_no), Received)
    finally:
        event.remove(database.engine, "before_cursor_execute", keep)

    # The outbox is written by the unit of work (router.store.outbox), a row each on SQLite.
    assert {table: inserts[table] for table in ("bundles", "items", "events", "audit_log")} == {
        "bundles": 1,
        "items": 1,
        "events": 1,
        "audit_log": 1,
    }
    with database.transaction() as session:
        # SQL NULL, as a clock not started reads everywhere, not a JSON null.
        waiting = session.scalars(
            select(ItemRow.code).where(
                ItemRow.state == ItemState.WAITING, ItemRow.accept_clock.is_(None)
            )
        ).all()
        unstarted = session.scalars(
            select(ItemRow.code).where(ItemRow.state == ItemState.WAITING)
        ).all()
    assert waiting and sorted(waiting) == sorted(unstarted)
