"""Catalog load errors name the file and entry; the shipped catalog loads, is acyclic and
gives every service a promised time limit with its source."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.catalog import Catalog, HandlingClass, dependency_order, load_catalog
from contracts.errors import CatalogError


def _item(code: str, department: str = "police", **extra: Any) -> dict[str, Any]:
    return {
        "code": code,
        "service": f"{code}_service",
        "name_zh": code,
        "department": department,
        "levels": ["county"],
        **extra,
    }


def _write(root: Path, items: list[dict[str, Any]], lead: str = "police") -> Path:
    (root / "bundles").mkdir(parents=True)
    (root / "departments.yaml").write_text(
        yaml.safe_dump([{"code": "police", "name_zh": "公安部门"}]), encoding="utf-8"
    )
    bundle = {
        "code": "sample",
        "name_zh": "样例",
        "category": "personal",
        "lead_department": lead,
        "sources": [{"list": "henan-2023-personal", "number": 1}],
        "items": items,
    }
    (root / "bundles" / "sample.yaml").write_text(
        yaml.safe_dump(bundle, allow_unicode=True), encoding="utf-8"
    )
    _write_time_limits(root, {item["service"]: _promised(20) for item in items})
    return root


def _promised(days: int, source: str = "default") -> dict[str, Any]:
    handling_class = "on_the_spot" if days == 0 else "promised"
    extension = 0 if days == 0 else 10
    return {
        "handling_class": handling_class,
        "promise_days": days,
        "extension_days": extension,
        "source": source,
    }


def _write_time_limits(
    root: Path, services: dict[str, Any], sources: dict[str, str] | None = None
) -> None:
    document = {"sources": sources or {"default": "statutory default"}, "services": services}
    (root / "time_limits.yaml").write_text(
        yaml.safe_dump(document, allow_unicode=True), encoding="utf-8"
    )


def _edge(*codes: str) -> list[dict[str, Any]]:
    return [{"any_of": list(codes), "reason": "测试"}]


def test_a_valid_catalog_loads_in_dependency_order(tmp_path: Path) -> None:
    root = _write(tmp_path, [_item("b", prerequisites=_edge("a")), _item("a")])
    catalog = load_catalog(root)
    assert dependency_order(catalog.bundle_types["sample"]) == ["a", "b"]


@pytest.mark.parametrize(
    ("items", "lead", "expected"),
    [
        (
            [_item("a", department="mars")],
            "police",
            "sample.yaml: bundle type 'sample', item 'a': unknown department 'mars'",
        ),
        ([_item("a")], "mars", "unknown lead department 'mars'"),
        (
            [_item("a", prerequisites=_edge("ghost"))],
            "police",
            "item 'a': prerequisite 'ghost' is not an item",
        ),
        (
            [_item("a", prerequisites=_edge("b")), _item("b", prerequisites=_edge("a"))],
            "police",
            "prerequisites form a cycle among a, b",
        ),
        ([_item("a"), _item("a")], "police", "item 'a' is listed twice"),
        ([_item("a", parallel_group="p")], "police", "parallel group 'p' has only one item"),
        ([_item("a", exclusive_group="x")], "police", "exclusive group 'x' has only one item"),
        (
            [
                _item("a", parallel_group="p", exclusive_group="x"),
                _item("b", parallel_group="p", exclusive_group="x"),
            ],
            "police",
            "parallel group 'p' overlaps exclusive group",
        ),
    ],
)
def test_load_errors_name_the_entry(
    tmp_path: Path, items: list[dict[str, Any]], lead: str, expected: str
) -> None:
    root = _write(tmp_path, items, lead)
    with pytest.raises(CatalogError, match=r"sample\.yaml") as raised:
        load_catalog(root)
    assert expected in str(raised.value)


def test_a_service_claimed_by_two_departments_is_refused(tmp_path: Path) -> None:
    root = _write(tmp_path, [_item("a")])
    (root / "departments.yaml").write_text(
        yaml.safe_dump([{"code": "police", "name_zh": "公安"}, {"code": "tax", "name_zh": "税务"}]),
        encoding="utf-8",
    )
    other = yaml.safe_load((root / "bundles" / "sample.yaml").read_text(encoding="utf-8"))
    other["code"] = "other"
    other["items"] = [_item("a", department="tax")]
    (root / "bundles" / "other.yaml").write_text(yaml.safe_dump(other), encoding="utf-8")
    with pytest.raises(CatalogError, match="service 'a_service'"):
        load_catalog(root)


def test_invalid_yaml_and_bad_fields_are_reported_with_the_file(tmp_path: Path) -> None:
    root = _write(tmp_path, [_item("a", levels=["galaxy"])])
    with pytest.raises(CatalogError, match=r"sample\.yaml: entry .sample. is invalid"):
        load_catalog(root)
    (root / "bundles" / "sample.yaml").write_text("code: [unclosed", encoding="utf-8")
    with pytest.raises(CatalogError, match=r"sample\.yaml: not valid YAML"):
        load_catalog(root)


def test_the_shipped_catalog_covers_both_henan_lists(catalog: Catalog) -> None:
    by_list: dict[str, set[int]] = {}
    for bundle_type in catalog.every_bundle_type():
        for source in bundle_type.sources:
            by_list.setdefault(source.list, set()).add(source.number)
    assert by_list["henan-2023-enterprise"] == set(range(1, 26))
    assert by_list["henan-2023-personal"] == set(range(1, 21))
    for bundle_type in catalog.every_bundle_type():
        assert sorted(dependency_order(bundle_type)) == sorted(bundle_type.item_codes)
        for item in bundle_type.items:
            for prerequisite in item.prerequisites:
                assert prerequisite.reason.strip(), f"{bundle_type.code}.{item.code}: no reason"


@pytest.mark.parametrize(
    ("services", "sources", "expected"),
    [
        ({}, None, "no time limit for service(s): a_service"),
        ([], None, "expected exactly the mappings 'sources' and 'services'"),
        (
            {"a_service": _promised(20), "ghost": _promised(20)},
            None,
            "time limit for service(s) no item files: ghost",
        ),
        ({"a_service": _promised(20, "guide")}, None, "cites source 'guide'"),
        (
            {"a_service": _promised(20)},
            {"default": "statutory default", "guide": "unused guide"},
            "source(s) no service cites: guide",
        ),
        (
            {"a_service": {**_promised(0), "promise_days": 3}},
            None,
            "a 即办件 promises 0 working days",
        ),
        ({"a_service": _promised(20) | {"promise_days": None}}, None, "promise_days"),
    ],
)
def test_time_limit_errors_name_the_service(
    tmp_path: Path, services: Any, sources: dict[str, str] | None, expected: str
) -> None:
    root = _write(tmp_path, [_item("a")])
    _write_time_limits(root, services, sources)
    with pytest.raises(CatalogError, match=r"time_limits\.yaml") as raised:
        load_catalog(root)
    assert expected in str(raised.value)


def test_a_key_listed_twice_is_refused_not_silently_overwritten(tmp_path: Path) -> None:
    root = _write(tmp_path, [_item("a")])
    entry = "{handling_class: promised, promise_days: 20, extension_days: 10, source: default}"
    (root / "time_limits.yaml").write_text(
        f"sources:\n  default: statutory default\nservices:\n"
        f"  a_service: {entry}\n  a_service: {entry.replace('20', '5')}\n",
        encoding="utf-8",
    )
    with pytest.raises(CatalogError, match=r"time_limits\.yaml: .*listed twice: a_service"):
        load_catalog(root)


def test_every_shipped_service_has_a_time_limit_and_says_where_it_comes_from(
    catalog: Catalog,
) -> None:
    filed = {item.service for t in catalog.every_bundle_type() for item in t.items}
    assert set(catalog.services) == filed
    for service in catalog.services.values():
        if service.handling_class is HandlingClass.ON_THE_SPOT:
            assert (service.promise_days, service.extension_days) == (0, 0), service.code
            assert "seed 003" in service.promise_source and "即办件" in service.promise_source
        else:
            assert service.promise_days >= 1, service.code
    statutory = [s for s in catalog.services.values() if "行政许可法第四十二条" in s.promise_source]
    assert {(s.promise_days, s.extension_days) for s in statutory} == {(20, 10)}
    assert catalog.services["real_estate_query"].handling_class is HandlingClass.ON_THE_SPOT


def _write_materials(root: Path, services: dict[str, Any], **materials: Any) -> None:
    (root / "licence_types.yaml").write_text(
        yaml.safe_dump(
            [{"code": "resident_id_card", "name_zh": "居民身份证", "issuing_department": "police"}],
            allow_unicode=True,
        ),
        encoding="utf-8",
    )
    document = {
        "sources": {"general": "国家政务服务平台办事指南通用要求"},
        "bases": {},
        "materials": materials or {"id_card": {"name_zh": "身份证", "licence_types": []}},
        "services": services,
    }
    (root / "materials.yaml").write_text(
        yaml.safe_dump(document, allow_unicode=True), encoding="utf-8"
    )


@pytest.mark.parametrize(
    ("services", "materials", "expected"),
    [
        ({}, {}, "no materials list for service(s): a_service"),
        (
            {"a_service": {"source": "general", "required": ["passport"]}},
            {},
            "service 'a_service': unknown material(s): passport",
        ),
        (
            {"a_service": {"source": "general", "required": ["id_card"]}},
            {"id_card": {"name_zh": "身份证", "licence_types": ["passport"]}},
            "material 'id_card' names unknown licence type(s) ['passport']",
        ),
        (
            {"a_service": {"source": "seed", "required": ["id_card"]}},
            {},
            "service 'a_service': source 'seed' is not one of ['general']",
        ),
        (
            {"a_service": {"source": "general", "optional": ["id_card"]}},
            {},
            "service 'a_service': a list needs at least one required material",
        ),
    ],
)
def test_materials_errors_name_the_service_or_material(
    tmp_path: Path, services: dict[str, Any], materials: dict[str, Any], expected: str
) -> None:
    root = _write(tmp_path, [_item("a")])
    _write_materials(root, services, **materials)
    with pytest.raises(CatalogError, match=r"materials\.yaml") as raised:
        load_catalog(root)
    assert expected in str(raised.value)


def test_a_form_field_without_a_definition_or_with_a_bad_example_is_refused(
    tmp_path: Path,
) -> None:
    root = _write(tmp_path, [_item("a")])
    forms = {"fields": {}, "common": ["contact_address"], "services": {}}
    (root / "forms.yaml").write_text(yaml.safe_dump(forms), encoding="utf-8")
    with pytest.raises(CatalogError, match=r"field\(s\) \['contact_address'\] have no entry"):
        load_catalog(root)
    forms["fields"] = {"contact_address": {"name_zh": "地址", "type": "integer", "example": "一"}}
    (root / "forms.yaml").write_text(yaml.safe_dump(forms, allow_unicode=True), encoding="utf-8")
    with pytest.raises(CatalogError, match="example '一' breaks the field's own rules"):
        load_catalog(root)
