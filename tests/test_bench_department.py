"""The bench's department process starts as `lianban adapter` does, so the CPU it measures
is what production pays."""

from __future__ import annotations

import sys

import pytest

import bench.department
import lianban.adapter_process
import runtime.logs
import runtime.tracing
from lianban.settings import Settings


class _Process:
    """Stands in for the adapter process: started, it returns at once."""

    def __init__(self, *args: object) -> None:
        pass

    def start(self) -> None:
        pass

    def wait(self) -> None:
        pass


def test_the_bench_department_installs_the_tracer_provider_as_lianban_adapter_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    configured: list[tuple[str, str]] = []
    monkeypatch.setattr(runtime.tracing, "configure_tracing", lambda *args: configured.append(args))
    monkeypatch.setattr(runtime.logs, "configure_logging", lambda *args: None)
    monkeypatch.setattr(lianban.adapter_process, "AdapterProcess", _Process)
    monkeypatch.setattr(sys, "argv", ["bench.department", "police"])
    bench.department.main()
    assert configured == [("lianban-adapter-police", Settings.from_env().traces_exporter)]
