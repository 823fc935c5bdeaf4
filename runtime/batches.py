"""The loop of a worker that drains a table of due rows in batches (callbacks, notices,
messages, waybills): one batch after another while they come full, a short idle wait
otherwise, and a failed batch (the database away) logged and tried again shortly."""

from __future__ import annotations

import threading
from collections.abc import Callable

import structlog

log = structlog.get_logger(__name__)


def drain_batches(
    stop: threading.Event,
    batch: Callable[[], int],
    *,
    batch_size: int,
    idle_seconds: float,
    failed_event: str,
) -> None:
    """Run `batch` (it returns how many rows it handled) until `stop` is set."""
    while not stop.is_set():
        try:
            handled = batch()
        except Exception as error:  # the database or the store is away: try again shortly
            log.warning(failed_event, error=repr(error))
            handled = 0
        if handled < batch_size:
            stop.wait(idle_seconds)
