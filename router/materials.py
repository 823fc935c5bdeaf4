"""Content-addressed storage for electronic materials (claim check).

Files are stored under their SHA-256; messages carry only the reference. An upload is
checked against its claimed digest, a size cap and the file's own magic bytes.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

from contracts.application import MATERIAL_MEDIA_TYPES, MAX_MATERIAL_BYTES

# The leading bytes each accepted type must start with; OFD is a ZIP container.
_MAGIC: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "application/ofd": (b"PK\x03\x04",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/tiff": (b"II*\x00", b"MM\x00*"),
}


class MaterialRejected(ValueError):
    """The upload is not what it claims to be; the message says why."""


class MaterialStore:
    def __init__(self, root: Path) -> None:
        self._root = root
        root.mkdir(parents=True, exist_ok=True)

    def put(self, sha256: str, data: bytes, media_type: str) -> int:
        """Store `data` under its digest after checking it; returns its size."""
        if len(data) > MAX_MATERIAL_BYTES:
            raise MaterialRejected(f"file exceeds {MAX_MATERIAL_BYTES} bytes")
        if not data:
            raise MaterialRejected("file is empty")
        if media_type not in MATERIAL_MEDIA_TYPES:
            raise MaterialRejected(f"media type {media_type!r} is not accepted")
        if not data.startswith(_MAGIC[media_type]):
            raise MaterialRejected(f"content is not {media_type}")
        if hashlib.sha256(data).hexdigest() != sha256:
            raise MaterialRejected("content does not match its SHA-256")
        path = self._path(sha256)
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            with tempfile.NamedTemporaryFile(dir=path.parent, delete=False) as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(handle.name, path)
        return len(data)

    def exists(self, sha256: str, size: int) -> bool:
        path = self._path(sha256)
        return path.is_file() and path.stat().st_size == size

    def read(self, sha256: str) -> bytes:
        return self._path(sha256).read_bytes()

    def _path(self, sha256: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise MaterialRejected("not a lowercase hex SHA-256")
        return self._root / sha256[:2] / sha256
