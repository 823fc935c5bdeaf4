"""Protections around department calls: retry with backoff inside a budget, a circuit
breaker per endpoint (`runtime.breakers`), and a rate limit per department.

All three live on the adapter's asyncio loop, so they need no locks.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import structlog
from tenacity import (
    AsyncRetrying,
    RetryCallState,
    stop_after_attempt,
    stop_after_delay,
    wait_exponential_jitter,
)

from adapters.errors import classify
from contracts.errors import Action, CircuitOpenError
from runtime.breakers import CircuitBreaker

log = structlog.get_logger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class RetryPolicy:
    """How hard to try one item's department calls: attempts and a wall-clock budget per
    delivery, deliveries per dispatch, and how long delayed retries may go on."""

    max_attempts: int = 5  # calls per delivery
    max_deliveries: int = 5  # deliveries of the same dispatch before giving up
    initial_backoff: float = 0.5
    max_backoff: float = 30.0
    budget_seconds: float = 300.0  # wall-clock for all attempts of one delivery
    # Past this, counted from the first delayed retry, or past the request's respond_by
    # (the item's deadline), a department still unavailable is no longer retried: the
    # message is parked and the router told, the item stays open (adapters.worker).
    give_up_after_seconds: float = 24 * 3600.0


class RateLimiter:
    """A token bucket: at most `rate` calls a second on average, bursts up to `burst`."""

    def __init__(
        self, rate: float, burst: int = 1, clock: Callable[[], float] = time.monotonic
    ) -> None:
        if rate <= 0:
            raise ValueError("rate must be positive")
        self._rate = rate
        self._capacity = float(max(burst, 1))
        self._tokens = self._capacity
        self._clock = clock
        self._updated = clock()

    async def acquire(self) -> None:
        while True:
            now = self._clock()
            self._tokens = min(self._capacity, self._tokens + (now - self._updated) * self._rate)
            self._updated = now
            if self._tokens >= 1:
                self._tokens -= 1
                return
            await asyncio.sleep((1 - self._tokens) / self._rate)


# AsyncRetrying awaits a coroutine function as it is, and wraps any other callable in a
# new one on every attempt (a fixed cost of each call): tenacity's own `before` and
# `retry_if_exception` are plain callables, these are their coroutine equivalents.
async def _nothing_before(state: RetryCallState) -> None:
    return None


async def _transient_failure(state: RetryCallState) -> bool:
    error = state.outcome.exception() if state.outcome is not None else None
    return error is not None and _transient(error)


def _transient(error: BaseException) -> bool:
    return classify(error) is Action.RETRY


async def call_department(
    call: Callable[[], Awaitable[T]],
    *,
    policy: RetryPolicy,
    budget_seconds: float,
    attempt_timeout_seconds: float,
    breaker: CircuitBreaker,
    limiter: RateLimiter | None,
) -> T:
    """Run `call` with a timeout per attempt, rate limit and breaker; retry what the error
    table says is transient, with jittered exponential backoff, until the attempts or the
    budget run out. While the breaker is open an attempt waits (within the budget) rather
    than calling, so an outage is waited out, not counted against the attempts. The last
    real exception is raised, never tenacity's RetryError."""

    deadline = time.monotonic() + budget_seconds

    async def attempt() -> T:
        await breaker.wait_to_call(deadline)
        if limiter is not None:
            await limiter.acquire()
        try:
            async with asyncio.timeout(attempt_timeout_seconds):
                result = await call()
        except Exception as error:
            if _transient(error) and not isinstance(error, CircuitOpenError):
                breaker.record_failure()
            raise
        breaker.record_success()
        return result

    def log_retry(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning("department.retry", attempt=state.attempt_number, error=repr(error))

    retrying = AsyncRetrying(
        stop=stop_after_attempt(policy.max_attempts) | stop_after_delay(max(budget_seconds, 0)),
        wait=wait_exponential_jitter(
            multiplier=policy.initial_backoff,
            max=policy.max_backoff,
            jitter=policy.initial_backoff,
        ),
        retry=_transient_failure,
        before=_nothing_before,
        before_sleep=log_retry,
        reraise=True,
    )
    return await retrying(attempt)
