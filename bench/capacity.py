"""Capacity: the highest offered rate a system sustains, found by stepping the rate.

A step offers bundles at a fixed rate for a fixed time (an open loop) and waits for
every reply; it is sustained when every bundle was answered, the p99 intake→reply is
within `P99_LIMIT_MS`, and the bundles went through at `ACHIEVED_SHARE` of the offered
rate at least (a system that took them slower than offered held the load generator back,
which then offered less than the step says). The search starts at a rate derived from a
closed loop and steps up geometrically until the first step that is not sustained; if
the very first step is not sustained it steps down instead, until one is.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

P99_LIMIT_MS = 1000.0
ACHIEVED_SHARE = 0.9

Step = dict[str, Any]
"""One step's figures: at least `offered_per_second`, `bundles_per_second` (achieved),
`unanswered` and `reply` (`p99`, ms)."""


def sustained(step: Step) -> bool:
    # A NaN p99 (nothing answered) compares False: not sustained.
    return bool(
        step["unanswered"] == 0
        and step["reply"]["p99"] <= P99_LIMIT_MS
        and step["bundles_per_second"] >= ACHIEVED_SHARE * step["offered_per_second"]
    )


def find_capacity(
    measure: Callable[[float], Step], start: float, factor: float, max_steps: int
) -> tuple[float, list[Step]]:
    """The highest sustained rate (0 if none was within `max_steps`) and every step
    measured, by offered rate."""
    curve: list[Step] = []
    rate = start
    first = measure(rate)
    curve.append(first)
    direction = factor if sustained(first) else 1 / factor
    while len(curve) < max_steps:
        rate *= direction
        step = measure(rate)
        curve.append(step)
        if sustained(step) != sustained(first):
            break
    passed = [step["offered_per_second"] for step in curve if sustained(step)]
    return max(passed, default=0.0), sorted(curve, key=lambda step: step["offered_per_second"])
