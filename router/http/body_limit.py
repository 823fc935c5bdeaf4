"""A request body over the limit is refused with 413 before it is read whole.

A declared Content-Length over the limit is refused before a byte is read; a body sent
in chunks is counted as it arrives and refused the moment it passes the limit. Material
uploads stream to the store under their own cap (MAX_MATERIAL_BYTES) and are left alone.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.types import Message, Receive, Scope

_STREAMED = "/v1/materials/"


def limited(scope: Scope, receive: Receive, max_bytes: int) -> Receive | Response:
    """`receive` counting an HTTP request's body against `max_bytes` (itself for a
    material upload), or the 413 answering a body declared larger."""
    if scope["path"].startswith(_STREAMED):
        return receive
    declared = dict(scope["headers"]).get(b"content-length")
    if declared is not None and declared.isdigit() and int(declared) > max_bytes:
        return JSONResponse({"detail": _too_large(max_bytes).detail}, status_code=413)
    received = 0

    async def counting() -> Message:
        nonlocal received
        message = await receive()
        received += len(message.get("body", b""))
        if received > max_bytes:
            raise _too_large(max_bytes)
        return message

    return counting


def _too_large(max_bytes: int) -> HTTPException:
    return HTTPException(status_code=413, detail=f"the body is larger than {max_bytes} bytes")
