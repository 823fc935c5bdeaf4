"""The material store's interface, and the checks every upload passes whatever the backend.

Materials are content-addressed (claim check): stored under their SHA-256, while
messages carry only a `MaterialRef`. An upload is spooled to a local temporary file
while it is hashed and cut off at the size cap, then checked against its own magic
bytes and its claimed digest, then parsed whole (a PDF or an image:
`runtime.storage.documents`; an OFD, a ZIP container, is opened and checked as an
archive: `runtime.storage.ofd`); only then does the backend make it visible under its
digest. A refused upload leaves nothing behind. Names in a store are the digest, never
the client's file name.
"""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from contextlib import suppress
from pathlib import Path, PurePosixPath
from typing import IO

from contracts.application import MATERIAL_MEDIA_TYPES, MAX_MATERIAL_BYTES, MaterialRef
from contracts.errors import MaterialCorrupted, MaterialRejected, MaterialTooLarge
from runtime.storage.documents import document_problem
from runtime.storage.ofd import ofd_problem

CHUNK_BYTES = 1024 * 1024
# The leading bytes each accepted type must start with; OFD is a ZIP container.
_MAGIC: dict[str, tuple[bytes, ...]] = {
    "application/pdf": (b"%PDF-",),
    "application/ofd": (b"PK\x03\x04",),
    "image/jpeg": (b"\xff\xd8\xff",),
    "image/png": (b"\x89PNG\r\n\x1a\n",),
    "image/tiff": (b"II*\x00", b"MM\x00*"),
}
_MAGIC_LENGTH = max(len(magic) for magics in _MAGIC.values() for magic in magics)


_SHA256 = re.compile("[0-9a-f]{64}")


def check_digest(sha256: str) -> str:
    """`sha256` if it is a lowercase hex SHA-256; it becomes a file name or an object key."""
    if not _SHA256.fullmatch(sha256):
        raise MaterialRejected("not a lowercase hex SHA-256")
    return sha256


class MaterialUpload:
    """One upload in progress: `write` chunks as they arrive, then `commit` or `abort`.

    `publish` is the backend's step that makes the checked spool file (given by its path)
    visible under its digest; it runs only after every check passed, on a file flushed to
    disk first when the upload is `durable` (a backend that renames the spool into place:
    else a crash could leave the digest's name on a file without its content). Paths are
    plain strings: the relay keeps every notice it renders, and pathlib's objects cost
    it more than the calls they were passed to.
    """

    def __init__(
        self,
        sha256: str,
        media_type: str,
        spool_dir: str,
        publish: Callable[[str], None],
        *,
        durable: bool = False,
    ) -> None:
        if media_type not in MATERIAL_MEDIA_TYPES:
            raise MaterialRejected(f"media type {media_type!r} is not accepted")
        self._sha256 = check_digest(sha256)
        self._media_type = media_type
        self._publish = publish
        self._durable = durable
        self._digest = hashlib.sha256()
        self._head = b""
        self.size = 0
        self._path, self._file = _spool_file(spool_dir)

    def write(self, chunk: bytes) -> None:
        self.size += len(chunk)
        if self.size > MAX_MATERIAL_BYTES:
            self.abort()
            raise MaterialTooLarge(f"file exceeds {MAX_MATERIAL_BYTES} bytes")
        if len(self._head) < _MAGIC_LENGTH:
            self._head += chunk[: _MAGIC_LENGTH - len(self._head)]
        self._digest.update(chunk)
        self._file.write(chunk)

    def commit(self, *, parse: bool = True) -> int:
        """Check what arrived and hand it to the store; returns its size. `parse=False`
        skips parsing the document whole, for one Lianban made itself."""
        try:
            if self.size == 0:
                raise MaterialRejected("file is empty")
            if not self._head.startswith(_MAGIC[self._media_type]):
                raise MaterialRejected(f"content is not {self._media_type}")
            if self._digest.hexdigest() != self._sha256:
                raise MaterialRejected("content does not match its SHA-256")
            self._file.flush()  # the checks below read the spool by its path
            if self._media_type == "application/ofd" and (problem := ofd_problem(Path(self._path))):
                raise MaterialRejected(f"the OFD container {problem}")
            if parse and (problem := document_problem(Path(self._path), self._media_type)):
                raise MaterialRejected(f"content is not {self._media_type}: it {problem}")
            if self._durable:  # on the descriptor written: no second open to sync it
                os.fsync(self._file.fileno())
            self._file.close()
            self._publish(self._path)
        finally:
            self.abort()  # what is left of the spool: the store has its own copy, or nothing
        return self.size

    def abort(self) -> None:
        self._file.close()
        with suppress(FileNotFoundError):  # renamed into place, or never made
            os.unlink(self._path)


