"""A running simulator's filings can be listed from outside (`GET /_simulator/filings`),
so "the police system files it once" can be checked with curl."""

from __future__ import annotations

import os
import subprocess
import sys

import httpx
from harness import free_port

from adapters.police.simulator import create_app
from adapters.simulators.base import DepartmentState
from adapters.simulators.filings_view import FILINGS_PATH, with_filings_listed
from runtime.serving import ThreadedServer

RESIDENT_ID = "11010519491231002X"


def test_the_filings_are_listed_and_the_department_still_answers() -> None:
    state = DepartmentState(code="police", decision_delay=60.0)
    server = ThreadedServer(with_filings_listed(create_app(state), state))
    server.start()
    try:
        filed = state.file("key-1", "birth_registration", "P-1", {"id_number": RESIDENT_ID})
        listed = httpx.get(server.url + FILINGS_PATH).json()
        wsdl = httpx.get(server.url + "/?wsdl")
    finally:
        server.stop()
    assert listed["department"] == "police"
    (filing,) = listed["filings"]
    assert filing["receipt_no"] == filed.receipt_no and filing["idempotency_key"] == "key-1"
    assert filing["stage"] == "pending"
    assert RESIDENT_ID not in str(listed)
    assert wsdl.status_code == 200 and b"definitions" in wsdl.content


def test_lianban_simulator_prints_where_its_filings_are() -> None:
    port = free_port()
    env = {"PATH": os.environ["PATH"], "LIANBAN_PORT": str(port)}
    process = subprocess.Popen(
        [sys.executable, "-m", "lianban.cli", "simulator", "police"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert process.stdout is not None
        lines = [process.stdout.readline(), process.stdout.readline()]
        url = f"http://127.0.0.1:{port}{FILINGS_PATH}"
        assert lines[1].strip() == f"its filings: {url}"
        # printed once the server listens
        assert httpx.get(url).json() == {"department": "police", "filings": []}
    finally:
        process.terminate()
        process.wait(timeout=30)
