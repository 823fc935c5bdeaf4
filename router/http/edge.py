"""Our one ASGI layer around the routes: every answer gets the security headers
(router.http.headers), every request body but a material upload the size limit
(router.http.body_limit), its own 413 refusals included.

Plain ASGI, not `@app.middleware` (which runs each request in a task group with memory
streams), and one layer for both: each layer is another call chain on every request, and
FastAPI's telemetry walks the whole stack per request.
"""

from __future__ import annotations

from starlette.responses import Response
from starlette.types import ASGIApp, Receive, Scope, Send

from contracts.application import DEFAULT_MAX_BODY_BYTES
from router.http.body_limit import limited
from router.http.headers import with_security_headers


class Edge:
    def __init__(self, app: ASGIApp, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self._app = app
        self._max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self._app(scope, receive, send)
            return
        send = with_security_headers(send)
        checked = limited(scope, receive, self._max_body_bytes)
        if isinstance(checked, Response):
            await checked(scope, receive, send)
        else:
            await self._app(scope, checked, send)
