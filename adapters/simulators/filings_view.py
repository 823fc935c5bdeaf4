"""What a running simulator has filed, listable from outside: `GET /_simulator/filings`
(`lianban simulator` serves it), so a walk-through can check "filed once" with curl."""

from __future__ import annotations

from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount, Route

from adapters.simulators.base import DepartmentState, Filing
from contracts.personal_data import mask_text

FILINGS_PATH = "/_simulator/filings"


def filing_summary(filing: Filing) -> dict[str, Any]:
    """One filing as listed: what it is and where it stands, the subject masked."""
    return {
        "receipt_no": filing.receipt_no,
        "idempotency_key": filing.idempotency_key,
        "service": filing.service,
        "subject": mask_text(filing.subject),
        "stage": filing.stage().value,
        "supplements": len(filing.supplements),
    }


def with_filings_listed(app: Any, state: DepartmentState) -> Starlette:
    """`app` as it is, plus the list of `state`'s filings at FILINGS_PATH."""

    async def filings(request: Request) -> JSONResponse:
        listed = [filing_summary(filing) for filing in list(state.filings.values())]
        return JSONResponse({"department": state.code, "filings": listed})

    return Starlette(routes=[Route(FILINGS_PATH, filings), Mount("/", app=app)])
