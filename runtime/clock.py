"""Case time: the one `now()` that deadlines, pauses and alerts read.

A seam rather than scattered `datetime.now(UTC)` calls, so that a test moves every
clock of a case at once (time-machine patches what this reads) and production code
never sleeps to see a deadline pass. `advance` moves case time forward for this
process: the demo steps over simulated working days with it. A deployed router never
calls it, so its case time is the wall clock.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta

_lock = threading.Lock()
_ahead = timedelta(0)


def now() -> datetime:
    """The current instant, aware and in UTC (plus however far `advance` moved it)."""
    return datetime.now(UTC) + _ahead


def advance(by: timedelta) -> datetime:
    """Move this process's case time forward by `by`; returns the new case time."""
    global _ahead
    if by < timedelta(0):
        raise ValueError("case time never runs backwards")
    with _lock:
        _ahead += by
    return now()


def reset() -> None:
    """Case time is the wall clock again (the demo's end)."""
    global _ahead
    with _lock:
        _ahead = timedelta(0)
