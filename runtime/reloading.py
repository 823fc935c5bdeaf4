"""A value read from a file and read again when the file changes, so that revoking a
token or a trusted key reaches every running process without a restart.

The file is looked at (one `stat`) at most every `RELOAD_EVERY`, so a change is in force
within that time. A file that changed but cannot be read (caught half-written) keeps the
last good value and is tried again at the next look.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Generic, TypeVar

import structlog

from contracts.errors import ConfigurationError

log = structlog.get_logger(__name__)
T = TypeVar("T")

RELOAD_EVERY = 30.0  # seconds: a revocation is in force within a minute with margin


class ReloadingFile(Generic[T]):
    def __init__(self, path: Path, read: Callable[[Path], T]) -> None:
        self._path = path
        self._read = read
        self._lock = threading.Lock()
        self._stamp = self._stamp_now()
        self._value = read(path)  # an unreadable file at start is a configuration error
        self._looked_at = time.time()

    def current(self) -> T:
        """The value, read again first if the file changed since it was read."""
        if time.time() - self._looked_at < RELOAD_EVERY:
            return self._value
        with self._lock:
            self._looked_at = time.time()
            stamp = self._stamp_now()
            if stamp != self._stamp:
                try:
                    self._value = self._read(self._path)
                except ConfigurationError as error:
                    log.error("reload.failed", path=str(self._path), error=str(error))
                else:
                    self._stamp = stamp
                    log.info("reload.done", path=str(self._path))
        return self._value

    def _stamp_now(self) -> tuple[int, int, int] | None:
        try:
            status = self._path.stat()
        except OSError:
            return None
        return (status.st_ino, status.st_size, status.st_mtime_ns)
