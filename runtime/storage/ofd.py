"""OFD (GB/T 33190) files are ZIP containers: an upload claiming to be one is opened as an
archive and checked before it is kept, so no zip bomb, no entry outside the container and
no link reaches a department system that unpacks it.
"""

from __future__ import annotations

import stat
import zipfile
from pathlib import Path, PurePosixPath

from contracts.application import MAX_MATERIAL_BYTES

MAX_ENTRIES = 10_000  # pages, fonts, images and signatures of a long document
MAX_EXPANDED_BYTES = 4 * MAX_MATERIAL_BYTES
MAX_RATIO = 100  # its images and fonts are compressed already; a bomb expands a thousandfold
RATIO_FLOOR = 1024 * 1024  # a small entry (XML) may compress well without being a threat


def ofd_problem(path: Path) -> str | None:
    """What is wrong with the OFD container at `path`, or None."""
    try:
        with zipfile.ZipFile(path) as archive:
            entries = archive.infolist()
    except (zipfile.BadZipFile, OSError, ValueError):
        return "is not a readable ZIP container"
    if len(entries) > MAX_ENTRIES:
        return f"has {len(entries)} entries; at most {MAX_ENTRIES} are allowed"
    if sum(entry.file_size for entry in entries) > MAX_EXPANDED_BYTES:
        return f"expands to more than {MAX_EXPANDED_BYTES} bytes"
    for entry in entries:
        name = PurePosixPath(entry.filename.replace("\\", "/"))
        if name.is_absolute() or ".." in name.parts or ":" in entry.filename:
            return f"has an entry outside the container: {entry.filename!r}"
        if stat.S_ISLNK(entry.external_attr >> 16):
            return f"has a symbolic link: {entry.filename!r}"
        if entry.file_size > RATIO_FLOOR and entry.file_size > MAX_RATIO * entry.compress_size:
            return f"has an entry that expands more than {MAX_RATIO}-fold (a zip bomb)"
    if "OFD.xml" not in {entry.filename for entry in entries}:
        return "has no OFD.xml at its root"
    return None
