"""Content-addressed storage for electronic materials (claim check).

Files are stored under their SHA-256; messages carry only the reference. An upload is
streamed to a temporary file while it is hashed, cut off at the size cap, checked
against its own magic bytes and its claimed digest, and only then renamed into place:
a refused upload leaves nothing behind. Names on disk are the digest, never the
client's file name.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path
from typing import IO

from contracts.application import MATERIAL_MEDIA_TYPES, MAX_MATERIAL_BYTES

# The leading bytes each accepted type must start with; OFD is a ZIP container.
_MAGIC: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "application/ofd": (b"PK\x03\x04",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/tiff": (b"II*\x00", b"MM\x00*"),
}
_MAGIC_LENGTH = max(len(magic) for magics in _MAGIC.values() for magic in magics)


class MaterialRejected(ValueError):
    """The upload is not what it claims to be; the message says why."""


class MaterialTooLarge(MaterialRejected):
    """The upload passed the size cap; it was cut off there."""


class MaterialUpload:
    """One upload in progress: `write` chunks as they arrive, then `commit` or `abort`."""

    def __init__(self, store: MaterialStore, sha256: str, media_type: str) -> None:
        if media_type not in MATERIAL_MEDIA_TYPES:
            raise MaterialRejected(f"media type {media_type!r} is not accepted")
        self._target = store.path_of(sha256)
        self._sha256 = sha256
        self._media_type = media_type
        self._digest = hashlib.sha256()
        self._head = b""
        self.size = 0
        self._target.parent.mkdir(parents=True, exist_ok=True)
        self._file: IO[bytes] = tempfile.NamedTemporaryFile(  # noqa: SIM115 - closed in commit/abort
            dir=self._target.parent, delete=False
        )

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > MAX_MATERIAL_BYTES:
            self.abort()
            raise MaterialTooLarge(f"file exceeds {MAX_MATERIAL_BYTES} bytes")
        if len(self._head) < _MAGIC_LENGTH:
            self._head += chunk[: _MAGIC_LENGTH - len(self._head)]
        self._digest.update(chunk)
        self._file.write(chunk)

    def commit(self) -> int:
        """Check what arrived and move it into place; returns its size."""
        try:
            if self.size == 0:
                raise MaterialRejected("file is empty")
            if not self._head.startswith(_MAGIC[self._media_type]):
                raise MaterialRejected(f"content is not {self._media_type}")
            if self._digest.hexdigest() != self._sha256:
                raise MaterialRejected("content does not match its SHA-256")
        except MaterialRejected:
            self.abort()
            raise
        self._file.flush()
        os.fsync(self._file.fileno())
        self._file.close()
        os.replace(self._file.name, self._target)
        return self.size

    def abort(self) -> None:
        self._file.close()
        Path(self._file.name).unlink(missing_ok=True)


class MaterialStore:
    def __init__(self, root: Path) -> None:
        self._root = root
        root.mkdir(parents=True, exist_ok=True)

    def upload(self, sha256: str, media_type: str) -> MaterialUpload:
        return MaterialUpload(self, sha256, media_type)

    def put(self, sha256: str, data: bytes, media_type: str) -> int:
        """Store `data` in one piece (the same checks as a streamed upload)."""
        upload = self.upload(sha256, media_type)
        upload.write(data)
        return upload.commit()

    def exists(self, sha256: str, size: int) -> bool:
        path = self.path_of(sha256)
        return path.is_file() and path.stat().st_size == size

    def read(self, sha256: str) -> bytes:
        return self.path_of(sha256).read_bytes()

    def path_of(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise MaterialRejected("not a lowercase hex SHA-256")
        return self._root / sha256[:2] / sha256

    def stored_files(self) -> list[Path]:
        """Everything on disk, finished or not (for checks that a refusal left nothing)."""
        return sorted(path for path in self._root.rglob("*") if path.is_file())
