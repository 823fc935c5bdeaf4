"""Intake over HTTP: idempotency by case number and the one-time notice (一次告知)."""

from __future__ import annotations

import copy
import hashlib
import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from harness import AUTH, new_project_no
from sqlalchemy import func, select

from contracts.catalog import Catalog
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.stack import Stack
from router.store import BundleRow, Database, OutboxRow


@pytest.fixture
def database(intake_only: Stack) -> Database:
    return intake_only.database


@pytest.fixture
def client(intake_only: Stack) -> Iterator[httpx.Client]:
    intake_only.materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    with httpx.Client(base_url=intake_only.base_url, headers=AUTH) as client:
        yield client


def _post(client: httpx.Client, application: dict[str, Any], key: str | None = None) -> Any:
    headers = {"Idempotency-Key": key or application["project_no"]}
    return client.post("/v1/bundles", json=application, headers=headers)


def test_a_repeated_case_number_returns_the_same_receipt_and_one_bundle(
    client: httpx.Client, database: Database, catalog: Catalog
) -> None:
    application = sample_application(catalog.bundle_types["newborn"], new_project_no())
    first = _post(client, application)
    second = _post(client, application)
    assert first.status_code == 202
    assert second.status_code == 200
    assert second.json() == first.json()
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(BundleRow)) == 1
        first_dispatches = session.scalar(select(func.count()).select_from(OutboxRow))
    assert first_dispatches and first_dispatches > 0

    changed = copy.deepcopy(application)
    changed["form"]["contact_address"] = "另一个地址"
    conflict = _post(client, changed)
    assert conflict.status_code == 409
    with database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(OutboxRow)) == first_dispatches


def test_a_new_bundle_and_its_dispatches_get_time_ordered_ids(
    client: httpx.Client, database: Database, catalog: Catalog
) -> None:
    """Version 7 keys go in at the right edge of their indexes (contracts.ids)."""
    first, second = (
        _post(client, sample_application(catalog.bundle_types["newborn"], new_project_no()))
        for _ in range(2)
    )
    assert first.status_code == second.status_code == 202
    with database.transaction() as session:
        bundle_ids = list(session.scalars(select(BundleRow.id).order_by(BundleRow.received_at)))
        message_ids = list(session.scalars(select(OutboxRow.message_id).order_by(OutboxRow.id)))
    assert len(bundle_ids) == 2 and len(message_ids) > 2
    assert all(bundle_id.version == 7 for bundle_id in bundle_ids)
    assert bundle_ids == sorted(bundle_ids)
    assert all(uuid.UUID(message_id).version == 7 for message_id in message_ids)


def test_every_problem_is_reported_at_once(client: httpx.Client, catalog: Catalog) -> None:
    newborn = catalog.bundle_types["newborn"]
    application = sample_application(newborn, new_project_no())
    id_number = application["applicant"]["id_number"]
    wrong_check = "0" if id_number[-1] != "0" else "1"
    application["applicant"]["id_number"] = id_number[:-1] + wrong_check
    application["items"] = [*application["items"], "no_such_item"]
    application["materials"][0]["sha256"] = "ab" * 32  # never uploaded
    application["area_code"] = "41"

    response = _post(client, application)

    assert response.status_code == 422
    problems = {(p["pointer"], p["code"]) for p in response.json()["problems"]}
    assert ("/applicant/id_number", "resident_id_checksum") in problems
    assert ("/items/" + str(len(application["items"]) - 1), "item_unknown") in problems
    assert ("/materials/0", "material_not_uploaded") in problems
    assert ("/area_code", "string_pattern_mismatch") in problems
    for problem in response.json()["problems"]:
        assert problem["message_zh"] and problem["message_en"]


def test_catalog_rules_are_checked(client: httpx.Client, catalog: Catalog) -> None:
    newborn = catalog.bundle_types["newborn"]
    dependent = next(item for item in newborn.items if item.prerequisites)
    variants = [item.code for item in newborn.items if item.exclusive_group]
    application = sample_application(newborn, new_project_no(), items=[dependent.code, *variants])

    problems = _post(client, application).json()["problems"]

    codes = [problem["code"] for problem in problems]
    assert "prerequisite_missing" in codes
    if len(variants) > 1:
        assert "exclusive_items_together" in codes


def test_parallel_items_must_be_chosen_together(client: httpx.Client, catalog: Catalog) -> None:
    bundle_type = next(
        b for b in catalog.bundle_types.values() if any(i.parallel_group for i in b.items)
    )
    lone = next(item.code for item in bundle_type.items if item.parallel_group)
    application = sample_application(bundle_type, new_project_no(), items=[lone])

    problems = _post(client, application).json()["problems"]

    assert "parallel_items_apart" in [problem["code"] for problem in problems]


def test_unknown_bundle_type_bad_credit_code_and_key_mismatch(
    client: httpx.Client, catalog: Catalog
) -> None:
    enterprise = next(b for b in catalog.bundle_types.values() if b.category == "enterprise")
    application = sample_application(enterprise, new_project_no())
    uscc = application["applicant"]["uscc"]
    application["applicant"]["uscc"] = uscc[:-1] + ("0" if uscc[-1] != "0" else "1")
    application["bundle_type"] = "no_such_bundle"

    response = _post(client, application, key="SOMETHING-ELSE")

    codes = {(p["pointer"], p["code"]) for p in response.json()["problems"]}
    assert ("/applicant/uscc", "uscc_checksum") in codes
    assert ("/bundle_type", "bundle_type_unknown") in codes
    assert ("/project_no", "idempotency_key_mismatch") in codes


def test_invalid_json_and_uploads_get_clear_errors(client: httpx.Client) -> None:
    response = client.post("/v1/bundles", content=b"{not json", headers={"Idempotency-Key": "X"})
    assert response.status_code == 422
    assert response.json()["problems"][0]["code"] == "json_invalid"

    fake_pdf = b"MZ not a pdf"
    upload = client.put(
        f"/v1/materials/{hashlib.sha256(fake_pdf).hexdigest()}",
        content=fake_pdf,
        headers={"Content-Type": "application/pdf"},
    )
    assert upload.status_code == 422
    assert "not application/pdf" in upload.json()["detail"]

    wrong_digest = client.put(
        f"/v1/materials/{'0' * 64}", content=SAMPLE_PDF, headers={"Content-Type": "application/pdf"}
    )
    assert wrong_digest.status_code == 422
    assert "SHA-256" in wrong_digest.json()["detail"]


def test_status_and_reply_of_unknown_bundles_are_404(client: httpx.Client) -> None:
    unknown = "00000000-0000-0000-0000-000000000000"
    assert client.get(f"/v1/bundles/{unknown}").status_code == 404
    assert client.get(f"/v1/bundles/{unknown}/reply").json()["code"] == "bundle_not_found"
