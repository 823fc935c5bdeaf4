"""Where departments that call back (`decisions = CalledBack()`) push their decisions.

    POST /v1/decisions/<department>
    X-Lianban-Signature: sha256=<hex HMAC-SHA256 of the body, keyed with the shared secret>

Served by the adapter process (LIANBAN_DECISIONS_PORT, secret LIANBAN_DECISIONS_SECRET).
A push with a wrong or missing signature is refused (401) before its body is read as a
decision; a good one is read by the department's adapter (`read_decision`), published as
the department's signed outcome, and answered 202 only once the broker has confirmed it,
so a department that got its 202 may forget the push.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import threading
from collections.abc import Mapping

from fastapi import FastAPI, HTTPException, Request, Response
from pydantic import ValidationError

from adapters.base import Adapter
from adapters.outcomes import signed_outcome
from runtime.messaging import Outgoing, Publisher
from runtime.messaging.signing import Keyring

SIGNATURE_HEADER = "X-Lianban-Signature"


def push_signature(secret: str, body: bytes) -> str:
    """The header value a department sends with `body`."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def decision_app(
    adapters: Mapping[str, Adapter], keyring: Keyring, publisher: Publisher, secret: str
) -> FastAPI:
    app = FastAPI(title="Lianban decision endpoint", openapi_url=None, docs_url=None)
    publishing = threading.Lock()  # one publisher, one channel: one push at a time

    def publish(outgoing: Outgoing) -> None:
        with publishing:
            publisher.publish(outgoing)

    @app.post("/v1/decisions/{department}", status_code=202)
    async def receive(department: str, request: Request) -> Response:
        body = await request.body()
        presented = request.headers.get(SIGNATURE_HEADER, "")
        if not hmac.compare_digest(presented.encode(), push_signature(secret, body).encode()):
            raise HTTPException(401, "bad or missing signature")
        adapter = adapters.get(department)
        if adapter is None:
            raise HTTPException(404, f"no adapter here takes decisions for {department}")
        try:
            outcome = adapter.read_decision(body).outcome(department, body)
        except ValidationError as error:
            raise HTTPException(422, f"not a decision: {error}"[:500]) from error
        await asyncio.to_thread(publish, signed_outcome(keyring, outcome, {}))
        return Response(status_code=202)

    return app
