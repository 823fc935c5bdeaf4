"""The certificate library over HTTP/JSON (the simulator's API, and the shape of the
provincial 电子证照 exchange):

| call | request | answer |
|---|---|---|
| lookup | `GET /v1/licences/lookup?type_code=&number=` | 200 `LicenceRecord`, 404 none |
| held_by | `GET /v1/licences?holder_id=&type_code=` | 200 `[LicenceRecord]` |
| download | `GET /v1/licences/file?type_code=&number=` | 200 the file's bytes |

Any other status, an unreadable answer, a timeout or a refused connection is
`CertificateLibraryUnavailable`; a file larger than a material may be is too.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import httpx
from pydantic import TypeAdapter, ValidationError

from adapters.certificates.base import CertificateLibrary
from contracts.application import MAX_MATERIAL_BYTES
from contracts.errors import CertificateLibraryUnavailable
from contracts.licences import LicenceRecord

_RECORDS = TypeAdapter(list[LicenceRecord])
_T = TypeVar("_T")


class HttpCertificateLibrary(CertificateLibrary):
    def __init__(self, url: str, *, timeout: float = 3.0, concurrency: int = 8) -> None:
        super().__init__(url, timeout=timeout, concurrency=concurrency)
        # One pooled client, as many connections as the pool has threads.
        self._client = httpx.Client(
            base_url=url,
            timeout=httpx.Timeout(timeout),
            limits=httpx.Limits(max_connections=concurrency),
        )

    def lookup(self, type_code: str, number: str) -> LicenceRecord | None:
        response = self._get("/v1/licences/lookup", type_code=type_code, number=number)
        if response.status_code == 404:
            return None
        return self._read(lambda: LicenceRecord.model_validate_json(response.content))

    def held_by(self, holder_id: str, type_code: str) -> list[LicenceRecord]:
        response = self._get("/v1/licences", holder_id=holder_id, type_code=type_code)
        return self._read(lambda: _RECORDS.validate_json(response.content))

    def download(self, record: LicenceRecord) -> bytes:
        response = self._get("/v1/licences/file", type_code=record.type_code, number=record.number)
        if len(response.content) > MAX_MATERIAL_BYTES:
            raise CertificateLibraryUnavailable(f"the file of {record.number} is too large")
        return response.content

    def _get(self, path: str, **params: str) -> httpx.Response:
        try:
            response = self._client.get(path, params=params)
        except httpx.HTTPError as error:
            raise CertificateLibraryUnavailable(f"{self.url}{path}: {error!r}") from error
        if response.status_code not in (200, 404) or (
            response.status_code == 404 and path != "/v1/licences/lookup"
        ):
            raise CertificateLibraryUnavailable(f"{self.url}{path}: HTTP {response.status_code}")
        return response

    def _read(self, parse: Callable[[], _T]) -> _T:
        try:
            return parse()
        except ValidationError as error:
            raise CertificateLibraryUnavailable(f"{self.url}: unreadable answer") from error

    def close(self) -> None:
        super().close()
        self._client.close()
