"""A cap on how much a department may answer: an httpx transport that stops reading an
answer once it passes the cap, whatever its Content-Length says (or does not say).

Every SOAP and REST call of an adapter goes through it (`DepartmentClients`), so a
department system that answers without end — by fault or by attack — fails the item
instead of filling the adapter's memory. Parsers never see more than the cap.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx

from contracts.application import MAX_MATERIAL_BYTES
from contracts.errors import AnswerTooLarge

# The largest answer is a certificate file sent inline (base64 grows it by a third).
MAX_ANSWER_BYTES = 2 * MAX_MATERIAL_BYTES


class _CappedStream(httpx.AsyncByteStream):
    def __init__(self, stream: httpx.AsyncByteStream, url: httpx.URL, max_bytes: int) -> None:
        self._stream = stream
        self._url = url
        self._max_bytes = max_bytes

    async def __aiter__(self) -> AsyncIterator[bytes]:
        received = 0
        async for chunk in self._stream:
            received += len(chunk)
            if received > self._max_bytes:
                raise AnswerTooLarge(
                    f"{self._url.host} answered more than {self._max_bytes} bytes; refused"
                )
            yield chunk

    async def aclose(self) -> None:
        await self._stream.aclose()


class CappedTransport(httpx.AsyncBaseTransport):
    """Wraps a transport so that no answer's body is read past `max_bytes`."""

    def __init__(self, inner: httpx.AsyncBaseTransport, max_bytes: int = MAX_ANSWER_BYTES) -> None:
        self._inner = inner
        self._max_bytes = max_bytes

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        response = await self._inner.handle_async_request(request)
        stream = response.stream
        assert isinstance(stream, httpx.AsyncByteStream)
        response.stream = _CappedStream(stream, request.url, self._max_bytes)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()
