"""The front-end machine (前置机) exchange: bundle packages arrive as files in a directory.

Layout under the filedrop directory (created on start):

    inbox/      the platform drops `<name>.zip`, written under another name (`<name>.zip.part`)
                and renamed when complete: only `*.zip` files are picked up
    processed/  packages intake accepted (a repeat drop is accepted again: same receipt)
    failed/     packages refused, each with `<name>.zip.reason.json` saying why
    outbox/     `<project_no>.receipt.json`; replies and certificates (`filedrop_export`)

Proofs of delivery (送达凭证) arrive in the same inbox as `*.proof.json` (`filedrop_proofs`).

A package is a ZIP holding `manifest.json` (the body `POST /v1/bundles` takes) and each
material at its top level under its `file_name`. The archive is judged from its central
directory before anything is decompressed; the materials are staged in a scratch store
through the upload checks HTTP uses, and the application is validated against them, so a
refused package leaves nothing in the material store. Only then are the materials stored
and the application submitted through intake, its case number as the idempotency key.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
import tempfile
import threading
import zipfile
import zlib
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from functools import partial
from pathlib import Path
from typing import Any

import structlog
from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy.exc import InterfaceError, OperationalError
from tenacity import Retrying, retry_if_result, wait_exponential

from contracts.api import IntakeReceipt, OneTimeNotice, Problem
from contracts.application import MAX_MATERIAL_BYTES, MaterialRef
from contracts.catalog import Catalog
from contracts.errors import MaterialRejected, StoreUnavailable
from router.domain.admission import read_document
from router.domain.catalogs import CatalogShelf, shelf_of
from router.domain.intake import CaseNumberTaken, Intake, ProblemsFound, Received
from router.domain.validation import find_problems
from runtime.storage import LocalMaterialStore, MaterialStore, MaterialUpload

log = structlog.get_logger(__name__)

MANIFEST = "manifest.json"
MAX_MANIFEST_BYTES = 1024 * 1024
MAX_ENTRIES = 101  # the manifest and a hundred materials
MAX_PACKAGE_BYTES = 10 * MAX_MATERIAL_BYTES  # uncompressed, every entry together
MAX_RATIO = 100  # PDFs, OFDs and scans are compressed already; a bomb expands a thousandfold
RATIO_FLOOR = 1024 * 1024  # a small entry may compress well without being a threat
_CHUNK = 1024 * 1024
MAX_BACKOFF_SECONDS = 300
# Causes that go away by themselves (the database or the material store is unreachable,
# the disk is full): the package waits in the inbox. Anything else would recur.
TRANSIENT = (OperationalError, InterfaceError, StoreUnavailable, OSError)
# What zipfile raises on a damaged or hostile archive (a name that is not UTF-8 included).
_CORRUPT = (zipfile.BadZipFile, zlib.error, EOFError, ValueError)


@dataclass(frozen=True)
class Layout:
    root: Path

    @property
    def inbox(self) -> Path:
        return self.root / "inbox"

    @property
    def processed(self) -> Path:
        return self.root / "processed"

    @property
    def failed(self) -> Path:
        return self.root / "failed"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    def create(self) -> None:
        for directory in (self.inbox, self.processed, self.failed, self.outbox):
            directory.mkdir(parents=True, exist_ok=True)


def write_atomically(path: Path, data: bytes) -> None:
    """Readers see the whole file under `path` or none: it is written under a hidden
    temporary name in the same directory, synced, then renamed over `path`."""
    temporary = path.with_name(f".{path.name}.{secrets.token_hex(4)}.tmp")
    descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    # The rename itself survives a power cut only once the directory is synced.
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


class FailureCode(StrEnum):
    ARCHIVE_INVALID = "archive_invalid"  # not a ZIP, or an entry cannot be read
    ARCHIVE_UNSAFE = "archive_unsafe"  # paths, links, duplicates, limits, unlisted entries
    MANIFEST_INVALID = "manifest_invalid"  # missing, too large, or not JSON
    MATERIAL_REJECTED = "material_rejected"  # digest, type, size or emptiness
    REFUSED = "refused"  # intake's one-time notice (一次告知): see `problems`
    CONFLICT = "conflict"  # the case number was used for a different application
    UNPROCESSABLE = "unprocessable"  # an error that would recur on every attempt
    PROOF_REFUSED = "proof_refused"  # a proof of delivery that does not fit (filedrop_proofs)


class PackageFailure(BaseModel):
    """`failed/<name>.zip.reason.json`: why a package was refused."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    package: str
    code: FailureCode
    message: str
    problems: tuple[Problem, ...] = Field(
        default=(), description="Every problem with the application, when intake refused it"
    )
    failed_at: AwareDatetime


