"""What a handler works with: the dispatch's idempotency key, pooled clients, the
material store, a logger.

Clients are built once per adapter process (never per call): one httpx client, and one
zeep client per shipped WSDL. zeep is hardened: DTDs, entities and external references
are forbidden, huge trees are off, every operation has a timeout, and no answer is read
past a size cap (`adapters.answer_limit`). Materials travel
by reference; the handler reads their bytes, and keeps the files a department issues,
through the same store the router uses (`runtime.storage`).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import httpx
import structlog

from adapters.answer_limit import MAX_ANSWER_BYTES, CappedTransport
from adapters.errors import classify, describe
from contracts.application import MaterialRef
from contracts.errors import Action, ConfigurationError, RetryableError
from contracts.messages import OutcomeResult
from runtime.storage import MaterialStore

T = TypeVar("T")


class Reporter(Protocol):
    def __call__(self, result: OutcomeResult) -> Awaitable[None]: ...


class DepartmentClients:
    """The pooled clients of one adapter process, closed when the adapter stops."""

    def __init__(
        self,
        endpoint: str | None,
        timeout_seconds: float,
        max_connections: int,
        materials: MaterialStore | None = None,
        max_answer_bytes: int = MAX_ANSWER_BYTES,
    ) -> None:
        self.endpoint = endpoint
        self._materials = materials
        self._timeout = httpx.Timeout(timeout_seconds)
        self._max_connections = max_connections
        self._max_answer_bytes = max_answer_bytes
        self._http: httpx.AsyncClient | None = None
        self._soap: dict[tuple[Path, str | None], Any] = {}

    @property
    def http(self) -> httpx.AsyncClient:
        """The pooled httpx client, made on first use: its TLS context (the CA bundle
        loaded, about 3 MiB) is not held by an adapter that never calls over HTTP (a
        manual desk, a test double)."""
        if self._http is None:
            transport = httpx.AsyncHTTPTransport(
                limits=httpx.Limits(max_connections=self._max_connections)
            )
            self._http = httpx.AsyncClient(
                base_url=self.endpoint or "",
                timeout=self._timeout,
                transport=CappedTransport(transport, self._max_answer_bytes),
            )
        return self._http

    def soap(self, wsdl: Path, binding: str | None = None) -> Any:
        """The service proxy of a shipped WSDL, pointed at this adapter's endpoint."""
        key = (wsdl, binding)
        if key not in self._soap:
            if not wsdl.is_file():
                raise FileNotFoundError(f"WSDL {wsdl} is not shipped with the adapter")
            # zeep is imported by the adapters that speak SOAP, not by every adapter process.
            import zeep
            from zeep.proxy import AsyncServiceProxy
            from zeep.transports import AsyncTransport

            hardened = zeep.Settings(
                strict=True,
                xml_huge_tree=False,
                forbid_dtd=True,
                forbid_entities=True,
                forbid_external=True,
            )
            transport = AsyncTransport(
                client=self.http, operation_timeout=self._timeout.read or None
            )
            client = zeep.AsyncClient(str(wsdl), transport=transport, settings=hardened)
            if binding is not None and self.endpoint:
                # Not client.create_service: on an AsyncClient it returns a synchronous
                # proxy whose calls are never awaited (python-zeep #1168).
                self._soap[key] = AsyncServiceProxy(
                    client, client.wsdl.bindings[binding], address=self.endpoint
                )
            else:
                self._soap[key] = client.service
        return self._soap[key]

    @property
    def materials(self) -> MaterialStore:
        if self._materials is None:
            raise ConfigurationError(
                "this adapter process has no material store: run it with the router's "
                "LIANBAN_MATERIALS_URL (or LIANBAN_MATERIALS_DIR), or give AdapterRunner one"
            )
        return self._materials

    async def aclose(self) -> None:
        if self._http is not None:
            await self._http.aclose()


@dataclass
class AdapterContext:
    """Handed to `Adapter.handle` with every dispatch."""

    idempotency_key: str
    """Send it with every filing: the department must not file twice under it."""
    delivery: int
    """1 for the first delivery of this dispatch, more after a redelivery."""
    report: Reporter
    """Send an interim outcome (e.g. accepted) before `handle` returns the final one."""
    clients: DepartmentClients
    log: Any = field(default_factory=lambda: structlog.get_logger("adapter"))

    @property
    def http(self) -> httpx.AsyncClient:
        """The adapter's pooled httpx client, based at its endpoint."""
        return self.clients.http

    def soap(self, wsdl: Path, binding: str | None = None) -> Any:
        """The zeep service proxy for a WSDL shipped in the adapter package."""
        return self.clients.soap(wsdl, binding)

    async def fetch_material(self, ref: MaterialRef) -> bytes:
        """The bytes of a material the dispatch references, checked against the
        reference's size and SHA-256; MaterialMissing or MaterialCorrupted (the item
        fails) otherwise."""
        return await asyncio.to_thread(self.clients.materials.fetch, ref)

    async def stream_material(self, ref: MaterialRef) -> AsyncIterator[bytes]:
        """A material's bytes in chunks, for a streamed request body (`content=`): the
        adapter never holds the file whole. Opened now, so MaterialMissing is raised
        before any call; MaterialCorrupted ends the stream (and the request) when the
        bytes do not match the reference."""
        chunks = await asyncio.to_thread(self.clients.materials.stream_checked, ref)
        return _read_off_the_loop(chunks)

    async def store_certificate(
        self, data: bytes, media_type: str, file_name: str, name: str
    ) -> MaterialRef:
        """Keep a file the department issued (checked as an upload is: type by its magic
        bytes, size cap); put the reference in `Certificate.file`."""
        store = self.clients.materials
        return await asyncio.to_thread(
            store.keep, data, media_type=media_type, file_name=file_name, name=name
        )

    async def wait_for_decision(
        self,
        check: Callable[[], Awaitable[T | None]],
        *,
        every_seconds: float = 1.0,
        within_seconds: float = 60.0,
        still_pending: Callable[[], T] | None = None,
    ) -> T:
        """Poll a department that may decide quickly: call `check` until it returns a result.

        A poll that fails transiently is a missed poll, not a reason to file again. Out of
        time, an adapter that declares `decisions` returns `still_pending()` (a `Pending`:
        the router polls on from there, for days if need be); without it, running out of
        time is transient (the filing stands; a later attempt polls it again under the
        same idempotency key), so it raises RetryableError.
        """
        deadline = time.monotonic() + within_seconds
        while True:
            try:
                result = await check()
            except Exception as error:
                if classify(error) is not Action.RETRY:
                    raise
                self.log.warning("department.poll_failed", error=describe(error))
                result = None
            if result is not None:
                return result
            if time.monotonic() >= deadline:
                if still_pending is not None:
                    return still_pending()
                raise RetryableError(f"no decision within {within_seconds:g} s")
            await asyncio.sleep(every_seconds)


async def _read_off_the_loop(chunks: Iterator[bytes]) -> AsyncIterator[bytes]:
    """`chunks` as an async iterator, each read in a worker thread (file or S3 reads
    block)."""
    while (chunk := await asyncio.to_thread(next, chunks, None)) is not None:
        yield chunk
