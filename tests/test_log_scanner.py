"""The log scanner fails a test session whose output holds an unmasked ID number, and
passes one whose output is masked, wherever the number appears."""

from __future__ import annotations

import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest

from contracts.identity import make_resident_id, make_uscc

TESTS = Path(__file__).parent
RESIDENT_ID = make_resident_id("110105", date(1990, 1, 1), 123)
CREDIT_CODE = make_uscc("9", "1", "350100", "M000100Y4")

PLANTED = {
    "print": f"print('applicant', {RESIDENT_ID!r})",
    "stderr": f"print({CREDIT_CODE!r}, file=sys.stderr)",
    # makeLogRecord bypasses the record factory that masks every record logged normally.
    "record_from_elsewhere": (
        f"logging.getLogger('x').handle(logging.makeLogRecord({{'msg': {RESIDENT_ID!r}, "
        "'levelno': 30, 'levelname': 'WARNING'}))"
    ),
}


def _run_session(tmp_path: Path, body: str) -> subprocess.CompletedProcess[str]:
    (tmp_path / "test_planted.py").write_text(
        "import logging, sys, threading\n\nimport structlog\n\n\n"
        f"def test_planted() -> None:\n    {body}\n",
        encoding="utf-8",
    )
    return subprocess.run(
        [sys.executable, "-m", "pytest", "-p", "log_scanner", "-q", str(tmp_path)],
        cwd=tmp_path,
        env={"PYTHONPATH": str(TESTS), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.parametrize("leak", sorted(PLANTED))
def test_an_unmasked_id_number_fails_the_session(tmp_path: Path, leak: str) -> None:
    session = _run_session(tmp_path, PLANTED[leak])
    assert session.returncode == 1, session.stdout + session.stderr
    assert "1 passed" in session.stdout
    assert "unmasked ID number" in session.stdout
    assert RESIDENT_ID not in session.stdout and CREDIT_CODE not in session.stdout


def test_logged_personal_data_is_masked_and_passes(tmp_path: Path) -> None:
    body = (
        f"structlog.get_logger().info('filed', id_number={RESIDENT_ID!r}, "
        f"applicant={{'uscc': {CREDIT_CODE!r}}}, detail='for {RESIDENT_ID}'); "
        f"logging.getLogger('httpx').info('GET /?id=%s', {RESIDENT_ID!r}); "
        "t = threading.Thread(target=logging.getLogger('zeep').warning, "
        f"args=('%s', {RESIDENT_ID!r})); t.start(); t.join()"
    )
    session = _run_session(tmp_path, body)
    assert session.returncode == 0, session.stdout + session.stderr
