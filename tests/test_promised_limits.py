"""Promised limits: a bundle promises its longest prerequisite chain of 受理 + promise_days
(a pre-reviewed item running beside its prerequisites), and the receipt and the status
show it with each item's class and days.

The storage tests run on SQLite and (connected) on PostgreSQL.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from harness import new_project_no

from contracts.api import IntakeReceipt
from contracts.catalog import (
    ACCEPTANCE_WORKING_DAYS,
    BundleType,
    Catalog,
    HandlingClass,
    Service,
    promised_working_days,
)
from contracts.samples import SAMPLE_PDF, sample_application
from router.domain.intake import Intake, Received
from router.domain.views import bundle_status
from router.store import Database
from runtime.storage import LocalMaterialStore


def test_the_newborn_bundle_promises_its_longest_chain_not_the_sum_of_its_items(
    catalog: Catalog,
) -> None:
    newborn = catalog.bundle_types["newborn"]
    days = {
        code: catalog.service_of(newborn.item(code)).promise_days for code in newborn.item_codes
    }
    selected = [
        "birth_medical_certificate",
        "vaccination_certificate",  # beside the chain
        "birth_registration",  # waits for 出生医学证明
        "medical_insurance_parent_insured",  # pre-reviewed: decided as 出生登记 is
        "social_security_card_application",  # pre-reviewed: decided as 参保登记 is
    ]
    chain = ["birth_medical_certificate", "birth_registration"]

    assert promised_working_days(catalog, newborn, selected) == sum(
        ACCEPTANCE_WORKING_DAYS + days[code] for code in chain
    )
    # With today's data (the statutory 20 days everywhere): 2 × (1 + 20), not 5 × 21.
    assert promised_working_days(catalog, newborn, selected) == 42
    # An item alone promises its own 受理 day and limit.
    assert promised_working_days(catalog, newborn, ["vaccination_certificate"]) == 21
    # Without pre-review the dependents would wait: 出生登记 alone after 出生医学证明.
    assert promised_working_days(catalog, newborn, chain) == 42


def test_an_on_the_spot_item_in_a_chain_costs_its_acceptance_day(catalog: Catalog) -> None:
    deed_tax = catalog.bundle_types["new_house_deed_tax"]
    # 房屋套次查询 (即办件) beside 契税申报 (承诺件, 20, pre-reviewed), then 打印契税完税证明
    # (即办件) after it.
    assert promised_working_days(catalog, deed_tax, deed_tax.item_codes) == 21 + 1


def _chain_catalog() -> Catalog:
    """a (即办件) → b (5) → c (3), d (30) alone, e after b and d (2); pre-reviewed: f after
    d (2), g after a (40)."""

    def item(code: str, *after: str, pre_review: bool = False) -> dict[str, Any]:
        edges = [{"any_of": [code], "reason": "测试"} for code in after]
        return {
            "code": code,
            "service": code,
            "name_zh": code,
            "department": "police",
            "levels": ["county"],
            "prerequisites": edges,
            "pre_review": pre_review,
        }

    bundle_type = BundleType.model_validate(
        {
            "code": "chain",
            "name_zh": "链",
            "category": "personal",
            "lead_department": "police",
            "sources": [{"list": "test", "number": 1}],
            "items": [
                item("a"),
                item("b", "a"),
                item("c", "b"),
                item("d"),
                item("e", "b", "d"),
                item("f", "d", pre_review=True),
                item("g", "a", pre_review=True),
            ],
        }
    )
    limits = {"a": 0, "b": 5, "c": 3, "d": 30, "e": 2, "f": 2, "g": 40}
    services = {
        code: Service(
            code=code,
            handling_class=HandlingClass.ON_THE_SPOT if days == 0 else HandlingClass.PROMISED,
            promise_days=days,
            extension_days=0 if days == 0 else 10,
            promise_source="test",
        )
        for code, days in limits.items()
    }
    return Catalog(departments={}, bundle_types={"chain": bundle_type}, services=services)


@pytest.mark.parametrize(
    ("selected", "expected"),
    [
        (["a", "b", "c"], (1 + 0) + (1 + 5) + (1 + 3)),
        (["a", "b", "c", "d"], 1 + 30),  # the parallel long item outlasts the chain
        (["a", "b", "c", "d", "e"], (1 + 30) + (1 + 2)),  # e waits for the later of b, d
        (["c"], 1 + 3),  # an unselected prerequisite is not waited for
        (["b", "c"], (1 + 5) + (1 + 3)),
        (["d", "f"], 1 + 30),  # f is reviewed beside d and decided as d is
        (["a", "g"], 1 + 40),  # g's own limit outlasts its prerequisite
    ],
)
def test_a_chain_promises_the_sum_along_its_longest_path(
    selected: list[str], expected: int
) -> None:
    catalog = _chain_catalog()
    assert promised_working_days(catalog, catalog.bundle_types["chain"], selected) == expected


@pytest.fixture
def intake(database: Database, catalog: Catalog, tmp_path: Path) -> Intake:
    materials = LocalMaterialStore(tmp_path / "materials")
    materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    return Intake(database, catalog, materials)


def _submit(intake: Intake, bundle_type: BundleType) -> IntakeReceipt:
    project_no = new_project_no()
    result = intake.submit(sample_application(bundle_type, project_no), project_no)
    assert isinstance(result, Received)
    return result.receipt


def test_the_receipt_and_the_status_carry_the_promise_of_the_bundle_and_each_item(
    intake: Intake, database: Database, catalog: Catalog
) -> None:
    deed_tax = catalog.bundle_types["new_house_deed_tax"]
    receipt = _submit(intake, deed_tax)

    assert receipt.promised_working_days == 22
    expected = {
        "housing_count_query": (HandlingClass.ON_THE_SPOT, 0),
        "deed_tax_declaration": (HandlingClass.PROMISED, 20),
        "deed_tax_certificate": (HandlingClass.ON_THE_SPOT, 0),
    }
    assert {p.item: (p.handling_class, p.promise_days) for p in receipt.items} == expected
    with database.transaction() as session:
        status = bundle_status(session, receipt.bundle_id, catalog)
    assert status is not None
    assert status.promised_working_days == 22
    assert {i.item: (i.handling_class, i.promise_days) for i in status.items} == expected


def test_a_replayed_receipt_repeats_the_promise(intake: Intake, catalog: Catalog) -> None:
    newborn = catalog.bundle_types["newborn"]
    project_no = new_project_no()
    application = sample_application(newborn, project_no)
    first, again = (intake.submit(application, project_no) for _ in range(2))
    assert isinstance(first, Received) and isinstance(again, Received) and again.replayed
    assert again.receipt == first.receipt
    assert first.receipt.promised_working_days == promised_working_days(
        catalog, newborn, application["items"]
    )
