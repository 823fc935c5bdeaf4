"""Token guessing, slowed down per client: unknown or expired tokens are counted per
client address in one-minute windows; past the limit, every request of that client that
presents a token is answered 429 with `Retry-After` until its window ends — a valid
token included, so a guess that hits tells the guesser nothing.

Counted in the process (each `serve` replica counts its own), in memory bounded by
forgetting windows that ended. Refusals reach the audit log aggregated: a row for a
client's first refusal in a window and one when it is locked out, never one per guess.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

WINDOW_SECONDS = 60
_FORGET_AFTER_CLIENTS = 10_000


@dataclass
class _Window:
    started: float
    refused: int = 0


class CredentialGuesses:
    def __init__(
        self, limit: int, on_refused: Callable[[str, int, bool], None] = lambda *_: None
    ) -> None:
        """`on_refused(client, refusals so far, locked out)` is called on a client's first
        refusal in a window and when it is locked out."""
        self._limit = limit
        self._on_refused = on_refused
        self._windows: dict[str, _Window] = {}
        self._lock = threading.Lock()

    def retry_after(self, client: str) -> int | None:
        """Seconds until `client` may present a token again, if it is locked out."""
        now = time.time()
        with self._lock:
            window = self._windows.get(client)
            if window is None or window.refused <= self._limit:
                return None
            remaining = window.started + WINDOW_SECONDS - now
        return int(remaining) + 1 if remaining > 0 else None

    def refused(self, client: str) -> None:
        """`client` presented an unknown or expired token."""
        now = time.time()
        with self._lock:
            if len(self._windows) > _FORGET_AFTER_CLIENTS:
                self._forget_ended(now)
            window = self._windows.get(client)
            if window is None or now - window.started >= WINDOW_SECONDS:
                window = self._windows[client] = _Window(now)
            window.refused += 1
            refused = window.refused
        if refused == 1 or refused == self._limit + 1:
            self._on_refused(client, refused, refused > self._limit)

    def _forget_ended(self, now: float) -> None:
        self._windows = {
            client: window
            for client, window in self._windows.items()
            if now - window.started < WINDOW_SECONDS
        }
