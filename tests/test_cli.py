"""The `lianban` command: catalog views, and every user's mistake in one line, exit code 2,
never a traceback."""

from __future__ import annotations

import importlib.metadata
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from contracts.catalog import Catalog, dependency_order, promised_working_days
from lianban.cli import main, shown_body
from lianban.settings import variables


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


def _lianban(
    *args: str, cwd: Path, env: dict[str, str] | None = None, **options: Any
) -> subprocess.CompletedProcess[str]:
    """`lianban` as a user runs it: its own process, in a directory with no var/."""
    return subprocess.run(
        [sys.executable, "-m", "lianban.cli", *args],
        cwd=cwd,
        env={"PATH": os.environ["PATH"], **(env or {})},
        text=True,
        timeout=60,
        **({"capture_output": True} | options),
    )


BROKER_DOWN = {"LIANBAN_BROKER_URL": "amqp://guest:secret@127.0.0.1:1//"}


@pytest.mark.parametrize(
    ("args", "env", "says"),
    [
        (["queues"], BROKER_DOWN, "set LIANBAN_DATABASE_URL"),
        (["bundle", "show", "DEMO1"], {}, "set LIANBAN_DATABASE_URL"),
        (["audit", "verify"], {}, "set LIANBAN_DATABASE_URL"),
        (["dlq", "list"], BROKER_DOWN, "cannot reach the broker amqp://guest:***@"),
        (["dlq", "list"], {}, "set LIANBAN_BROKER_URL=amqp://"),
        (
            ["dlq", "replay", "lianban.dept.polce.parking"],
            BROKER_DOWN,
            "did you mean lianban.dept.police.parking?",
        ),
        (["serve"], {"LIANBAN_PORT": "eighty"}, "LIANBAN_PORT='eighty' is invalid"),
        (["serve"], {"LIANBAN_LOG_LEVEL": "verbose"}, "'debug', 'info', 'warning'"),
        (
            ["token", "new", "platform", "--scope", "bundle:read"],
            {},
            "did you mean 'bundles:read'?",
        ),
        (["catalog", "lst"], {}, "invalid choice: 'lst'"),
    ],
)
def test_a_users_mistake_is_one_line_and_exit_code_2(
    args: list[str], env: dict[str, str], says: str, tmp_path: Path
) -> None:
    result = _lianban(*args, cwd=tmp_path, env=env)
    assert result.returncode == 2, result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("lianban: ")
    assert says in result.stderr
    assert "secret" not in result.stderr


def test_a_closed_pipe_ends_the_listing_quietly(tmp_path: Path) -> None:
    """`lianban catalog list | head -1`: the reader has gone before lianban writes."""
    read_end, write_end = os.pipe()
    os.close(read_end)
    try:
        result = _lianban(
            "catalog", "list", cwd=tmp_path, capture_output=False, stdout=write_end, stderr=-1
        )
    finally:
        os.close(write_end)
    assert result.returncode == 0
    assert result.stderr == ""


def test_version_names_the_installed_release(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exit:
        main(["--version"])
    assert exit.value.code == 0
    assert capsys.readouterr().out.strip() == f"lianban {importlib.metadata.version('lianban')}"


def test_help_names_every_variable(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert all(name in out for name, _default, _description in variables())


def test_config_prints_the_effective_settings_with_credentials_masked(tmp_path: Path) -> None:
    env = {"LIANBAN_DATABASE_URL": "postgresql+psycopg://lianban:hunter2@db/lianban"}
    result = _lianban("config", cwd=tmp_path, env={**env, "LIANBAN_PORT": "8500"})
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert "LIANBAN_PORT=8500" in lines
    assert "LIANBAN_DATABASE_URL=postgresql+psycopg://lianban:***@db/lianban" in lines
    assert "hunter2" not in result.stdout


def test_dlq_show_masks_the_applicants_personal_data() -> None:
    applicant = {"name": "张三丰", "id_number": "11010519491231002X", "mobile": "13812345678"}
    body = json.dumps({"applicant": applicant}).encode()
    shown = shown_body(body)["applicant"]
    assert shown == {"name": "张**", "id_number": "110105********002X", "mobile": "138****5678"}
    assert "11010519491231002X" not in str(shown_body(b"not json 11010519491231002X"))
