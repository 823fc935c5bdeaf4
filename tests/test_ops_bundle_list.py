"""The ops page's bundle list on SQLite and (connected) PostgreSQL: each filter narrows
the list, pages run newest first, and bundles and items are counted apart."""

from __future__ import annotations

import hashlib
from datetime import date, datetime, timedelta, timezone
from pathlib import Path

import pytest
import time_machine
from harness import new_project_no

from contracts.api import BundleState
from contracts.catalog import Catalog
from contracts.samples import SAMPLE_PDF, sample_application
from router.domain.intake import Intake, Received
from router.operations.bundle_list import BundleFilter, BundlePage, bundle_page
from router.store import Database, ItemRow
from runtime.storage import LocalMaterialStore

CHINA = timezone(timedelta(hours=8))
# Mon 9 to Wed 11 February 2026 are working days; acceptance is due by the end of the next one.
MONDAY, TUESDAY, WEDNESDAY = (datetime(2026, 2, day, 9, tzinfo=CHINA) for day in (9, 10, 11))
NOW = datetime(2026, 2, 11, 12, tzinfo=CHINA)  # Monday's items are past their acceptance


@pytest.fixture
def received(database: Database, catalog: Catalog, tmp_path: Path) -> dict[str, str]:
    """Newborn on Monday, graduate settlement (police only) on Tuesday, newborn on
    Wednesday: their case numbers by name."""
    materials = LocalMaterialStore(tmp_path / "materials")
    materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    intake = Intake(database, catalog, materials)
    cases = {}
    for name, bundle_type, when in (
        ("monday", "newborn", MONDAY),
        ("tuesday", "graduate_household_settlement", TUESDAY),
        ("wednesday", "newborn", WEDNESDAY),
    ):
        project_no = new_project_no()
        application = sample_application(catalog.bundle_types[bundle_type], project_no)
        with time_machine.travel(when, tick=False):
            assert isinstance(intake.submit(application, project_no), Received)
        cases[name] = project_no
    return cases


def listed(
    database: Database, catalog: Catalog, page: int = 1, page_size: int = 25, **where: object
) -> BundlePage:
    with time_machine.travel(NOW, tick=False):
        return bundle_page(database, catalog, BundleFilter(**where), page, page_size)  # type: ignore[arg-type]


def case_numbers(result: BundlePage) -> list[str]:
    return [bundle.project_no for bundle in result.bundles]


def items_of(database: Database, result: BundlePage) -> int:
    ids = {bundle.bundle_id for bundle in result.bundles}
    with database.transaction() as session:
        return sum(1 for item in session.query(ItemRow).all() if item.bundle_id in ids)


def test_pages_run_newest_first_and_count_bundles_apart_from_items(
    database: Database, catalog: Catalog, received: dict[str, str]
) -> None:
    first = listed(database, catalog, page_size=2)
    second = listed(database, catalog, page=2, page_size=2)
    everything = listed(database, catalog)

    assert case_numbers(first) == [received["wednesday"], received["tuesday"]]
    assert case_numbers(second) == [received["monday"]]
    assert (first.bundles_total, second.bundles_total) == (3, 3)
    assert first.items_total == items_of(database, everything) > 3
    assert sum(bundle.items for bundle in everything.bundles) == everything.items_total


def test_each_filter_narrows_the_list(
    database: Database, catalog: Catalog, received: dict[str, str]
) -> None:
    newborns = listed(database, catalog, bundle_type="newborn")
    assert set(case_numbers(newborns)) == {received["monday"], received["wednesday"]}
    assert newborns.items_total == items_of(database, newborns)
    assert set(case_numbers(listed(database, catalog, department="health"))) == {
        received["monday"],
        received["wednesday"],
    }
    assert listed(database, catalog, department="police").bundles_total == 3
    assert case_numbers(listed(database, catalog, overdue=True)) == [received["monday"]]
    assert set(case_numbers(listed(database, catalog, overdue=False))) == {
        received["tuesday"],
        received["wednesday"],
    }
    tuesday = date(2026, 2, 10)
    assert case_numbers(listed(database, catalog, since=tuesday, until=tuesday)) == [
        received["tuesday"]
    ]
    assert listed(database, catalog, state=BundleState.REPLIED).bundles_total == 0
    assert listed(database, catalog, state=BundleState.IN_PROGRESS).bundles_total == 3


def test_an_entry_says_what_an_operator_needs_at_a_glance(
    database: Database, catalog: Catalog, received: dict[str, str]
) -> None:
    (monday,) = listed(database, catalog, overdue=True).bundles
    assert monday.project_no == received["monday"]
    assert monday.bundle_type_zh == "新生儿出生"
    assert monday.overdue and monday.state is BundleState.IN_PROGRESS
    assert monday.open_items == monday.items
    assert {"health", "police"} <= set(monday.departments)
