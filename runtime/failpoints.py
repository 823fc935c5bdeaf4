"""Crash points for the chaos tests: a process armed through `LIANBAN_FAILPOINTS` kills
itself with SIGKILL — no clean-up, no flush, like a power cut — the n-th time it reaches a
named step boundary.

    LIANBAN_FAILPOINTS="relay.after_publish=3"      # die the 3rd time the relay gets there

The boundaries are where at-least-once delivery could turn into loss or duplication; the
chaos suite kills each role at each of them and checks that nothing was lost or done
twice. Unarmed (always, in production), a failpoint costs one dictionary lookup.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections import Counter

from contracts.errors import ConfigurationError

ENVIRONMENT_VARIABLE = "LIANBAN_FAILPOINTS"

BOUNDARIES = {
    "intake.after_commit": "the bundle and its outbox rows are committed, 202 not yet sent",
    "relay.before_publish": "outbox rows committed or claimed, nothing published yet",
    "relay.after_publish": "the broker confirmed the batch, the rows are not marked sent",
    "adapter.after_call": "the department answered, the outcome is not published",
    "adapter.before_ack": "the outcome is confirmed, the dispatch is not acknowledged",
    "correlator.before_commit": "the outcome is applied in the transaction, not committed",
    "correlator.after_commit": "the outcome's effects are committed, the delivery not acked",
}


def _armed(value: str) -> dict[str, int]:
    armed: dict[str, int] = {}
    for entry in filter(None, (part.strip() for part in value.split(","))):
        name, _, nth = entry.partition("=")
        if name not in BOUNDARIES:
            raise ConfigurationError(
                f"{ENVIRONMENT_VARIABLE}: unknown failpoint {name!r}; known: {sorted(BOUNDARIES)}"
            )
        armed[name] = int(nth or "1")
    return armed


_ARMED = _armed(os.environ.get(ENVIRONMENT_VARIABLE, ""))
_hits: Counter[str] = Counter()
_lock = threading.Lock()


def failpoint(name: str) -> None:
    """Die here if this boundary is armed and this is the armed hit."""
    if name not in _ARMED:
        return
    with _lock:
        _hits[name] += 1
        if _hits[name] != _ARMED[name]:
            return
    print(f"failpoint {name}: SIGKILL", file=sys.stderr, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
