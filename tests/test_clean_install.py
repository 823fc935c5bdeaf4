"""A clean, non-editable install of the checkout runs the demo: every item approved (or
withdrawn where the demo withdraws), readable text, no traceback.

The dev venv hides undeclared dependencies (zeep's AsyncTransport needs `packaging`, which
only the dev extras used to bring). So the checkout is installed with `pip --no-deps` into a
fresh venv, and given exactly the closure of its declared runtime requirements (extras
included), linked from the dev venv's files: offline, and nothing more than a `pip install .`
would resolve.
"""

from __future__ import annotations

import importlib.metadata
import os
import re
import subprocess
import sys
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parents[1]


def _runtime_closure(requirements: list[str]) -> dict[str, importlib.metadata.Distribution]:
    """The installed distributions those requirements pull in, with their extras."""
    closure: dict[str, importlib.metadata.Distribution] = {}
    pending = [(Requirement(text), frozenset[str]()) for text in requirements]
    while pending:
        requirement, wanted_by_extras = pending.pop()
        environment = [{"extra": extra} for extra in wanted_by_extras] or [{"extra": ""}]
        marker = requirement.marker
        if marker and not any(marker.evaluate(env) for env in environment):
            continue
        distribution = importlib.metadata.distribution(requirement.name)
        name = distribution.metadata["Name"].lower().replace("_", "-")
        if name in closure and not requirement.extras:
            continue
        closure[name] = distribution
        extras = frozenset(requirement.extras)
        pending += [(Requirement(text), extras) for text in distribution.requires or ()]
    return closure


def _link_into(site: Path, distribution: importlib.metadata.Distribution) -> None:
    for file in distribution.files or ():
        if file.parts[0] == ".." or file.suffix == ".pyc":
            continue  # scripts outside site-packages; bytecode is rebuilt
        target = site / file
        if not target.exists():
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(Path(str(distribution.locate_file(file))).resolve())


def test_a_clean_install_runs_the_demo_with_every_item_approved(tmp_path: Path) -> None:
    venv = tmp_path / "venv"
    base_python = getattr(sys, "_base_executable", sys.executable)
    subprocess.run([base_python, "-m", "venv", "--without-pip", str(venv)], check=True)
    version = f"python{sys.version_info.major}.{sys.version_info.minor}"
    site = venv / "lib" / version / "site-packages"
    install = [sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-index"]
    subprocess.run(
        [*install, "--no-build-isolation", "--target", str(site), str(ROOT)],
        check=True,
        cwd=tmp_path,
    )
    (declared,) = site.glob("lianban-*.dist-info")
    requirements = importlib.metadata.PathDistribution(declared).requires or []
    assert not any("pika" in r for r in requirements if "extra ==" not in r)
    for distribution in _runtime_closure(requirements).values():
        _link_into(site, distribution)

    demo = subprocess.run(
        [str(venv / "bin" / "python"), "-m", "lianban.cli", "demo"],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=tmp_path,
        env={"PATH": os.environ["PATH"], "HOME": str(tmp_path)},
    )

    output = demo.stdout + demo.stderr
    assert demo.returncode == 0, output
    assert "Traceback" not in output
    assert not [line for line in output.splitlines() if line.startswith("{")], output
    outcomes = re.findall(r"答复 reply: (\w+)", demo.stdout)
    # The fifth bundle's clock pauses for a correction and resumes, then it is approved.
    assert outcomes == [*["all_approved"] * 3, "withdrawn", "all_approved"], output
    # The real SOAP adapters ran (the police and housing-fund simulators speak SOAP).
    assert "police" in demo.stdout.splitlines()[0]