class _Rejected(Exception):
    """Unwinds the checks of one package to the single place that writes its reason."""

    def __init__(self, code: FailureCode, message: str, problems: tuple[Problem, ...] = ()):
        super().__init__(message)
        self.code = code
        self.problems = problems

    @classmethod
    def refused(cls, notice: OneTimeNotice) -> _Rejected:
        return cls(FailureCode.REFUSED, notice.title, notice.problems)


class PackageWatcher:
    """Polls the inbox and takes each complete package through intake."""

    def __init__(
        self,
        layout: Layout,
        intake: Intake,
        materials: MaterialStore,
        catalog: Catalog | CatalogShelf,
        *,
        poll_seconds: float = 2.0,
    ) -> None:
        self._layout = layout
        self._intake = intake
        self._materials = materials
        self._catalogs = shelf_of(catalog)
        self._poll_seconds = poll_seconds
        self._deferred: set[str] = set()  # packages waiting on a transient cause, logged once
        layout.create()

    def run(self, stop: threading.Event) -> None:
        """Scan every poll interval; while packages wait on a transient cause, back off
        (doubling up to MAX_BACKOFF_SECONDS) instead of retrying them every poll."""

        def pause(seconds: float) -> None:
            stop.wait(seconds)  # a stop ends the pause early

        backoff = Retrying(
            retry=retry_if_result(lambda deferred: deferred),
            wait=wait_exponential(multiplier=self._poll_seconds, max=MAX_BACKOFF_SECONDS),
            stop=lambda _: stop.is_set(),
            sleep=pause,
            retry_error_callback=lambda _: None,
        )
        while not stop.is_set():
            backoff(self._scan_deferring)
            stop.wait(self._poll_seconds)

    def _scan_deferring(self) -> bool:
        try:
            self.scan_once()
        except OSError as error:  # the directory is away (a network mount): try again
            log.warning("filedrop.scan_failed", error=repr(error))
            return True
        return bool(self._deferred)

    def scan_once(self) -> list[Path]:
        """Handle every complete package in the inbox; returns where each one was moved.

        A package whose handling breaks off for a transient cause (the database or the
        store is away) stays in the inbox for the next scan, logged once; any other error
        would recur on every attempt, so the package goes to failed/ with its reason.
        Every step is idempotent, so watchers may share a directory: at worst two handle
        the same package and reach the same result.
        """
        moved: list[Path] = []
        for package in sorted(self._layout.inbox.glob("*.zip")):
            if package.name.startswith(".") or not (package.is_file() or package.is_symlink()):
                continue
            try:
                moved.append(self._handle(package))
            except TRANSIENT as error:
                if package.name not in self._deferred:
                    log.warning(
                        "filedrop.package_deferred", package=package.name, error=repr(error)
                    )
                    self._deferred.add(package.name)
                continue
            self._deferred.discard(package.name)
        return moved

    def _handle(self, package: Path) -> Path:
        try:
            receipt = self._accept(package)
        except _Rejected as rejected:
            return self._fail(package, rejected)
        except TRANSIENT:
            raise
        except Exception as error:
            log.exception("filedrop.package_unprocessable", package=package.name)
            return self._fail(package, _Rejected(FailureCode.UNPROCESSABLE, type(error).__name__))
        return self._deliver(package, receipt)

    def _fail(self, package: Path, rejected: _Rejected) -> Path:
        failure = PackageFailure(
            package=package.name,
            code=rejected.code,
            message=str(rejected),
            problems=rejected.problems,
            failed_at=datetime.now(UTC),
        )
        # The reason is in place before the package shows up in failed/.
        reason = self._layout.failed / f"{package.name}.reason.json"
        write_atomically(reason, failure.model_dump_json(indent=2).encode())
        log.info("filedrop.package_failed", package=package.name, code=rejected.code.value)
        return move_into(package, self._layout.failed)

    def _deliver(self, package: Path, receipt: IntakeReceipt) -> Path:
        receipt_file = self._layout.outbox / f"{receipt.project_no}.receipt.json"
        write_atomically(receipt_file, receipt.model_dump_json(indent=2).encode())
        log.info(
            "filedrop.package_accepted", package=package.name, bundle_id=str(receipt.bundle_id)
        )
        return move_into(package, self._layout.processed)

    def _accept(self, package: Path) -> IntakeReceipt:
        if package.is_symlink():
            raise _Rejected(FailureCode.ARCHIVE_UNSAFE, "the package is a symbolic link")
        try:
            archive = zipfile.ZipFile(package)
        except _CORRUPT as error:
            raise _Rejected(FailureCode.ARCHIVE_INVALID, f"not a ZIP archive: {error}") from None
        with archive:
            entries = _checked_entries(archive)
            raw = _manifest(archive, entries.pop(MANIFEST, None))
            materials = _listed_materials(raw, entries)
            with tempfile.TemporaryDirectory(dir=self._layout.root, prefix=".staging-") as scratch:
                staged = LocalMaterialStore(Path(scratch))
                for ref, info in materials:
                    _stage(archive, info, ref, staged)
                self._check_application(raw, staged)
                for ref, _ in materials:
                    upload = self._materials.upload(ref.sha256, ref.media_type)
                    _upload(staged.stream(ref.sha256), upload)
        match self._intake.submit(raw, raw["project_no"]):
            case Received(receipt=receipt):
                return receipt
            case ProblemsFound(notice=notice):
                raise _Rejected.refused(notice)
            case CaseNumberTaken(message=message):
                raise _Rejected(FailureCode.CONFLICT, message)
        raise AssertionError("unreachable")

    def _check_application(self, raw: Any, staged: MaterialStore) -> None:
        """Intake's own validation, the staged materials counting as uploaded, so that a
        refused application never reaches the material store."""

        def uploaded(sha256: str, size: int) -> bool:
            return staged.exists(sha256, size) or self._materials.exists(sha256, size)

        application, problems = find_problems(raw, self._catalogs.current(), uploaded)
        if application is None or problems:
            raise _Rejected.refused(OneTimeNotice(problems=tuple(problems)))


