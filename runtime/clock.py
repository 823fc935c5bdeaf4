"""Case time: the one `now()` that deadlines, pauses and alerts read.

A seam rather than scattered `datetime.now(UTC)` calls, so that a test moves every
clock of a case at once (time-machine patches what this reads) and production code
never sleeps to see a deadline pass.
"""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current instant, aware and in UTC."""
    return datetime.now(UTC)
