"""How the HTTP API refuses a request: in one shape, naming the problem, and documented.

Every invalid input is answered with a 4xx that says what is wrong. A request FastAPI
itself cannot read (a path parameter that is not a UUID, a body of the wrong shape) gets
the same one-time notice (一次告知) as an application with problems — a 422 whose
`problems` each carry a pointer, a code and messages — instead of FastAPI's own format.
The OpenAPI document says so, and declares the 401 and 403 every protected operation
may answer, and the 404 of every path that names something, so clients (and the fuzzer,
tests/test_fuzz_intake.py) know every answer.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from contracts.api import OneTimeNotice, Problem

_NOTICE_REF = {"$ref": "#/components/schemas/OneTimeNotice"}
_REFUSAL = {
    "type": "object",
    "properties": {"detail": {"type": "string"}},
    "required": ["detail"],
}
_AUTH_REFUSALS = {
    "401": "No bearer token, or one that is unknown or expired",
    "403": "The token lacks the scope this operation needs",
}


def _problem(error: dict[str, Any]) -> Problem:
    where, *path = [str(part) for part in error.get("loc", ())] or ["body"]
    message = str(error.get("msg", "invalid"))
    if where == "body":
        return Problem(
            pointer="".join(f"/{part}" for part in path),
            code=str(error.get("type", "invalid")),
            message_zh=f"请求内容有误：{message}",
            message_en=message,
        )
    name = "/".join(path)
    return Problem(
        pointer="",
        code=f"{where}_{error.get('type', 'invalid')}",
        message_zh=f"{where}参数{name}有误：{message}",
        message_en=f"{where} parameter {name}: {message}",
    )


def one_time_notice(*problems: Problem) -> JSONResponse:
    """The 422 that reports every problem at once."""
    notice = OneTimeNotice(problems=problems)
    return JSONResponse(notice.model_dump(mode="json"), status_code=422)


async def _notice_for(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    return one_time_notice(*(_problem(e) for e in error.errors()))


def answer_refusals_as_notices(app: FastAPI) -> None:
    """Answer requests FastAPI cannot validate with a one-time notice."""
    app.add_exception_handler(RequestValidationError, _notice_for)


def _refusal(description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": _REFUSAL}}}


def document_refusals(document: dict[str, Any]) -> None:
    """Every 422 is a one-time notice (or, for an upload, a refusal with a detail); an
    operation with a body may answer 400, a protected one 401 and 403, one whose path
    names something 404."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "422" in responses:
                content = responses["422"].setdefault("content", {})
                declared = content.get("application/json", {}).get("schema")
                if declared != _NOTICE_REF:  # FastAPI's own, or a refusal with a detail
                    schema = {"anyOf": [_NOTICE_REF, _REFUSAL]}
                    content["application/json"] = {"schema": schema}
            if "requestBody" in operation:
                responses.setdefault("400", _refusal("The body could not be read"))
                responses.setdefault("413", _refusal("The body is larger than the limit"))
            if any(p.get("in") == "path" for p in operation.get("parameters", [])):
                responses.setdefault("404", {"description": "Nothing is found at this path"})
            if operation.get("security"):
                for status, description in _AUTH_REFUSALS.items():
                    responses.setdefault(status, _refusal(description))
    schemas = document.get("components", {}).get("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    if "OneTimeNotice" not in schemas:
        notice = OneTimeNotice.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(notice.pop("$defs", {}))
        schemas["OneTimeNotice"] = notice
