"""Health of a process for an orchestrator's probes, over plain HTTP on a port of its own.

The intake API answers `/healthz` itself; a process without it (relay, correlator, an
adapter) serves these when `LIANBAN_HEALTH_PORT` is set:

    GET /healthz  200 while every role's thread runs (liveness: restart me otherwise)
    GET /readyz   200 while, besides, every consumer is connected to the broker and
                  subscribed to its queue, and every other check (the database) passes
                  (readiness)

Both answer 503 otherwise, with the reason. A relay has no consumer: it is ready as long
as it runs, since it retries the database and the broker by itself.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from runtime.messaging.broker import Broker


@dataclass(frozen=True)
class Health:
    """Reads the live lists a Stack keeps: its role threads and its consumers' ready flags."""

    threads: Sequence[threading.Thread]
    consumers_ready: Sequence[threading.Event]
    checks: Sequence[Callable[[], str | None]] = ()
    """Readiness checks besides the consumers: each says what is wrong, or None."""

    def problem(self, *, readiness: bool) -> str | None:
        stopped = [thread.name for thread in self.threads if not thread.is_alive()]
        if stopped:
            return f"stopped: {', '.join(stopped)}"
        if not readiness:
            return None
        if not all(ready.is_set() for ready in self.consumers_ready):
            return "a consumer is not connected to the broker"
        return next((problem for check in self.checks if (problem := check())), None)


def broker_problem(broker: Broker) -> str | None:
    """Why the broker cannot be reached now, or None (a readiness check)."""
    if broker.is_memory:
        return None
    try:
        with broker.connect() as connection:
            connection.ensure_connection(max_retries=1, timeout=broker.connect_timeout)
    except Exception as error:  # kombu raises what its transport raises
        return f"the broker is unreachable: {type(error).__name__}"
    return None


def serve_health(health: Health, host: str, port: int) -> ThreadingHTTPServer:
    """Serve `/healthz` and `/readyz` on a daemon thread; `shutdown()` and
    `server_close()` the returned server to stop it."""

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            if self.path not in ("/healthz", "/readyz"):
                self.send_error(404)
                return
            problem = health.problem(readiness=self.path == "/readyz")
            body = json.dumps({"status": "ok"} if problem is None else {"problem": problem})
            self.send_response(200 if problem is None else 503)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body.encode())

        def log_message(self, format: str, *args: object) -> None:
            pass  # a probe every few seconds is not worth a log line

    server = ThreadingHTTPServer((host, port), Handler)
    threading.Thread(target=server.serve_forever, name="health", daemon=True).start()
    return server
