"""The SDK's protections: the error table, retries inside a budget, breaker and rate limit."""

from __future__ import annotations

import asyncio

import httpx
import pytest
from zeep.exceptions import Fault

from adapters.errors import classify
from adapters.resilience import RateLimiter, RetryPolicy, call_department
from contracts.errors import Action, BadAnswerError, CircuitOpenError, RetryableError
from runtime.breakers import BreakerState, CircuitBreaker

FAST = RetryPolicy(max_attempts=4, initial_backoff=0.001, max_backoff=0.01, budget_seconds=5)


def _status_error(status: int) -> httpx.HTTPStatusError:
    request = httpx.Request("POST", "http://department.test/file")
    return httpx.HTTPStatusError(
        "", request=request, response=httpx.Response(status, request=request)
    )


@pytest.mark.parametrize(
    ("error", "action"),
    [
        (_status_error(503), Action.RETRY),
        (_status_error(429), Action.RETRY),
        (_status_error(599), Action.RETRY),
        (_status_error(400), Action.FAIL),
        (_status_error(422), Action.FAIL),
        (httpx.ConnectError("refused"), Action.RETRY),
        (httpx.ReadTimeout("slow"), Action.RETRY),
        (Fault("busy", code="soap:Server"), Action.RETRY),
        (Fault("bad", code="{http://schemas.xmlsoap.org/soap/envelope/}Client"), Action.FAIL),
        (BadAnswerError("garbage"), Action.FAIL),
        (RetryableError("later"), Action.RETRY),
        (ValueError("bug"), Action.FAIL),
    ],
)
def test_the_error_table(error: BaseException, action: Action) -> None:
    assert classify(error) is action


class _Department:
    """Fails with the given errors in turn, then answers."""

    def __init__(self, *errors: BaseException) -> None:
        self.errors = list(errors)
        self.calls = 0

    async def __call__(self) -> str:
        self.calls += 1
        if self.errors:
            raise self.errors.pop(0)
        return "filed"


def _run(
    department: _Department,
    breaker: CircuitBreaker | None = None,
    budget_seconds: float = FAST.budget_seconds,
    policy: RetryPolicy = FAST,
) -> str:
    return asyncio.run(
        call_department(
            department,
            policy=policy,
            budget_seconds=budget_seconds,
            attempt_timeout_seconds=1.0,
            breaker=breaker or CircuitBreaker("test", threshold=100),
            limiter=None,
        )
    )


def test_transient_failures_are_retried_until_the_department_answers() -> None:
    department = _Department(_status_error(503), httpx.ConnectError("refused"))
    assert _run(department) == "filed"
    assert department.calls == 3


def test_a_fatal_failure_is_not_retried_and_the_real_exception_surfaces() -> None:
    department = _Department(_status_error(400))
    with pytest.raises(httpx.HTTPStatusError):
        _run(department)
    assert department.calls == 1


def test_attempts_stop_at_the_policy_limit_with_the_last_real_error() -> None:
    department = _Department(*[_status_error(503)] * 10)
    with pytest.raises(httpx.HTTPStatusError):
        _run(department)
    assert department.calls == FAST.max_attempts


def test_an_exhausted_budget_stops_retrying() -> None:
    department = _Department(*[_status_error(503)] * 10)
    with pytest.raises(httpx.HTTPStatusError):
        _run(department, budget_seconds=0)
    assert department.calls == 1


def test_the_waits_between_attempts_grow_exponentially_with_jitter_up_to_the_cap(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    waits: list[float] = []

    async def recorded_sleep(seconds: float) -> None:
        waits.append(seconds)

    monkeypatch.setattr(asyncio, "sleep", recorded_sleep)
    policy = RetryPolicy(max_attempts=5, initial_backoff=1.0, max_backoff=3.0, budget_seconds=60)
    department = _Department(*[_status_error(503)] * 10)
    with pytest.raises(httpx.HTTPStatusError):
        _run(department, budget_seconds=60, policy=policy)
    assert department.calls == 5 and len(waits) == 4  # none after the last attempt
    assert 1.0 <= waits[0] <= 2.0 and 2.0 <= waits[1] <= 3.0  # 1 then 2, plus up to 1
    assert waits[2:] == [3.0, 3.0]  # 4 and 8 capped


class _Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_repeated_failures_and_probes_after_the_reset() -> None:
    clock = _Clock()
    breaker = CircuitBreaker("dept", threshold=3, reset_seconds=10, clock=clock)
    for _ in range(3):
        breaker.before_call()
        breaker.record_failure()
    assert breaker.state is BreakerState.OPEN
    with pytest.raises(CircuitOpenError):
        breaker.before_call()

    clock.now = 10
    assert breaker.state is BreakerState.HALF_OPEN
    breaker.before_call()  # the one probe
    with pytest.raises(CircuitOpenError):
        breaker.before_call()  # no second probe while the first is out
    breaker.record_failure()
    assert breaker.state is BreakerState.OPEN

    clock.now = 20
    breaker.before_call()
    breaker.record_success()
    assert breaker.state is BreakerState.CLOSED


def test_an_open_breaker_keeps_calls_from_the_department() -> None:
    breaker = CircuitBreaker("dept", threshold=2, reset_seconds=60)
    department = _Department(*[_status_error(503)] * 10)
    with pytest.raises(CircuitOpenError):
        _run(department, breaker=breaker, budget_seconds=0.3)
    assert department.calls == 2  # then the breaker held every attempt back until the budget


def test_an_outage_is_waited_out_through_the_breaker_probe() -> None:
    breaker = CircuitBreaker("dept", threshold=2, reset_seconds=0.2)
    department = _Department(_status_error(503), _status_error(503))
    assert _run(department, breaker=breaker) == "filed"
    assert department.calls == 3  # two failures opened it; the probe after 0.2 s succeeded
    assert breaker.state is BreakerState.CLOSED


def test_the_rate_limiter_spaces_calls_beyond_the_burst(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = _Clock()
    limiter = RateLimiter(rate=10, burst=2, clock=clock)
    slept: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        slept.append(seconds)
        clock.now += seconds

    async def take(count: int) -> None:
        for _ in range(count):
            await limiter.acquire()

    monkeypatch.setattr(asyncio, "sleep", fake_sleep)
    asyncio.run(take(5))
    assert clock.now == pytest.approx(0.3)  # 2 from the burst, 3 more at 10 per second
