"""Logs for people on a terminal, JSON for machines; `serve` says where it listens and
warns when no one may call it."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import structlog

from contracts.catalog import Catalog
from lianban.settings import Settings
from lianban.stack import Role, Stack
from runtime.logs import configure_logging

RESIDENT_ID = "11010519491231002X"


@pytest.fixture(autouse=True)
def _restore_the_runs_logging() -> Iterator[None]:
    yield
    configure_logging("debug")  # as tests/log_scanner.py configures the run


def test_the_console_format_is_readable_and_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("info", "console")
    structlog.get_logger("router").warning("item.failed", applicant_id=RESIDENT_ID)

    (line,) = capsys.readouterr().err.splitlines()
    assert not line.startswith("{")
    assert "warning" in line and "item.failed" in line
    assert RESIDENT_ID not in line and "110105********002X" in line


def test_auto_is_json_when_standard_error_is_not_a_terminal(
    capsys: pytest.CaptureFixture[str],
) -> None:
    configure_logging("info", "auto")  # pytest's capture is not a terminal
    structlog.get_logger("router").info("bundle.received", items=3)

    (line,) = capsys.readouterr().err.splitlines()
    assert json.loads(line)["event"] == "bundle.received"


def test_serve_logs_its_address_and_warns_without_tokens(
    catalog: Catalog, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    configure_logging("info", "json")
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'lianban.db'}", port=0)
    stack = Stack(settings, catalog, {Role.SERVE})
    stack.start()
    try:
        url = stack.base_url
    finally:
        stack.stop()

    events = {}
    for line in capsys.readouterr().err.splitlines():
        if line.startswith("{"):
            event = json.loads(line)
            events[event["event"]] = event
    assert events["serve.listening"]["url"] == url
    assert events["serve.no_tokens"]["level"] == "warning"
    assert "LIANBAN_TOKENS_FILE" in events["serve.no_tokens"]["hint"]


@pytest.mark.parametrize("level", ["info", "warning"])
def test_serve_writes_an_access_line_per_request_only_at_info(
    catalog: Catalog,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    level: str,
) -> None:
    configure_logging(level, "json")
    # A server started earlier without its access log cut the logger off from the root.
    monkeypatch.setattr(logging.getLogger("uvicorn.access"), "propagate", True)
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'lianban.db'}", port=0, log_level=level
    )
    stack = Stack(settings, catalog, {Role.SERVE})
    stack.start()
    try:
        assert httpx.get(f"{stack.base_url}/healthz").status_code == 200
    finally:
        stack.stop()

    logged = capsys.readouterr().err
    assert "serve.no_tokens" in logged
    assert ("GET /healthz" in logged) is (level == "info")
