"""Process-local metrics of an adapter process: the state of each department's circuit breaker.

A breaker lives in the process that calls the department, so only that process can report
it: `AdapterRunner` tracks its breaker here while it runs, and an adapter process serves
`PROCESS_REGISTRY` on its own port (`serve_process_metrics`). Everything else the router
counts from its database (`router.operations.metrics`), which is right across replicas and restarts.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from adapters.resilience import BreakerState, CircuitBreaker

CIRCUIT_BREAKER_STATE = "lianban_circuit_breaker_state"

# When one process runs several breakers of a department, the department is as bad as its worst.
_SEVERITY = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class BreakerCollector(Collector):
    """Reads the tracked breakers at scrape time: a breaker half-opens by the clock, not by
    an event, so a value recorded on transitions would go stale."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._breakers: dict[int, tuple[str, CircuitBreaker]] = {}

    def track(self, department: str, breaker: CircuitBreaker) -> None:
        with self._lock:
            self._breakers[id(breaker)] = (department, breaker)

    def untrack(self, breaker: CircuitBreaker) -> None:
        with self._lock:
            self._breakers.pop(id(breaker), None)

    def states(self) -> dict[str, BreakerState]:
        """Each tracked department's breaker state (the worst, if it has several)."""
        with self._lock:
            tracked = list(self._breakers.values())
        states: dict[str, BreakerState] = {}
        for department, breaker in tracked:
            state = breaker.state
            if _SEVERITY[state] >= _SEVERITY[states.get(department, BreakerState.CLOSED)]:
                states[department] = state
        return states

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            CIRCUIT_BREAKER_STATE,
            "Circuit breaker of the department's system: 1 for its current state "
            "(closed, open, half_open), 0 for the others.",
            labels=["department", "state"],
        )
        for department, current in sorted(self.states().items()):
            for state in BreakerState:
                family.add_metric([department, state.value], float(state is current))
        yield family


BREAKERS = BreakerCollector()
PROCESS_REGISTRY = CollectorRegistry()
PROCESS_REGISTRY.register(BREAKERS)
ProcessCollector(registry=PROCESS_REGISTRY)


def serve_process_metrics(host: str, port: int) -> WSGIServer:
    """Serve this process's registry at http://host:port/metrics on a daemon thread;
    `shutdown()` and `server_close()` the returned server to stop it."""
    server, _thread = start_http_server(port, addr=host, registry=PROCESS_REGISTRY)
    return server
