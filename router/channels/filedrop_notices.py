"""Exports each issued 受理 / 不予受理 notice, with its PDF, to the filedrop outbox:

    outbox/<project_no>/<sha256>                           the notice's PDF (first; left
                                                           out if the store lost it)
    outbox/<project_no>.<item>.<decision>.notice.json      the AcceptanceNotice, as pushed

Each notice row is claimed (SKIP LOCKED, so several relays may run), written out, and
marked exported in the same transaction. A crash after the files and before the commit
writes them again, under the same names with the same content: at least once, never
lost, and a repeat overwrites rather than adds.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime

import structlog
from sqlalchemy import select

from contracts.catalog import Catalog
from contracts.errors import MaterialCorrupted, MaterialMissing
from contracts.messages import AcceptanceNotice
from router.channels.filedrop import Layout, write_atomically
from router.domain.notices import notice_message
from router.store import BundleRow, Database, NoticeRow
from runtime.storage import MaterialStore

log = structlog.get_logger(__name__)


class NoticeExporter:
    def __init__(
        self,
        layout: Layout,
        database: Database,
        materials: MaterialStore,
        catalog: Catalog,
        *,
        poll_seconds: float = 1.0,
        batch_size: int = 50,
    ) -> None:
        self._layout = layout
        self._database = database
        self._materials = materials
        self._catalog = catalog
        self._poll_seconds = poll_seconds
        self._batch_size = batch_size
        layout.create()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                exported = self.export_once()
            except Exception as error:  # the database, store or directory is away: retry
                log.warning("filedrop.notice_export_failed", error=repr(error))
                exported = 0
            if exported < self._batch_size:
                stop.wait(self._poll_seconds)

    def export_once(self) -> int:
        """Export a batch of issued notices not exported yet; returns how many."""
        with self._database.transaction() as session:
            rows = session.scalars(
                select(NoticeRow)
                .where(NoticeRow.issued_at.is_not(None), NoticeRow.exported_at.is_(None))
                .order_by(NoticeRow.issued_at)
                .limit(self._batch_size)
                .with_for_update(skip_locked=True)
            ).all()
            for row in rows:
                notice = notice_message(
                    row, session.get_one(BundleRow, row.bundle_id), self._catalog
                )
                self._copy(notice)
                name = f"{notice.project_no}.{notice.item}.{notice.decision}.notice.json"
                write_atomically(
                    self._layout.outbox / name, notice.model_dump_json(indent=2).encode()
                )
                row.exported_at = datetime.now(UTC)
                log.info("filedrop.notice_exported", bundle_id=str(row.bundle_id), item=row.item)
            return len(rows)

    def _copy(self, notice: AcceptanceNotice) -> None:
        """The PDF beside the notice; one the store lost (or holds damaged) is logged and
        left out, as a certificate's file is: it must not hold up every later notice."""
        try:
            pdf = self._materials.fetch(notice.document)
        except (MaterialMissing, MaterialCorrupted) as error:
            log.error("filedrop.notice_document_unavailable", error=str(error))
            return
        folder = self._layout.outbox / notice.project_no
        folder.mkdir(exist_ok=True)
        write_atomically(folder / notice.document.sha256, pdf)
