"""Headers every answer carries, the ops page's and the API's alike: the page loads only
its own files, cannot be framed (clickjacking a replay button), and no answer is
content-sniffed into something runnable."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import Message, Send

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; "
        "frame-ancestors 'none'"
    ),
    "X-Frame-Options": "DENY",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}
_ENCODED = [
    (name.lower().encode("latin-1"), value.encode("latin-1"))
    for name, value in SECURITY_HEADERS.items()
]
_NAMES = frozenset(name for name, _ in _ENCODED)


def with_security_headers(send: Send) -> Send:
    """`send`, adding the headers to each answer as it starts."""

    async def sending(message: Message) -> None:
        if message["type"] == "http.response.start":
            headers = message["headers"]
            if any(name in _NAMES for name, _ in headers):
                # A route set one itself (a download's nosniff): replaced, as Starlette does.
                MutableHeaders(scope=message).update(SECURITY_HEADERS)
            else:
                # Appended already encoded: MutableHeaders encodes and searches per header.
                message["headers"] = [*headers, *_ENCODED]
        await send(message)

    return sending
