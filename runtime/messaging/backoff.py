"""Exponential backoff with jitter, for reconnects and retries that must not spin."""

from __future__ import annotations

import random


class Backoff:
    """Doubling delays, capped, each drawn between half and all of its ceiling so that
    replicas failing together do not retry together; `reset` after a success."""

    def __init__(self, initial: float, maximum: float) -> None:
        self._initial = initial
        self._maximum = maximum
        self._failures = 0

    def next_delay(self) -> float:
        ceiling = min(self._maximum, self._initial * 2 ** min(self._failures, 32))
        self._failures += 1
        return random.uniform(ceiling / 2, ceiling)

    def reset(self) -> None:
        self._failures = 0


def doubling_delay(attempt: int, first: float, ceiling: float) -> float:
    """Seconds to wait after failed attempt number `attempt` (1, 2, …) of a row-kept job:
    `first`, then doubling, capped at `ceiling`. No jitter: the row's due time spreads
    the retries, and a test can say when the next attempt is due."""
    return min(first * 2.0 ** (attempt - 1), ceiling)