def _checked_entries(archive: zipfile.ZipFile) -> dict[str, zipfile.ZipInfo]:
    """Every entry by name, judged from the central directory alone (nothing decompressed)."""
    infos = archive.infolist()
    if len(infos) > MAX_ENTRIES:
        message = f"{len(infos)} entries; at most {MAX_ENTRIES} are allowed"
        raise _Rejected(FailureCode.ARCHIVE_UNSAFE, message)
    total = sum(info.file_size for info in infos)
    if total > MAX_PACKAGE_BYTES:
        message = f"{total} bytes uncompressed; at most {MAX_PACKAGE_BYTES} are allowed"
        raise _Rejected(FailureCode.ARCHIVE_UNSAFE, message)
    entries: dict[str, zipfile.ZipInfo] = {}
    for info in infos:
        problem = _entry_problem(info)
        if problem is None and info.filename in entries:
            problem = "appears twice"
        if problem is not None:
            raise _Rejected(FailureCode.ARCHIVE_UNSAFE, f"entry {info.filename!r} {problem}")
        entries[info.filename] = info
    return entries


def _entry_problem(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    parts = re.split(r"[/\\]", name)
    if name.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", name):
        return "is an absolute path"
    if ".." in parts:
        return "points outside the archive ('..')"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    if len(parts) > 1:
        return "is not a file at the top level of the archive"
    if not name.isascii() and not info.flag_bits & 0x800:
        return "has a name not marked as UTF-8 (set the ZIP UTF-8 flag)"
    if info.flag_bits & 0x1:
        return "is encrypted"
    if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
        return "uses a compression method other than stored or deflate"
    if info.file_size > MAX_MATERIAL_BYTES:
        return f"is larger than {MAX_MATERIAL_BYTES} bytes"
    if info.file_size > RATIO_FLOOR and info.file_size > MAX_RATIO * info.compress_size:
        return f"expands more than {MAX_RATIO}-fold (a zip bomb)"
    return None


def _manifest(archive: zipfile.ZipFile, info: zipfile.ZipInfo | None) -> Any:
    if info is None:
        raise _Rejected(FailureCode.MANIFEST_INVALID, f"the package has no {MANIFEST}")
    if info.file_size > MAX_MANIFEST_BYTES:
        message = f"{MANIFEST} is larger than {MAX_MANIFEST_BYTES} bytes"
        raise _Rejected(FailureCode.MANIFEST_INVALID, message)
    with _reading(info), archive.open(info) as entry:
        data = entry.read()
    raw, unreadable = read_document(data)
    if unreadable is not None:
        message = f"{MANIFEST} is not JSON that can be read: {unreadable.message_en}"
        raise _Rejected(FailureCode.MANIFEST_INVALID, message)
    return raw


def _listed_materials(
    raw: Any, entries: dict[str, zipfile.ZipInfo]
) -> list[tuple[MaterialRef, zipfile.ZipInfo]]:
    """The manifest's materials the archive carries, each with its entry.

    A material that does not validate is left to intake's one-time notice, as is one the
    archive lacks (unless it was uploaded before); an entry the manifest does not list
    refuses the package.
    """
    listed = raw.get("materials") if isinstance(raw, dict) else None
    candidates: list[Any] = listed if isinstance(listed, list) else []
    names = {item.get("file_name") for item in candidates if isinstance(item, dict)}
    unlisted = sorted(entries.keys() - names)
    if unlisted:
        message = f"entry {unlisted[0]!r} is not a material of the manifest"
        raise _Rejected(FailureCode.ARCHIVE_UNSAFE, message)
    materials: list[tuple[MaterialRef, zipfile.ZipInfo]] = []
    for candidate in candidates:
        try:
            ref = MaterialRef.model_validate(candidate)
        except ValidationError:
            continue
        info = entries.get(ref.file_name)
        if info is None:
            continue
        if info.file_size != ref.size:
            message = f"material {ref.file_name!r} is {info.file_size} bytes, not {ref.size}"
            raise _Rejected(FailureCode.MATERIAL_REJECTED, message)
        materials.append((ref, info))
    return materials


def _stage(
    archive: zipfile.ZipFile, info: zipfile.ZipInfo, ref: MaterialRef, staged: MaterialStore
) -> None:
    try:
        upload = staged.upload(ref.sha256, ref.media_type)
        with _reading(info), archive.open(info) as entry:
            _upload(iter(partial(entry.read, _CHUNK), b""), upload)
    except MaterialRejected as error:
        message = f"material {ref.file_name!r}: {error}"
        raise _Rejected(FailureCode.MATERIAL_REJECTED, message) from None


@contextmanager
def _reading(info: zipfile.ZipInfo) -> Iterator[None]:
    """Damage found while decompressing an entry refuses the package."""
    try:
        yield
    except _CORRUPT as error:
        message = f"entry {info.filename!r} cannot be read: {error}"
        raise _Rejected(FailureCode.ARCHIVE_INVALID, message) from None


def _upload(chunks: Iterable[bytes], upload: MaterialUpload) -> None:
    try:
        for chunk in chunks:
            upload.write(chunk)
    except BaseException:
        upload.abort()
        raise
    upload.commit()


def move_into(package: Path, directory: Path) -> Path:
    """Move a file handled from the inbox into `directory` (processed/ or failed/)."""
    target = directory / package.name
    try:
        os.replace(package, target)
    except FileNotFoundError:  # another watcher finished it first
        log.info("filedrop.package_moved_elsewhere", package=package.name)
    return target
