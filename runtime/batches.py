"""The loop of a worker that drains a table of due rows in batches (callbacks, notices,
messages, waybills): one batch after another while they come full, a short idle wait
after a batch that found work, and a failed batch (the database away) logged and tried
again shortly.

While rounds find nothing the wait doubles, up to IDLE_GROWTH times the short one: an
idle router then queries a few times a second in all instead of dozens, and a row that
arrives after a quiet spell waits at most that longer wait."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)

IDLE_GROWTH = 8


def drain_batches(
    stop: threading.Event,
    batch: Callable[[], int],
    *,
    batch_size: int,
    idle_seconds: float,
    failed_event: str,
) -> None:
    """Run `batch` (it returns how many rows it handled) until `stop` is set."""
    quiet = idle_seconds
    while not stop.is_set():
        handled: int | None
        try:
            handled = batch()
        except Exception as error:  # the database or the store is away: try again shortly
            log.warning(failed_event, error=repr(error))
            handled = None
        if handled == 0:
            stop.wait(quiet)
            quiet = min(2 * quiet, IDLE_GROWTH * idle_seconds)
            continue
        quiet = idle_seconds
        if handled is None or handled < batch_size:
            stop.wait(idle_seconds)