def _spool_file(spool_dir: str) -> tuple[str, IO[bytes]]:
    """A new file in `spool_dir` (made if it is not there), open for writing. The
    directory is made when missing rather than asked for on every upload (a failing mkdir
    and a stat), and the file is a plain one, not NamedTemporaryFile's wrapper (which
    wraps the method anew at each `write`): the relay keeps every notice it renders."""
    try:
        descriptor, name = tempfile.mkstemp(dir=spool_dir)
    except FileNotFoundError:
        os.makedirs(spool_dir, exist_ok=True)
        descriptor, name = tempfile.mkstemp(dir=spool_dir)
    return name, open(descriptor, "wb")  # closed in commit or abort


class MaterialStore(ABC):
    """Where materials are kept, by SHA-256. A backend implements the four abstract
    methods; storing, reading and checking by reference are built on them."""

    @abstractmethod
    def upload(self, sha256: str, media_type: str) -> MaterialUpload:
        """Start a checked upload of the file claimed to have this digest and type."""

    @abstractmethod
    def exists(self, sha256: str, size: int) -> bool:
        """Whether a file of this size is stored under `sha256`."""

    @abstractmethod
    def stream(self, sha256: str) -> Iterator[bytes]:
        """The stored file's bytes in chunks; opened at once, so MaterialMissing is raised
        here, before the first chunk, when nothing is stored under `sha256`."""

    @abstractmethod
    def stored_files(self) -> list[PurePosixPath]:
        """Everything the store holds, finished or not, relative to its root (for checks
        that a refusal left nothing)."""

    def put(self, sha256: str, data: bytes, media_type: str, *, parse: bool = True) -> int:
        """Store `data` in one piece (the same checks as a streamed upload)."""
        upload = self.upload(sha256, media_type)
        upload.write(data)
        return upload.commit(parse=parse)

    def read(self, sha256: str) -> bytes:
        return b"".join(self.stream(sha256))

    def fetch(self, ref: MaterialRef) -> bytes:
        """The bytes `ref` names, checked against its size and SHA-256."""
        data = self.read(ref.sha256)
        if len(data) != ref.size or hashlib.sha256(data).hexdigest() != ref.sha256:
            raise mismatch(ref, len(data))
        return data

    def stream_checked(self, ref: MaterialRef) -> Iterator[bytes]:
        """The bytes `ref` names in chunks, never whole in memory; opened at once
        (MaterialMissing here), and MaterialCorrupted after the last chunk (or as soon
        as there are too many) when they do not match the reference."""
        return _checked(self.stream(ref.sha256), ref)

    def keep(
        self, data: bytes, *, media_type: str, file_name: str, name: str, made_here: bool = False
    ) -> MaterialRef:
        """Store a file a department issued (the same checks as an upload); its reference.
        A document Lianban `made_here` (a notice it rendered) is not parsed again: only
        its type, size and digest are checked."""
        # The reference is built first, so a bad name is refused before anything is stored.
        ref = MaterialRef(
            name=name,
            sha256=hashlib.sha256(data).hexdigest(),
            size=len(data),
            media_type=media_type,
            file_name=file_name,
        )
        self.put(ref.sha256, data, media_type, parse=not made_here)
        return ref


def _checked(chunks: Iterator[bytes], ref: MaterialRef) -> Iterator[bytes]:
    digest, size = hashlib.sha256(), 0
    for chunk in chunks:
        size += len(chunk)
        if size > ref.size:
            raise mismatch(ref, size)
        digest.update(chunk)
        yield chunk
    if size != ref.size or digest.hexdigest() != ref.sha256:
        raise mismatch(ref, size)


def mismatch(ref: MaterialRef, stored_size: int) -> MaterialCorrupted:
    return MaterialCorrupted(
        f"material {ref.name!r} ({ref.file_name}) does not match its reference: "
        f"stored {stored_size} bytes under {ref.sha256}, expected {ref.size} bytes "
        "with that SHA-256"
    )
