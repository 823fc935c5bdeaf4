"""`lianban adapter new` writes a package whose own tests pass unchanged."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from lianban.cli import main

REPO = Path(__file__).resolve().parents[1]


def test_the_scaffold_passes_the_conformance_suite_as_generated(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["adapter", "new", "tax", "--into", str(tmp_path)]) == 0
    assert 'tax = "tax:TaxAdapter"' in capsys.readouterr().out

    result = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "tax"],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stdout[-3000:]
    assert " passed" in result.stdout and "failed" not in result.stdout


def test_the_scaffold_refuses_unknown_departments_and_overwriting(tmp_path: Path) -> None:
    assert main(["adapter", "new", "taxx", "--into", str(tmp_path)]) == 2
    assert main(["adapter", "new", "tax", "--into", str(tmp_path)]) == 0
    assert main(["adapter", "new", "tax", "--into", str(tmp_path)]) == 2
