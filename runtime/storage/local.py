"""Materials in a local directory: `<root>/<first two hex digits>/<sha256>`.

A checked upload is spooled beside its final place and renamed into it atomically after
an fsync, so a reader sees the whole file or nothing. Shared between processes only as
far as the directory is (one machine, or a network file system).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from contracts.errors import MaterialMissing
from runtime.storage.base import CHUNK_BYTES, MaterialStore, MaterialUpload, check_digest


class LocalMaterialStore(MaterialStore):
    def __init__(self, root: Path) -> None:
        self._root = root
        self._root_name = str(root)
        root.mkdir(parents=True, exist_ok=True)

    def upload(self, sha256: str, media_type: str) -> MaterialUpload:
        directory = self._directory(sha256)
        target = f"{directory}/{sha256}"

        def rename_into_place(spooled: str) -> None:
            os.replace(spooled, target)

        return MaterialUpload(sha256, media_type, directory, rename_into_place, durable=True)

    def exists(self, sha256: str, size: int) -> bool:
        path = self._path(sha256)
        return path.is_file() and path.stat().st_size == size

    def stream(self, sha256: str) -> Iterator[bytes]:
        try:
            file = self._path(sha256).open("rb")
        except FileNotFoundError:
            raise MaterialMissing(f"nothing is stored under {sha256}") from None
        return _chunks(file)

    def stored_files(self) -> list[PurePosixPath]:
        return sorted(
            PurePosixPath(path.relative_to(self._root).as_posix())
            for path in self._root.rglob("*")
            if path.is_file()
        )

    def _directory(self, sha256: str) -> str:
        """Where the material `sha256` is kept (and spooled, to be renamed into place)."""
        return f"{self._root_name}/{check_digest(sha256)[:2]}"

    def _path(self, sha256: str) -> Path:
        return Path(self._directory(sha256), sha256)


def _chunks(file: BinaryIO) -> Iterator[bytes]:
    with file:
        while chunk := file.read(CHUNK_BYTES):
            yield chunk
