"""A case number already stored is found by the unique index, not by a query before each
new application: the INSERT that fails leaves nothing behind, on SQLite and PostgreSQL."""

from __future__ import annotations

import copy
from pathlib import Path

from harness import intake_with_sample_material, new_project_no
from sqlalchemy import func, select

from contracts.catalog import Catalog
from contracts.samples import sample_application
from router.domain.intake import CaseNumberTaken, Received
from router.store import AuditRow, BundleRow, Database, EventRow, ItemRow, OutboxRow
from runtime.storage import LocalMaterialStore


def test_a_taken_case_number_is_replayed_or_refused_and_writes_only_its_audit_record(
    database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    intake = intake_with_sample_material(
        database, catalog, LocalMaterialStore(tmp_path / "materials")
    )
    project_no = new_project_no()
    application = sample_application(catalog.bundle_types["newborn"], project_no)
    changed = copy.deepcopy(application)
    changed["form"]["contact_address"] = "另一个地址"

    first = intake.submit(application, project_no)
    stored = _counts(database)
    repeated = intake.submit(application, project_no)
    conflicting = intake.submit(changed, project_no)

    assert isinstance(first, Received) and not first.replayed
    assert repeated == Received(first.receipt, replayed=True)
    assert isinstance(conflicting, CaseNumberTaken)
    assert stored[BundleRow] == 1 and stored[ItemRow] == len(first.receipt.items)
    assert _counts(database) == stored
    with database.transaction() as session:
        outcomes = session.scalars(
            select(AuditRow.outcome).where(AuditRow.message_id == project_no).order_by(AuditRow.id)
        ).all()
    assert outcomes == ["accepted", "duplicate", "conflict"]


def _counts(database: Database) -> dict[type, int | None]:
    """The rows a new bundle writes, by table (the audit log aside)."""
    with database.transaction() as session:
        return {
            table: session.scalar(select(func.count()).select_from(table))
            for table in (BundleRow, ItemRow, EventRow, OutboxRow)
        }
