"""Exports each bundle's one reply, and its per-item notices (分别领取), with their
certificate files, to the filedrop outbox.

    outbox/<project_no>.reply.json          the BundleReply, as `GET /v1/bundles/{id}/reply`
                                            gives it
    outbox/<project_no>.reply.v<n>.json     version n (2, 3 …) of it, correcting version n - 1
    outbox/<project_no>.<item>.item_notice.json  an ItemNotice, when the applicant chose per-item
                                            delivery: the item's result as it became final
    outbox/<project_no>/<sha256>            each certificate file the store holds; the reply
                                            or notice names its `file_name` and `media_type`

Every file is written atomically, certificates before their reply or notice, so neither
appears before its files.

What was exported is recorded beside the four directories, one cursor per feed
(`.export-cursor.json` for replies, `.notice-cursor.json` for notices): not as the files
themselves (the platform takes them away). A cursor holds the watermark, the newest
`created_at` exported, and the documents exported within OVERLAP before it; it is
rewritten atomically after each document. Why that is safe:

- A crash after a document's file and before the cursor exports it again on restart,
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
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import structlog
from pydantic import AwareDatetime, BaseModel, Field
from sqlalchemy import and_, or_, select

from contracts.application import MaterialRef
from contracts.errors import MaterialCorrupted, MaterialMissing
from contracts.messages import ItemNotice, ItemResult
from router.channels.filedrop import Layout, write_atomically
from router.domain.views import bundle_reply
from router.store import Database, ItemNoticeRow, ReplyRow
from runtime.storage import MaterialStore

log = structlog.get_logger(__name__)

OVERLAP = timedelta(minutes=5)
_PAGE = 200


class _Cursor(BaseModel):
    watermark: AwareDatetime | None = None
    exported: dict[str, AwareDatetime] = Field(default_factory=dict)
    """By the feed's `name` of each document exported within OVERLAP of the watermark."""


@dataclass(frozen=True)
class _Feed:
    """One kind of document, exported in `created_at` order; `keys` break ties, and
    `name` spells a document's keys in the cursor."""

    cursor_name: str
    created_at: Any
    keys: tuple[Any, ...]
    name: Callable[..., str]


def _reply_name(bundle_id: Any, version: int) -> str:
    """A reply's first version under its bundle id alone, as cursors written before
    replies had versions name it."""
    return str(bundle_id) if version == 1 else f"{bundle_id}.v{version}"


_REPLIES = _Feed(
    ".export-cursor.json", ReplyRow.created_at, (ReplyRow.bundle_id, ReplyRow.version), _reply_name
)
_NOTICES = _Feed(".notice-cursor.json", ItemNoticeRow.created_at, (ItemNoticeRow.id,), str)


class ReplyExporter:
    """Polls the replies and notices tables and writes each new one (and its
    certificates) out."""

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
        """Export every reply and notice not exported yet, oldest first; returns how many.

        A failure stops the pass at that document, so the watermark never passes one
        that is still to be exported.
        """
        with _exclusive(self._lock_file) as held:
            if not held:
                return 0
            count = 0
            for feed in (_NOTICES, _REPLIES):
                cursor = self._load(feed)
                for keys, created_at in self._pending(feed, cursor):
                    if feed is _REPLIES:
                        self._export_reply(*keys)
                    else:
                        self._export_notice(*keys)
                    cursor.exported[feed.name(*keys)] = created_at
                    cursor.watermark = max(created_at, cursor.watermark or created_at)
                    self._save(feed, cursor)
                    count += 1
            return count

    def _pending(self, feed: _Feed, cursor: _Cursor) -> Iterator[tuple[tuple[Any, ...], datetime]]:
        """Documents from OVERLAP before the watermark on, not exported yet, page by page."""
        query = (
            select(feed.created_at, *feed.keys).order_by(feed.created_at, *feed.keys).limit(_PAGE)
        )
        if cursor.watermark is not None:
            query = query.where(feed.created_at > cursor.watermark - OVERLAP)
        page_query = query
        while True:
            with self._database.transaction() as session:
                page = session.execute(page_query).all()
            for created_at, *keys in page:
                if feed.name(*keys) not in cursor.exported:
                    yield tuple(keys), created_at
            if len(page) < _PAGE:
                return
            page_query = query.where(_after(feed, tuple(page[-1])))

    def _export_reply(self, bundle_id: Any, version: int) -> None:
        with self._database.transaction() as session:
            reply = bundle_reply(session, bundle_id, version)
        assert reply is not None  # listed a moment ago, and replies are never deleted
        self._copy_certificates(reply.project_no, reply.items)
        suffix = "" if version == 1 else f".v{version}"
        path = self._layout.outbox / f"{reply.project_no}.reply{suffix}.json"
        write_atomically(path, reply.model_dump_json(indent=2).encode())
        log.info("filedrop.reply_exported", bundle_id=str(bundle_id), version=version)

    def _export_notice(self, notice_id: Any) -> None:
        with self._database.transaction() as session:
            row = session.get_one(ItemNoticeRow, notice_id)
            notice = ItemNotice.model_validate(row.body)
        self._copy_certificates(notice.project_no, (notice.result,))
        path = self._layout.outbox / f"{notice.project_no}.{notice.result.item}.item_notice.json"
        write_atomically(path, notice.model_dump_json(indent=2).encode())
        log.info("filedrop.notice_exported", bundle_id=str(notice.bundle_id))

    def _copy_certificates(self, project_no: str, results: tuple[ItemResult, ...]) -> None:
        for result in results:
            for certificate in result.certificates:
                if certificate.file is not None:
                    self._copy(project_no, certificate.file)

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

    def _load(self, feed: _Feed) -> _Cursor:
        try:
            return _Cursor.model_validate_json((self._layout.root / feed.cursor_name).read_bytes())
        except FileNotFoundError:
            return _Cursor()

    def _save(self, feed: _Feed, cursor: _Cursor) -> None:
        if cursor.watermark is not None:
            oldest = cursor.watermark - OVERLAP
            cursor.exported = {k: at for k, at in cursor.exported.items() if at > oldest}
        write_atomically(self._layout.root / feed.cursor_name, cursor.model_dump_json().encode())


def _after(feed: _Feed, last: tuple[Any, ...]) -> Any:
    """Rows ordered after `last` (created_at, *keys). Spelled out rather than as a
    row-value comparison: SQLAlchemy 2.1 binds both sides of `tuple_(…) > row` with the
    first column's type."""
    columns = (feed.created_at, *feed.keys)
    return or_(
        *(
            and_(
                *(c == v for c, v in zip(columns[:i], last[:i], strict=True)), columns[i] > last[i]
            )
            for i in range(len(columns))
        )
    )


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
