"""The `lianban` command: catalog views and clear errors for misconfiguration."""

from __future__ import annotations

import pytest

from contracts.catalog import Catalog, dependency_order, promised_working_days
from lianban.cli import main


def test_catalog_list_names_every_bundle_type(
    catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["catalog", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(catalog.bundle_types)
    newborn = catalog.bundle_types["newborn"]
    longest = promised_working_days(catalog, newborn, newborn.item_codes)
    [line] = [line for line in lines if "新生儿出生" in line]
    assert f"≤ {longest} working days" in line


def test_catalog_show_prints_each_items_class_and_the_bundles_promise(
    catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    deed_tax = catalog.bundle_types["new_house_deed_tax"]
    assert main(["catalog", "show", "new_house_deed_tax"]) == 0
    out = capsys.readouterr().out
    assert (
        f"承诺至多 {promised_working_days(catalog, deed_tax, deed_tax.item_codes)} 个工作日" in out
    )
    lines = {
        code: next(line for line in out.splitlines() if f"({code})" in line)
        for code in ("housing_count_query", "deed_tax_declaration")
    }
    assert "[即办件]" in lines["housing_count_query"]
    assert "[承诺件 20 个工作日，可延长 10]" in lines["deed_tax_declaration"]
    for item in deed_tax.items:
        assert catalog.service_of(item).promise_source in out


def test_catalog_show_prints_prerequisites_before_dependents(
    catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    newborn = catalog.bundle_types["newborn"]
    assert main(["catalog", "show", "newborn"]) == 0
    out = capsys.readouterr().out
    positions = [out.index(f"({code})") for code in dependency_order(newborn)]
    assert positions == sorted(positions)
    for item in newborn.items:
        for prerequisite in item.prerequisites:
            assert prerequisite.reason in out


def test_catalog_show_of_an_unknown_type_says_where_to_look(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["catalog", "show", "no_such_bundle"]) == 2
    assert "lianban catalog list" in capsys.readouterr().out


def test_an_adapter_that_is_not_installed_is_refused_with_the_fix(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["adapter", "tax"]) == 2  # no tax adapter is installed
    assert "--simulated" in capsys.readouterr().err
