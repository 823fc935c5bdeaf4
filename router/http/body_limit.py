"""A request body over the limit is refused with 413 before it is read whole.

A declared Content-Length over the limit is refused before a byte is read; a body sent
in chunks is counted as it arrives and refused the moment it passes the limit. Material
uploads stream to the store under their own cap (MAX_MATERIAL_BYTES) and are left alone.
"""

from __future__ import annotations

from fastapi import HTTPException
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from contracts.application import DEFAULT_MAX_BODY_BYTES

_STREAMED = "/v1/materials/"


class BodyLimit:
    def __init__(self, app: ASGIApp, max_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self._app = app
        self._max_bytes = max_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"].startswith(_STREAMED):
            await self._app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > self._max_bytes:
            refusal = JSONResponse({"detail": self._too_large().detail}, status_code=413)
            await refusal(scope, receive, send)
            return
        received = 0

        async def counting() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self._max_bytes:
                raise self._too_large()
            return message

        await self._app(scope, counting, send)

    def _too_large(self) -> HTTPException:
        return HTTPException(
            status_code=413, detail=f"the body is larger than {self._max_bytes} bytes"
        )
