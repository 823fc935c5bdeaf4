"""Exports each bundle's one reply, with its certificate files, to the filedrop outbox.

    outbox/<project_no>.reply.json      the BundleReply, as `GET /v1/bundles/{id}/reply` gives it
    outbox/<project_no>.reply.v<n>.json version n (2, 3 …) of it, correcting version n - 1
    outbox/<project_no>/<sha256>        each certificate file the store holds; the reply
                                        names its `file_name` and `media_type`

Every file is written atomically, certificates before their reply, so a reply never
appears before its files.

What was exported is recorded in `.export-cursor.json` beside the four directories: not
in the database (that would take a migration) and not as the files themselves (the
platform takes them away). The cursor holds the watermark, the newest `created_at`
exported, and the replies exported within OVERLAP before it; it is rewritten atomically
after each reply. Why that is safe:

- A crash after a reply's file and before the cursor exports that reply again on restart,
  under the same name with the same content: at least once, never lost.
- `created_at` is stamped before its transaction commits, so a reply may become visible
  after one stamped later. Each pass looks OVERLAP back from the watermark, which finds it
  (unless it committed more than OVERLAP late); the replies in that window that were
  exported already are in the cursor and are skipped.
- One exporter works at a time (an advisory lock on `.export.lock`), so several relays
  may run with the same directory.
"""

from __future__ import annotations

import fcntl
import threading
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path

import structlog
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import and_, or_, select

from contracts.application import MaterialRef
from contracts.errors import MaterialCorrupted, MaterialMissing
from router.channels.filedrop import Layout, write_atomically
from router.domain.views import bundle_reply
from router.store import Database, ReplyRow
from runtime.storage import MaterialStore

log = structlog.get_logger(__name__)

OVERLAP = timedelta(minutes=5)
_PAGE = 200


class _Cursor(BaseModel):
    watermark: AwareDatetime | None = None
    exported: dict[str, AwareDatetime] = Field(default_factory=dict)
    """By `_key`: a reply's first version under its bundle id alone, as cursors written
    before replies had versions name it."""


def _key(bundle_id: uuid.UUID, version: int) -> str:
    return str(bundle_id) if version == 1 else f"{bundle_id}.v{version}"


class ReplyExporter:
    """Polls the replies table and writes each new reply (and its certificates) out."""

    def __init__(
        self,
        layout: Layout,
        database: Database,
        materials: MaterialStore,
        *,
        poll_seconds: float = 2.0,
    ) -> None:
        self._layout = layout
        self._database = database
        self._materials = materials
        self._poll_seconds = poll_seconds
        self._cursor_file = layout.root / ".export-cursor.json"
        self._lock_file = layout.root / ".export.lock"
        layout.create()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.export_once()
            except Exception as error:  # the database, store or directory is away: retry
                log.warning("filedrop.export_failed", error=repr(error))
            stop.wait(self._poll_seconds)

    def export_once(self) -> int:
        """Export every reply not exported yet, oldest first; returns how many.

        A failure stops the pass at that reply, so the watermark never passes a reply
        that is still to be exported.
        """
        with _exclusive(self._lock_file) as held:
            if not held:
                return 0
            cursor = self._load()
            count = 0
            for bundle_id, version, created_at in self._pending(cursor):
                self._export(bundle_id, version)
                cursor.exported[_key(bundle_id, version)] = created_at
                cursor.watermark = max(created_at, cursor.watermark or created_at)
                self._save(cursor)
                count += 1
            return count

    def _pending(self, cursor: _Cursor) -> Iterator[tuple[uuid.UUID, int, datetime]]:
        """Reply versions from OVERLAP before the watermark on, not exported yet, page by
        page."""
        query = (
            select(ReplyRow.bundle_id, ReplyRow.version, ReplyRow.created_at)
            .order_by(ReplyRow.created_at, ReplyRow.bundle_id, ReplyRow.version)
            .limit(_PAGE)
        )
        if cursor.watermark is not None:
            query = query.where(ReplyRow.created_at > cursor.watermark - OVERLAP)
        page_query = query
        while True:
            with self._database.transaction() as session:
                page = session.execute(page_query).all()
            for bundle_id, version, created_at in page:
                if _key(bundle_id, version) not in cursor.exported:
                    yield bundle_id, version, created_at
            if len(page) < _PAGE:
                return
            last_bundle, last_version, last_at = page[-1]
            # Spelled out rather than as a row-value comparison: SQLAlchemy 2.1 binds both
            # sides of `tuple_(…) > row` with the first column's type.
            page_query = query.where(
                or_(
                    ReplyRow.created_at > last_at,
                    and_(ReplyRow.created_at == last_at, ReplyRow.bundle_id > last_bundle),
                    and_(
                        ReplyRow.created_at == last_at,
                        ReplyRow.bundle_id == last_bundle,
                        ReplyRow.version > last_version,
                    ),
                )
            )

    def _export(self, bundle_id: uuid.UUID, version: int) -> None:
        with self._database.transaction() as session:
            reply = bundle_reply(session, bundle_id, version)
        assert reply is not None  # listed a moment ago, and replies are never deleted
        for result in reply.items:
            for certificate in result.certificates:
                if certificate.file is not None:
                    self._copy(reply.project_no, certificate.file)
        suffix = "" if version == 1 else f".v{version}"
        path = self._layout.outbox / f"{reply.project_no}.reply{suffix}.json"
        write_atomically(path, reply.model_dump_json(indent=2).encode())
        log.info("filedrop.reply_exported", bundle_id=str(bundle_id), version=version)

    def _copy(self, project_no: str, file: MaterialRef) -> None:
        try:
            data = self._materials.fetch(file)
        except MaterialMissing:
            return  # a certificate issued without its file in the store: the reply names it
        except MaterialCorrupted as error:  # would not mend on a retry: export the rest
            log.error("filedrop.certificate_corrupted", error=str(error))
            return
        folder = self._layout.outbox / project_no
        folder.mkdir(exist_ok=True)
        write_atomically(folder / file.sha256, data)

    def _load(self) -> _Cursor:
        try:
            return _Cursor.model_validate_json(self._cursor_file.read_bytes())
        except FileNotFoundError:
            return _Cursor()

    def _save(self, cursor: _Cursor) -> None:
        if cursor.watermark is not None:
            oldest = cursor.watermark - OVERLAP
            cursor.exported = {k: at for k, at in cursor.exported.items() if at > oldest}
        write_atomically(self._cursor_file, cursor.model_dump_json().encode())


@contextmanager
def _exclusive(path: Path) -> Iterator[bool]:
    """Whether this process holds the advisory lock on `path`, for the block's duration."""
    with path.open("a") as file:
        try:
            fcntl.flock(file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            held = True
        except BlockingIOError:
            held = False
        yield held
