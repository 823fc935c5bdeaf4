"""The `lianban` command: catalog views and clear errors for misconfiguration."""

from __future__ import annotations

import pytest

from contracts.catalog import Catalog, dependency_order
from lianban.cli import main


def test_catalog_list_names_every_bundle_type(
    catalog: Catalog, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["catalog", "list"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == len(catalog.bundle_types)
    assert any("新生儿出生" in line for line in lines)


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
