"""Circuit breakers of department endpoints, and the metric that reports their state.

A breaker lives in the process that calls the department, so only that process can report
it: `AdapterRunner` tracks its breaker here while it runs, and an adapter process serves
their states on its own port (`runtime.process_metrics`). Everything else the router
counts from its database (`router.operations.metrics`), which is right across replicas and restarts.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable

import structlog

from contracts.errors import CircuitOpenError
from contracts.messages import CircuitState

log = structlog.get_logger(__name__)

CIRCUIT_BREAKER_STATE = "lianban_circuit_breaker_state"


# The contract's name for it: adapters report it to the router with their trouble notices.
BreakerState = CircuitState


class CircuitBreaker:
    """Opens after `threshold` consecutive transient failures; lets one probe through
    after `reset_seconds`; closes again when a probe succeeds."""

    def __init__(
        self,
        name: str,
        threshold: int = 5,
        reset_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.name = name
        self._threshold = threshold
        self._reset_seconds = reset_seconds
        self._clock = clock
        self._failures = 0
        self._opened_at: float | None = None
        self._probing = False

    @property
    def state(self) -> BreakerState:
        if self._opened_at is None:
            return BreakerState.CLOSED
        if self._clock() - self._opened_at >= self._reset_seconds:
            return BreakerState.HALF_OPEN
        return BreakerState.OPEN

    def before_call(self) -> None:
        state = self.state
        if state is BreakerState.OPEN or (state is BreakerState.HALF_OPEN and self._probing):
            raise CircuitOpenError(f"circuit for {self.name} is open")
        if state is BreakerState.HALF_OPEN:
            self._probing = True

    async def wait_to_call(self, deadline: float) -> None:
        """Wait until a call may go through, or raise CircuitOpenError at `deadline`.

        While the circuit is open nobody calls; when it half-opens one caller probes and
        the others keep waiting for the probe's verdict.
        """
        while True:
            try:
                self.before_call()
                return
            except CircuitOpenError:
                now = self._clock()
                if now >= deadline:
                    raise
                until_probe = (self._opened_at or now) + self._reset_seconds - now
                await asyncio.sleep(min(max(until_probe, 0.05), deadline - now))

    def record_success(self) -> None:
        if self._opened_at is not None:
            log.info("breaker.closed", endpoint=self.name)
        self._failures = 0
        self._opened_at = None
        self._probing = False

    def record_failure(self) -> None:
        self._failures += 1
        self._probing = False
        if self._opened_at is not None or self._failures >= self._threshold:
            if self._opened_at is None:
                log.warning("breaker.opened", endpoint=self.name, failures=self._failures)
            self._opened_at = self._clock()


# When one process runs several breakers of a department, the department is as bad as its worst.
_SEVERITY = {BreakerState.CLOSED: 0, BreakerState.HALF_OPEN: 1, BreakerState.OPEN: 2}


class TrackedBreakers:
    """The breakers of this process, by department; their states are read when asked (a
    breaker half-opens by the clock, not by an event)."""

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


BREAKERS = TrackedBreakers()
