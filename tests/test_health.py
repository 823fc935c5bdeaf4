"""/healthz and /readyz of a process without the HTTP API, over real HTTP."""

from __future__ import annotations

import threading
from collections.abc import Iterator

import httpx
import pytest

from runtime.health import Health, serve_health


@pytest.fixture
def role() -> Iterator[tuple[threading.Event, threading.Event]]:
    """A role thread that runs until told to stop, and its consumer's ready flag."""
    stop, ready = threading.Event(), threading.Event()
    thread = threading.Thread(target=stop.wait, name="correlator", daemon=True)
    thread.start()
    yield stop, ready
    stop.set()


def test_ready_once_the_consumer_is_connected_alive_while_every_thread_runs(
    role: tuple[threading.Event, threading.Event],
) -> None:
    stop, ready = role
    (thread,) = [t for t in threading.enumerate() if t.name == "correlator"]
    server = serve_health(Health([thread], [ready]), "127.0.0.1", 0)
    url = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        assert httpx.get(f"{url}/healthz").status_code == 200
        not_ready = httpx.get(f"{url}/readyz")
        assert not_ready.status_code == 503
        assert "not connected" in not_ready.json()["problem"]
        ready.set()
        assert httpx.get(f"{url}/readyz").status_code == 200
        stop.set()
        thread.join()
        dead = httpx.get(f"{url}/healthz")
        assert dead.status_code == 503 and dead.json() == {"problem": "stopped: correlator"}
        assert httpx.get(f"{url}/readyz").status_code == 503
        assert httpx.get(f"{url}/metrics").status_code == 404
    finally:
        server.shutdown()
        server.server_close()
