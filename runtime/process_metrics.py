"""An adapter process's own metrics port: its breakers' states and the process's figures.

prometheus_client is imported here only, by a process that serves the port.
"""

from __future__ import annotations

from collections.abc import Iterator
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, ProcessCollector, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from runtime.breakers import BREAKERS, CIRCUIT_BREAKER_STATE, BreakerState


class BreakerCollector(Collector):
    """Reads the tracked breakers at scrape time: a breaker half-opens by the clock, not by
    an event, so a value recorded on transitions would go stale."""

    def collect(self) -> Iterator[Metric]:
        family = GaugeMetricFamily(
            CIRCUIT_BREAKER_STATE,
            "Circuit breaker of the department's system: 1 for its current state "
            "(closed, open, half_open), 0 for the others.",
            labels=["department", "state"],
        )
        for department, current in sorted(BREAKERS.states().items()):
            for state in BreakerState:
                family.add_metric([department, state.value], float(state is current))
        yield family


PROCESS_REGISTRY = CollectorRegistry()
PROCESS_REGISTRY.register(BreakerCollector())
ProcessCollector(registry=PROCESS_REGISTRY)


def serve_process_metrics(host: str, port: int) -> WSGIServer:
    """Serve this process's registry at http://host:port/metrics on a daemon thread;
    `shutdown()` and `server_close()` the returned server to stop it."""
    server, _thread = start_http_server(port, addr=host, registry=PROCESS_REGISTRY)
    return server
