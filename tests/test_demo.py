"""`lianban demo` (what `make demo` runs) completes with no server configured."""

from __future__ import annotations

import re
from datetime import datetime

import pytest

from lianban.cli import main


def test_the_demo_prints_three_replies_and_a_withdrawal(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    for variable in ("LIANBAN_DATABASE_URL", "LIANBAN_BROKER_URL"):
        monkeypatch.delenv(variable, raising=False)
    assert main(["demo"]) == 0
    out = capsys.readouterr().out
    assert out.count("答复 reply: all_approved") == 4
    assert "答复 reply: withdrawn" in out
    assert "real adapters against their department simulators: housing_fund, hrss" in out
    assert "cancelled  契税申报 [tax] 申请人撤回" in out
    # The newborn's social security card is pre-reviewed by hrss, then given its results.
    assert "pre_reviewed            social_security_card_application     by department:hrss" in out
    assert "prerequisites_forwarded social_security_card_application     by router" in out
    # The 公民婚育 bundle's clock pauses for a correction and resumes in simulated time,
    # its due date moved by the working days paused.
    assert "  clock paused (等待申请人补齐补正): 0 of 42 working days used, due —" in out
    assert "… case time steps 4 working days on, to " in out
    [started] = set(re.findall(r"clock_started  bundle · 42 个工作日 · due (\S+)", out))
    [resumed] = set(re.findall(r"clock_resumed  bundle · 已用 0 个工作日 · due (\S+)", out))
    assert datetime.fromisoformat(resumed) > datetime.fromisoformat(started)
