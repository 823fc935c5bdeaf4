"""The code examples in the docs run, in order, as written."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[1] / "docs"


def python_blocks(page: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", page.read_text(encoding="utf-8"), flags=re.S)


@pytest.mark.parametrize("page", ["adapters.md"])
def test_the_examples_run(page: str) -> None:
    blocks = python_blocks(DOCS / page)
    assert blocks, f"{page} has no python examples"
    namespace: dict[str, object] = {"__name__": f"docs_{page.replace('.', '_')}"}
    for block in blocks:
        exec(compile(block, f"{page}", "exec"), namespace)
