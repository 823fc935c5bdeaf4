"""The files the simulated medical insurance platform has received, on disk under their
SHA-256, as a department keeps them: an upload is spooled while it is hashed and kept
only if it matches the digest it was sent under, so the simulator never holds a file
whole either."""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import AsyncIterator
from pathlib import Path


class ReceivedFiles:
    def __init__(self, root: Path | None = None) -> None:
        self._temporary: tempfile.TemporaryDirectory[str] | None = None
        if root is None:  # the files live (and go) with this object's temporary directory
            self._temporary = tempfile.TemporaryDirectory(prefix="fsi-files-")
            root = Path(self._temporary.name)
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        self.uploads = 0  # bodies received, kept or not (a retry must send none again)

    def path(self, sha256: str) -> Path:
        return self.root / sha256

    def size(self, sha256: str) -> int | None:
        """The held file's size, or None when nothing is held under `sha256`."""
        path = self.path(sha256)
        return path.stat().st_size if path.is_file() else None

    async def receive(self, sha256: str, chunks: AsyncIterator[bytes]) -> bool:
        """Keep the streamed file under `sha256` if it matches; whether it did."""
        self.uploads += 1
        digest = hashlib.sha256()
        with tempfile.NamedTemporaryFile(dir=self.root, delete=False) as spool:
            try:
                async for chunk in chunks:
                    digest.update(chunk)
                    spool.write(chunk)
            except BaseException:
                os.unlink(spool.name)
                raise
        if digest.hexdigest() != sha256:
            os.unlink(spool.name)
            return False
        os.replace(spool.name, self.path(sha256))
        return True
