"""`lianban calendar status` and its metric warn from 1 November when next year is not official."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest
import time_machine
from prometheus_client import CollectorRegistry, generate_latest
from test_metrics import scrape, value

from lianban.cli import main
from router.domain import workdays
from router.domain.workdays import CHINA_TZ
from router.operations.metrics import CALENDAR_NEXT_YEAR_OFFICIAL, CalendarCollector

YEAR_2027 = """\
year: 2027
source: "国务院办公厅关于2027年部分节假日安排的通知"
holidays:
  - {name: 元旦, from: 2027-01-01, to: 2027-01-03}
working_weekends: []
"""


@pytest.fixture
def year_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The operator's year-file directory, empty; the live calendar is read from it."""
    monkeypatch.setenv("LIANBAN_CALENDAR_DIR", str(tmp_path))
    monkeypatch.setattr(workdays, "_live", None)
    return tmp_path


def status(capsys: pytest.CaptureFixture[str], today: str) -> str:
    with time_machine.travel(datetime.fromisoformat(f"{today} 10:00").replace(tzinfo=CHINA_TZ)):
        assert main(["calendar", "status"]) == 0  # a warning, never a failure
    return capsys.readouterr().out


def next_year_official(today: str) -> float:
    registry = CollectorRegistry()
    registry.register(CalendarCollector())
    with time_machine.travel(datetime.fromisoformat(f"{today} 10:00").replace(tzinfo=CHINA_TZ)):
        samples = scrape(generate_latest(registry).decode())
    return value(samples, CALENDAR_NEXT_YEAR_OFFICIAL.name, year="2027")


def test_from_1_november_a_provisional_next_year_is_warned_about(
    year_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = status(capsys, "2026-11-02")
    assert "official years: 2004–2026" in out
    assert "2004–2026  package: chinesecalendar" in out
    assert "provisional years: 2027" in out
    assert "WARNING: 2027 is not official yet" in out
    assert "2027.yaml to LIANBAN_CALENDAR_DIR" in out
    assert next_year_official("2026-11-02") == 0


def test_before_november_there_is_no_warning(
    year_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = status(capsys, "2026-10-30")
    assert "provisional years: 2027" in out
    assert "WARNING" not in out


def test_an_official_next_year_ends_the_warning(
    year_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (year_dir / "2027.yaml").write_text(YEAR_2027, encoding="utf-8")
    out = status(capsys, "2026-11-02")
    assert "official years: 2004–2027" in out
    assert "2027  file: 国务院办公厅关于2027年部分节假日安排的通知" in out
    assert "provisional years: none" in out
    assert "WARNING" not in out
    assert next_year_official("2026-11-02") == 1
