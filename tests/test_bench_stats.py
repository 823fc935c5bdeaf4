"""The benchmark's own arithmetic: percentiles, relative change and growth exponent."""

from __future__ import annotations

import math
from collections.abc import Callable

import pytest

from bench.capacity import Step, find_capacity, sustained
from bench.stats import Latency, growth_exponent, percentile, relative_change


def test_percentile_interpolates_between_closest_ranks() -> None:
    values = [5.0, 1.0, 4.0, 2.0, 3.0]
    assert percentile(values, 0.0) == 1.0
    assert percentile(values, 0.5) == 3.0
    assert percentile(values, 1.0) == 5.0
    assert percentile(values, 0.99) == pytest.approx(4.96)
    assert math.isnan(percentile([], 0.5))


def test_latency_is_reported_in_milliseconds() -> None:
    latency = Latency.of([0.010] * 98 + [0.100, 0.200])
    assert latency.count == 100
    assert latency.p50 == pytest.approx(10.0)
    assert latency.p99 == pytest.approx(101.0)


def test_relative_change_says_how_much_slower() -> None:
    assert relative_change(100.0, 90.0) == pytest.approx(-0.10)
    assert relative_change(20.0, 22.0) == pytest.approx(0.10)
    assert math.isnan(relative_change(0.0, 1.0))


def test_growth_exponent_tells_linear_from_worse() -> None:
    sizes = [1, 2, 4, 8]
    assert growth_exponent(sizes, [3.0 * n for n in sizes]) == pytest.approx(1.0)
    assert growth_exponent(sizes, [10.0 + n for n in sizes]) < 1.0
    assert growth_exponent(sizes, [float(n * n) for n in sizes]) == pytest.approx(2.0)


def _step(offered: float, achieved: float, unanswered: int, p99: float) -> Step:
    """A capacity step's figures (per second, and ms)."""
    return {
        "offered_per_second": offered,
        "bundles_per_second": achieved,
        "unanswered": unanswered,
        "reply": {"p99": p99},
    }


def _system_sustaining(limit: float) -> Callable[[float], Step]:
    """A pretend system: every bundle answered; p99 within 1 s up to `limit` per second."""

    def measure(rate: float) -> Step:
        return _step(rate, rate, unanswered=0, p99=200.0 if rate <= limit else 5000.0)

    return measure


@pytest.mark.parametrize(
    ("limit", "capacity", "steps"),
    [
        (20.0, 19.53, 5),  # stepped up from 10 until 24.4 failed
        (5.0, 4.1, 5),  # the first step failed: stepped down until 4.1 held
        (0.0, 0.0, 7),  # nothing held within the seven steps allowed
    ],
)
def test_capacity_is_the_highest_rate_held_stepping_from_the_first(
    limit: float, capacity: float, steps: int
) -> None:
    found, curve = find_capacity(_system_sustaining(limit), start=10, factor=1.25, max_steps=7)
    assert found == pytest.approx(capacity, abs=0.01)
    assert len(curve) == steps
    rates = [step["offered_per_second"] for step in curve]
    assert rates == sorted(rates)


def test_an_unanswered_bundle_fails_a_step_however_fast_the_rest() -> None:
    assert not sustained(_step(1.0, 1.0, unanswered=1, p99=10.0))
    assert not sustained(_step(1.0, 1.0, unanswered=0, p99=math.nan))


def test_a_step_taken_slower_than_offered_is_not_sustained() -> None:
    """Every bundle answered in time, but at 63 of the 104 per second offered: the load
    generator was held back (the Celery canvas's top steps in the 5 December run)."""
    assert not sustained(_step(104.1, 63.1, unanswered=0, p99=645.0))
    assert sustained(_step(104.1, 101.0, unanswered=0, p99=645.0))
