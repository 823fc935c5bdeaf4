"""A certificate library (电子证照库) on loopback, for the demo, development and tests: it
holds licences with their files and answers the HTTP/JSON API that
`adapters.certificates.http` speaks. Tests issue licences into its state (`issue`) and
count what it was asked (`requests`).
"""

from __future__ import annotations

import asyncio
import threading
from collections import Counter
from dataclasses import dataclass, field
from datetime import date
from typing import Annotated

from fastapi import FastAPI, HTTPException, Query, Response

from contracts.licences import LICENCE_TYPES, LicenceRecord, LicenceStatus
from contracts.samples import minimal_pdf
from runtime.serving import ThreadedServer


@dataclass
class LibraryState:
    """The licences the library holds, by (type, number), with their files."""

    licences: dict[tuple[str, str], tuple[LicenceRecord, bytes]] = field(default_factory=dict)
    requests: Counter[str] = field(default_factory=Counter)
    delay_seconds: float = 0.0  # how long each answer takes: a slow library
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def issue(
        self,
        type_code: str,
        number: str,
        holder_id: str,
        holder_name: str,
        *,
        valid_until: date | None = None,
        status: LicenceStatus = LicenceStatus.VALID,
        issuer_name: str = "郑州市市场监督管理局",
    ) -> LicenceRecord:
        """Hold a licence, with a PDF of its own as its file."""
        record = LicenceRecord(
            type_code=type_code,
            number=number,
            name_zh=LICENCE_TYPES[type_code],
            holder_id=holder_id,
            holder_name=holder_name,
            issuer_name=issuer_name,
            issue_date=date(2020, 1, 1),
            valid_until=valid_until,
            status=status,
            media_type="application/pdf",
            file_name=f"{type_code}-{number}.pdf",
        )
        with self._lock:
            self.licences[(type_code, number)] = (record, minimal_pdf(f"{type_code} {number}"))
        return record

    def find(self, type_code: str, number: str) -> tuple[LicenceRecord, bytes] | None:
        with self._lock:
            return self.licences.get((type_code, number))

    def of_holder(self, holder_id: str, type_code: str) -> list[LicenceRecord]:
        with self._lock:
            return [
                record
                for record, _file in self.licences.values()
                if record.holder_id == holder_id and record.type_code == type_code
            ]

    async def answering(self, call: str) -> None:
        """Count the call, and take `delay_seconds` over it."""
        with self._lock:
            self.requests[call] += 1
        await asyncio.sleep(self.delay_seconds)


TypeCode = Annotated[str, Query(min_length=1, max_length=64)]
Text = Annotated[str, Query(min_length=1, max_length=64)]


def create_app(state: LibraryState) -> FastAPI:
    app = FastAPI(title="电子证照库 (simulated)")

    @app.get("/v1/licences/lookup", response_model=LicenceRecord)
    async def lookup(type_code: TypeCode, number: Text) -> LicenceRecord:
        await state.answering("lookup")
        return _held(state, type_code, number)[0]

    @app.get("/v1/licences", response_model=list[LicenceRecord])
    async def held_by(holder_id: Text, type_code: TypeCode) -> list[LicenceRecord]:
        await state.answering("held_by")
        return state.of_holder(holder_id, type_code)

    @app.get("/v1/licences/file")
    async def download(type_code: TypeCode, number: Text) -> Response:
        await state.answering("download")
        record, content = _held(state, type_code, number)
        return Response(content, media_type=record.media_type)

    return app


def _held(state: LibraryState, type_code: str, number: str) -> tuple[LicenceRecord, bytes]:
    found = state.find(type_code, number)
    if found is None:
        raise HTTPException(status_code=404, detail=f"no {type_code} numbered {number}")
    return found


class CertificateLibraryServer:
    """The simulated library on a free loopback port; use as a context manager."""

    def __init__(self, state: LibraryState | None = None) -> None:
        self.state = state or LibraryState()
        self._server = ThreadedServer(create_app(self.state))

    @property
    def url(self) -> str:
        return self._server.url

    def __enter__(self) -> CertificateLibraryServer:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()
