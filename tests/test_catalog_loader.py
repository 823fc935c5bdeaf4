"""Catalog load errors name the file and entry; the shipped catalog loads and is acyclic."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from contracts.catalog import Catalog, dependency_order, load_catalog
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
    return root


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
    for bundle_type in catalog.bundle_types.values():
        for source in bundle_type.sources:
            by_list.setdefault(source.list, set()).add(source.number)
    assert by_list["henan-2023-enterprise"] == set(range(1, 26))
    assert by_list["henan-2023-personal"] == set(range(1, 21))
    for bundle_type in catalog.bundle_types.values():
        assert sorted(dependency_order(bundle_type)) == sorted(bundle_type.item_codes)
        for item in bundle_type.items:
            for prerequisite in item.prerequisites:
                assert prerequisite.reason.strip(), f"{bundle_type.code}.{item.code}: no reason"
