"""The benchmark's own arithmetic: percentiles, relative change and growth exponent."""

from __future__ import annotations

import math

import pytest

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
