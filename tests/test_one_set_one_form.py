"""一次告知、一表申请、一套材料: every item's materials come from the catalog, each asked once
per bundle; the bundle's one form has a published schema intake checks against."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from typing import Any
from unittest.mock import ANY

import httpx
import jsonschema
import pytest
from harness import AUTH, new_project_no
from sqlalchemy import func, select

from contracts.application import MaterialRef
from contracts.catalog import Catalog
from contracts.catalog.checklist import checklist, form_schema
from contracts.samples import (
    SAMPLE_DISTRICTS,
    SAMPLE_PDF,
    full_selection,
    sample_application,
    sample_material_ref,
)
from lianban.cli import main
from lianban.schemas import SCHEMA_DIR
from lianban.settings import Settings
from lianban.stack import Role, Stack
from router.domain.checklist import missing_materials
from router.domain.validation import find_problems
from router.store import BundleRow


@pytest.fixture
def intake(settings: Settings, catalog: Catalog) -> Iterator[tuple[Stack, httpx.Client]]:
    """The intake API in either mode, the sample PDF uploaded."""
    stack = Stack(settings, catalog, {Role.SERVE})
    stack.start()
    try:
        stack.materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
        with httpx.Client(base_url=stack.base_url, headers=AUTH, timeout=30) as client:
            yield stack, client
    finally:
        stack.stop()


def _post(client: httpx.Client, application: dict[str, Any]) -> httpx.Response:
    return client.post(
        "/v1/bundles", json=application, headers={"Idempotency-Key": application["project_no"]}
    )


def _stored(stack: Stack, project_no: str) -> int:
    with stack.database.transaction() as session:
        return (
            session.scalar(
                select(func.count())
                .select_from(BundleRow)
                .where(BundleRow.project_no == project_no)
            )
            or 0
        )


def _without(application: dict[str, Any], *materials: str) -> dict[str, Any]:
    kept = [m for m in application["materials"] if m.get("material") not in materials]
    assert len(kept) == len(application["materials"]) - len(materials)
    return {**application, "materials": kept}


def test_a_newborn_missing_two_required_materials_gets_one_notice_naming_both_once(
    intake: tuple[Stack, httpx.Client], catalog: Catalog
) -> None:
    stack, client = intake
    newborn = catalog.bundle_types["newborn"]
    application = _without(
        sample_application(newborn, new_project_no()),
        "parents_id_cards",
        "parents_household_register",
    )

    response = _post(client, application)

    assert response.status_code == 422
    missing = [p for p in response.json()["problems"] if p["code"] == "material_missing"]
    assert sorted(p["message_en"].split("'")[1] for p in missing) == [
        "parents_household_register",
        "parents_id_cards",
    ]
    [id_cards] = [p for p in missing if "父母双方居民身份证" in p["message_zh"]]
    # Asked once for the bundle, naming every selected item that needs it (一套材料).
    assert id_cards["items"] == [
        code for code in application["items"] if code != "social_security_card_application"
    ]
    assert all(newborn.item(code).name_zh in id_cards["message_zh"] for code in id_cards["items"])
    assert "可提供电子证照免于提交：居民身份证" in id_cards["message_zh"]
    assert all(p["pointer"] == "/materials" for p in missing)
    assert _stored(stack, application["project_no"]) == 0


def test_an_empty_form_is_refused_naming_every_field_and_a_wrong_type_is_named(
    intake: tuple[Stack, httpx.Client], catalog: Catalog
) -> None:
    stack, client = intake
    enterprise = catalog.bundle_types["enterprise_establishment"]
    empty = {**sample_application(enterprise, new_project_no()), "form": {}}
    mistyped = sample_application(enterprise, new_project_no())
    mistyped["form"]["registered_capital"] = "一百万"
    mistyped["form"]["enterprise_type"] = "无限公司"

    refused = _post(client, empty).json()["problems"]
    wrong = _post(client, mistyped).json()["problems"]

    expected = form_schema(catalog, enterprise, empty["items"])["required"]
    assert {p["pointer"] for p in refused if p["code"] == "form_field_missing"} == {
        f"/form/{name}" for name in expected
    }
    assert {(p["pointer"], p["code"]) for p in wrong} == {
        ("/form/registered_capital", "form_field_type"),
        ("/form/enterprise_type", "form_field_invalid"),
    }
    assert "申请表“注册资本（万元）”应为整数" in {p["message_zh"] for p in wrong}
    assert _stored(stack, empty["project_no"]) == _stored(stack, mistyped["project_no"]) == 0


def test_a_material_shared_by_items_is_asked_once_and_a_verified_licence_stands_in(
    catalog: Catalog,
) -> None:
    after_death = catalog.bundle_types["citizen_after_death"]
    selected = full_selection(after_death)
    needing = [
        code
        for code in selected
        if any(
            r.material == "applicant_id_card"
            for r in catalog.service_of(after_death.item(code)).materials
        )
    ]
    assert len(needing) > 2

    problems = missing_materials(catalog, after_death, selected, [])
    covered = missing_materials(catalog, after_death, selected, [], {"resident_id_card"})

    asking = [p for p in problems if "'applicant_id_card'" in p.message_en]
    assert len(asking) == 1
    assert all(after_death.item(code).name_zh in asking[0].message_zh for code in needing)
    # A verified 居民身份证 covers both ID cards; the uploads it cannot replace stay asked.
    assert {p.message_en.split("'")[1] for p in problems} - {
        p.message_en.split("'")[1] for p in covered
    } == {"applicant_id_card", "deceased_id_card"}
    assert "family_relationship_proof" in " ".join(p.message_en for p in covered)


def test_a_material_a_selected_prerequisite_issues_is_not_asked(catalog: Catalog) -> None:
    newborn = catalog.bundle_types["newborn"]
    entries = {entry.material: entry for entry in checklist(catalog, newborn)}
    alone = {e.material: e for e in checklist(catalog, newborn, ["birth_registration"])}

    assert entries["birth_medical_certificate"].items == ()
    assert entries["birth_medical_certificate"].produced_by == ("birth_medical_certificate",)
    # Applied for without the item that issues it, the certificate is the applicant's to bring.
    assert alone["birth_medical_certificate"].required
    assert alone["birth_medical_certificate"].items == ("birth_registration",)


def test_an_upload_in_a_type_its_material_refuses_or_naming_no_material_is_named(
    catalog: Catalog,
) -> None:
    newborn = catalog.bundle_types["newborn"]
    declaration = MaterialRef.model_validate(
        {**sample_material_ref("照片", "id_photo"), "media_type": "image/tiff"}
    )
    unknown = MaterialRef.model_validate(sample_material_ref("x", "no_such_material"))

    problems = missing_materials(
        catalog, newborn, ["social_security_card_application"], [declaration, None, unknown]
    )

    assert [(p.pointer, p.code) for p in problems] == [
        ("/materials/0/media_type", "material_media_type_not_accepted"),
        ("/materials/2/material", "material_unknown"),
        ("/materials", "material_missing"),
    ]


def test_the_published_form_schemas_validate_every_sample_and_agree_with_intake(
    catalog: Catalog,
) -> None:
    for code, bundle_type in catalog.bundle_types.items():
        published = json.loads((SCHEMA_DIR / "forms" / f"{code}.schema.json").read_text("utf-8"))
        assert published == form_schema(catalog, bundle_type)
        sample = sample_application(bundle_type, new_project_no())
        jsonschema.Draft202012Validator(published).validate(sample["form"])
        selection = form_schema(catalog, bundle_type, sample["items"])
        jsonschema.Draft202012Validator(selection).validate(sample["form"])
    enterprise = catalog.bundle_types["enterprise_establishment"]
    schema = form_schema(catalog, enterprise, full_selection(enterprise))
    form = sample_application(enterprise, new_project_no())["form"]
    with pytest.raises(jsonschema.ValidationError, match="is not of type 'integer'"):
        jsonschema.validate({**form, "registered_capital": "一百万"}, schema)


def test_every_bundle_types_sample_carries_its_materials_and_form(catalog: Catalog) -> None:
    assert SAMPLE_DISTRICTS.keys() == {"henan", *catalog.regions}
    for region, district in SAMPLE_DISTRICTS.items():
        view = catalog.for_region(region)
        for bundle_type in view.bundle_types.values():
            sample = sample_application(bundle_type, new_project_no(), catalog=view)
            sample["area_code"] = district
            assert find_problems(sample, catalog, lambda digest, size: True) == (ANY, []), (
                region,
                bundle_type.code,
            )


def test_the_catalog_serves_a_bundles_checklist_and_form_schema(
    intake: tuple[Stack, httpx.Client], catalog: Catalog
) -> None:
    _, client = intake
    newborn = catalog.bundle_types["newborn"]

    listed = client.get("/v1/catalog/bundle-types/newborn/checklist").json()
    alone = client.get(
        "/v1/catalog/bundle-types/newborn/form-schema", params={"items": ["birth_registration"]}
    )
    missing = client.get("/v1/catalog/bundle-types/no_such/checklist")
    bad_item = client.get("/v1/catalog/bundle-types/newborn/checklist?items=no_such")

    assert listed == [entry.model_dump(mode="json") for entry in checklist(catalog, newborn)]
    assert alone.headers["content-type"] == "application/schema+json"
    assert alone.json() == form_schema(catalog, newborn, ["birth_registration"])
    assert (missing.status_code, missing.json()["code"]) == (404, "bundle_type_not_found")
    assert (bad_item.status_code, bad_item.json()["code"]) == (422, "invalid_request")


def test_catalog_show_prints_the_checklist_and_the_form(
    catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["catalog", "show", "newborn"]) == 0
    out = capsys.readouterr().out.split("materials (一套材料, each asked once):")[1]

    assert out.count("父母双方居民身份证 (parents_id_cards)") == 1
    assert "免提交: 可用电子证照 居民身份证" in out
    assert "出生医学证明 (birth_medical_certificate) — 由“出生医学证明签发”出具，无需提交" in out
    assert "materials from: 国家政务服务平台办事指南通用要求" in out
    assert "newborn_birth_date           date     required" in out


def test_every_item_has_a_materials_list_and_the_counts_are_reported(catalog: Catalog) -> None:
    items = [item for bundle in catalog.bundle_types.values() for item in bundle.items]
    listed = [item for item in items if catalog.service_of(item).materials]
    standing_in = [m for m in catalog.materials.values() if m.licence_types]
    assert listed == items
    assert all(
        any(r.required for r in catalog.service_of(item).materials)
        and catalog.service_of(item).materials_source
        for item in items
    )
    assert len(standing_in) >= 20
    assert {
        "resident_id_card",
        "household_register",
        "birth_medical_certificate",
        "marriage_certificate",
        "business_licence",
        "food_business_licence",
        "real_estate_certificate",
        "social_security_card",
        "vaccination_certificate",
        "driving_licence",
        "vehicle_registration_certificate",
    } <= catalog.licence_types.keys()
    print(
        f"items with a materials list: {len(listed)}/{len(items)}; materials: "
        f"{len(catalog.materials)}, with a licence that can stand in: {len(standing_in)}"
    )
