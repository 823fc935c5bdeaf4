"""An outage of Lianban's own database is the platform's cue to retry, not an error of
its request: any route that meets one answers 503 with `Retry-After`, whatever it was
doing (nothing was committed), instead of a 500."""

from __future__ import annotations

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import InterfaceError, OperationalError

RETRY_AFTER_SECONDS = 5


async def _unavailable(request: Request, error: Exception) -> JSONResponse:
    return JSONResponse(
        {"detail": "the database is unavailable; nothing was recorded, retry later"},
        status_code=503,
        headers={"Retry-After": str(RETRY_AFTER_SECONDS)},
    )


def answer_outages_with_retry_after(app: FastAPI) -> None:
    # Connection-level failures only: other database errors are defects and stay 500.
    for connection_trouble in (OperationalError, InterfaceError):
        app.add_exception_handler(connection_trouble, _unavailable)
