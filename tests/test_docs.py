"""The code examples in the docs run, in order, as written; adapters.md's conformance
class runs the whole suite against the page's own adapter and simulator."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from harness import DOCS, ROOT, python_blocks


@pytest.mark.parametrize("page", ["adapters.md", "security.md"])
def test_the_examples_run(page: str) -> None:
    blocks = python_blocks(DOCS / page)
    assert blocks, f"{page} has no python examples"
    namespace: dict[str, object] = {"__name__": f"docs_{page.replace('.', '_')}"}
    for block in blocks:
        exec(compile(block, f"{page}", "exec"), namespace)


def test_the_adapter_example_passes_the_conformance_suite(tmp_path: Path) -> None:
    module = tmp_path / "test_adapters_md.py"
    module.write_text("\n\n".join(python_blocks(DOCS / "adapters.md")), encoding="utf-8")
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:randomly",
            "-p",
            "no:cacheprovider",
            "--rootdir",
            str(tmp_path),
            "-c",
            "/dev/null",
            str(module),
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-2000:]
    assert re.search(r"\b2\d passed\b", run.stdout), run.stdout[-500:]
