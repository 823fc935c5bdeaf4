"""The one place new code reads "now" from, so tests move time with time-machine (or
replace this seam) instead of sleeping."""

from __future__ import annotations

from datetime import UTC, datetime


def now() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)
