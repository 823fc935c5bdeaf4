"""Proofs of delivery (送达凭证移交) through the front-end machine's file drop.

The issuing window or the courier's system drops `inbox/<name>.proof.json` (written under
another name and renamed when complete, like packages): a `DroppedProof`, the case number
and the proof `POST /v1/bundles/{id}/handovers/proof` takes. A recorded proof (or the
same one again) moves the file to processed/; a proof that does not fit moves it to
failed/ with `<name>.reason.json` saying why; while the database is away it waits.
"""

from __future__ import annotations

import threading
from datetime import UTC, datetime
from pathlib import Path

import structlog
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlalchemy import select

from contracts.api import DeliveryProof
from router.channels.filedrop import (
    TRANSIENT,
    FailureCode,
    Layout,
    PackageFailure,
    move_into,
    write_atomically,
)
from router.domain.handovers import record_proof
from router.store import BundleRow, Database

log = structlog.get_logger(__name__)

SUFFIX = ".proof.json"
MAX_PROOF_BYTES = 64 * 1024
FILEDROP_ACTOR = "filedrop"


class DroppedProof(BaseModel):
    """`inbox/<name>.proof.json`."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    project_no: str = Field(min_length=1, max_length=50, description="办件编号")
    proof: DeliveryProof


class ProofWatcher:
    """Polls the inbox for proof files and records each one."""

    def __init__(self, layout: Layout, database: Database, *, poll_seconds: float = 2.0) -> None:
        self._layout = layout
        self._database = database
        self._poll_seconds = poll_seconds
        layout.create()

    def run(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.scan_once()
            except TRANSIENT as error:  # the database or the directory is away: next poll
                log.warning("filedrop.proofs_deferred", error=repr(error))
            stop.wait(self._poll_seconds)

    def scan_once(self) -> list[Path]:
        """Record every proof file in the inbox; returns where each one was moved."""
        return [
            self._handle(path)
            for path in sorted(self._layout.inbox.glob(f"*{SUFFIX}"))
            if not path.name.startswith(".")
        ]

    def _handle(self, path: Path) -> Path:
        refusal = self._refusal(path)
        if refusal is None:
            log.info("filedrop.proof_recorded", file=path.name)
            return move_into(path, self._layout.processed)
        failure = PackageFailure(
            package=path.name,
            code=FailureCode.PROOF_REFUSED,
            message=refusal,
            failed_at=datetime.now(UTC),
        )
        reason = self._layout.failed / f"{path.name}.reason.json"
        write_atomically(reason, failure.model_dump_json(indent=2).encode())
        log.info("filedrop.proof_refused", file=path.name, reason=refusal)
        return move_into(path, self._layout.failed)

    def _refusal(self, path: Path) -> str | None:
        """Why the proof in `path` was not recorded; None once it is."""
        if path.is_symlink() or not path.is_file():
            return "not a regular file"
        with path.open("rb") as file:
            data = file.read(MAX_PROOF_BYTES + 1)
        if len(data) > MAX_PROOF_BYTES:
            return f"larger than {MAX_PROOF_BYTES} bytes"
        try:
            dropped = DroppedProof.model_validate_json(data)
        except ValidationError as error:
            return "; ".join(
                f"{'/'.join(map(str, problem['loc']))}: {problem['msg']}"
                for problem in error.errors(include_input=False)
            )
        with self._database.transaction() as session:
            bundle = session.scalar(
                select(BundleRow)
                .where(BundleRow.project_no == dropped.project_no)
                .with_for_update()
            )
            if bundle is None:
                return f"no bundle with case number {dropped.project_no}"
            refusal = record_proof(session, bundle, dropped.proof, FILEDROP_ACTOR)
        return None if refusal is None else refusal.value
