"""How the HTTP API refuses a request: one shape for every refusal, naming the cause.

Every 4xx and 5xx is an RFC 9457 problem details document (`ProblemDetails`, media type
application/problem+json): a stable `code`, a Chinese `title`, English `title_en` and
`detail`. Where one status has several causes, routes raise `Refused` with the cause's
code (a 404 for an unknown bundle is not a 404 for an unknown item); any other
HTTPException gets its status's code and titles. An application with problems, and a
request FastAPI cannot read (a path parameter that is not a UUID, a body of the wrong
shape), carry every problem in `problems` at once (一次告知), each with a pointer, a code
and messages — under two different codes and titles. The OpenAPI document says so.
The OpenAPI document also declares the 401, 403 and 429 (a client locked out for guessing
tokens) every protected operation may answer, and the 404 of every path that names
something, so clients (and the fuzzer, tests/test_fuzz_intake.py) know every answer.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from contracts.api import OneTimeNotice, Problem, ProblemDetails

MEDIA_TYPE = "application/problem+json"


class Cause(StrEnum):
    """Every refusal's stable code; `_CAUSES` gives its status and titles."""

    INVALID_REQUEST = "invalid_request"
    APPLICATION_PROBLEMS = "application_problems"
    MALFORMED_BODY = "malformed_body"
    UNAUTHENTICATED = "unauthenticated"
    FORBIDDEN = "forbidden"
    NOT_FOUND = "not_found"
    BUNDLE_NOT_FOUND = "bundle_not_found"
    BUNDLE_TYPE_NOT_FOUND = "bundle_type_not_found"
    ITEM_NOT_FOUND = "item_not_found"
    FILE_NOT_FOUND = "file_not_found"
    METHOD_NOT_ALLOWED = "method_not_allowed"
    CONFLICT = "conflict"
    CASE_NUMBER_TAKEN = "case_number_taken"
    ALREADY_ANSWERED = "already_answered"
    CORRECTION_NOT_AWAITED = "correction_not_awaited"
    NOT_YET_REPLIED = "not_yet_replied"
    ALREADY_RATED = "already_rated"
    RATING_NOT_FOUND = "rating_not_found"
    DEPARTMENT_NOT_IN_BUNDLE = "department_not_in_bundle"
    RECTIFICATION_NOT_FOUND = "rectification_not_found"
    RECTIFICATION_CLOSED = "rectification_closed"
    HANDOVER_NOT_READY = "handover_not_ready"
    PROOF_CONFLICT = "proof_conflict"
    PROOF_MISMATCH = "proof_mismatch"
    PAYLOAD_TOO_LARGE = "payload_too_large"
    MATERIAL_REJECTED = "material_rejected"
    UNAVAILABLE = "unavailable"
    STORE_UNAVAILABLE = "store_unavailable"


_CAUSES: dict[Cause, tuple[int, str, str]] = {
    Cause.INVALID_REQUEST: (422, "请求参数或格式有误", "The request is malformed"),
    Cause.APPLICATION_PROBLEMS: (422, "申请材料需补正（一次告知）", "The application has problems"),
    Cause.MALFORMED_BODY: (400, "请求内容无法读取", "The body could not be read"),
    Cause.UNAUTHENTICATED: (401, "未提供有效的访问令牌", "Authentication required"),
    Cause.FORBIDDEN: (403, "访问令牌无此操作权限", "Not permitted"),
    Cause.NOT_FOUND: (404, "未找到所请求的资源", "Not found"),
    Cause.BUNDLE_NOT_FOUND: (404, "办件不存在", "No such bundle"),
    Cause.BUNDLE_TYPE_NOT_FOUND: (404, "一件事类型不存在", "No such bundle type"),
    Cause.ITEM_NOT_FOUND: (404, "办件或事项不存在", "No such bundle or item"),
    Cause.FILE_NOT_FOUND: (404, "文件不存在", "No such file"),
    Cause.METHOD_NOT_ALLOWED: (405, "不支持该请求方法", "Method not allowed"),
    Cause.CONFLICT: (409, "与当前状态冲突", "Conflict with the current state"),
    Cause.CASE_NUMBER_TAKEN: (409, "办件编号已用于另一申请", "Case number already used"),
    Cause.ALREADY_ANSWERED: (409, "办件已全部办结，无可撤回事项", "Already answered"),
    Cause.CORRECTION_NOT_AWAITED: (409, "该事项未要求补正", "No correction awaited"),
    Cause.NOT_YET_REPLIED: (409, "办件尚未办结答复，暂不能评价", "Not replied yet: rate it after"),
    Cause.ALREADY_RATED: (409, "该办件已评价，每件只评价一次", "The bundle is rated already"),
    Cause.RATING_NOT_FOUND: (404, "该办件尚无评价", "The bundle has no rating"),
    Cause.DEPARTMENT_NOT_IN_BUNDLE: (422, "所评价部门未承办该办件", "Department not in the bundle"),
    Cause.RECTIFICATION_NOT_FOUND: (404, "整改记录不存在", "No such rectification"),
    Cause.RECTIFICATION_CLOSED: (409, "该整改已回复办结", "The rectification is closed"),
    Cause.HANDOVER_NOT_READY: (409, "办理结果尚未待送达", "No results are ready to hand over"),
    Cause.PROOF_CONFLICT: (409, "已登记另一送达凭证", "Delivered already, with another proof"),
    Cause.PROOF_MISMATCH: (
        422,
        "送达凭证与送达方式或运单号不符",
        "The proof does not match the delivery method or waybill",
    ),
    Cause.PAYLOAD_TOO_LARGE: (413, "上传内容过大", "Payload too large"),
    Cause.MATERIAL_REJECTED: (422, "上传材料不符合要求", "The material was refused"),
    Cause.UNAVAILABLE: (503, "服务暂不可用，请稍后重试", "Service unavailable"),
    Cause.STORE_UNAVAILABLE: (503, "材料存储暂不可用，请稍后重试", "Material store unavailable"),
}
# The cause of an HTTPException raised without one (FastAPI's own, or a plain raise).
_BY_STATUS = {401: Cause.UNAUTHENTICATED, 403: Cause.FORBIDDEN, 404: Cause.NOT_FOUND}
_BY_STATUS |= {405: Cause.METHOD_NOT_ALLOWED, 409: Cause.CONFLICT, 400: Cause.MALFORMED_BODY}
_BY_STATUS |= {413: Cause.PAYLOAD_TOO_LARGE, 422: Cause.INVALID_REQUEST, 503: Cause.UNAVAILABLE}


class Refused(HTTPException):
    """A refusal naming its cause: `raise Refused(Cause.BUNDLE_NOT_FOUND, "…")`."""

    def __init__(self, cause: Cause, detail: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(_CAUSES[cause][0], detail=detail, headers=headers)
        self.cause = cause


def problem_details(
    cause: Cause, detail: str, problems: tuple[Problem, ...] = ()
) -> ProblemDetails:
    status, title, title_en = _CAUSES[cause]
    return ProblemDetails(
        type=f"urn:lianban:problem:{cause}",
        code=cause,
        status=status,
        title=title,
        title_en=title_en,
        detail=detail,
        problems=problems,
    )


def problem_response(
    problem: ProblemDetails, headers: dict[str, str] | None = None
) -> JSONResponse:
    return JSONResponse(
        problem.model_dump(mode="json"),
        status_code=problem.status,
        headers=headers,
        media_type=MEDIA_TYPE,
    )


def _problem(error: dict[str, Any]) -> Problem:
    """One problem FastAPI found reading the request: English from pydantic, Chinese ours."""
    where, *path = [str(part) for part in error.get("loc", ())] or ["body"]
    message = str(error.get("msg", "invalid"))
    if where == "body":
        pointer = "".join(f"/{part}" for part in path)
        return Problem(
            pointer=pointer,
            code=str(error.get("type", "invalid")),
            message_zh=f"请求内容{pointer or ''}不符合要求",
            message_en=message,
        )
    name = "/".join(path)
    place = {"path": "路径", "query": "查询", "header": "请求头"}.get(where, where)
    return Problem(
        pointer="",
        code=f"{where}_{error.get('type', 'invalid')}",
        message_zh=f"{place}参数{name}不符合要求",
        message_en=f"{where} parameter {name}: {message}",
    )


def one_time_notice(*problems: Problem) -> JSONResponse:
    """The 422 that reports every problem with an application at once."""
    return problem_response(OneTimeNotice(problems=problems))


async def _notice_for(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, RequestValidationError)
    problems = tuple(_problem(e) for e in error.errors())
    detail = "; ".join(problem.message_en for problem in problems)
    return problem_response(problem_details(Cause.INVALID_REQUEST, detail, problems))


async def _refusal_for(request: Request, error: Exception) -> JSONResponse:
    assert isinstance(error, StarletteHTTPException)
    cause = getattr(error, "cause", None) or _BY_STATUS.get(error.status_code)
    if cause is None:  # a status no route raises on purpose: keep it, say what it is
        status, detail = error.status_code, str(error.detail)
        problem = ProblemDetails(
            type="about:blank",
            code=f"http_{status}",
            status=status,
            title="请求未能完成",
            title_en="Request not completed",
            detail=detail,
        )
    else:
        problem = problem_details(cause, str(error.detail))
    return problem_response(problem, headers=dict(error.headers or {}))


def answer_refusals_as_notices(app: FastAPI) -> None:
    """Answer every refusal as problem details; unreadable requests as a notice of them."""
    app.add_exception_handler(RequestValidationError, _notice_for)
    app.add_exception_handler(StarletteHTTPException, _refusal_for)


_PROBLEM_REF = {"$ref": "#/components/schemas/ProblemDetails"}
_NOTICE_REF = {"$ref": "#/components/schemas/OneTimeNotice"}
_AUTH_REFUSALS = {
    "401": "No bearer token, or one that is unknown or expired",
    "403": "The token lacks the scope this operation needs",
    "429": "Too many unknown or expired tokens from this client; retry after Retry-After",
}


def _refusal(description: str) -> dict[str, Any]:
    return {"description": description, "content": {MEDIA_TYPE: {"schema": _PROBLEM_REF}}}


def document_refusals(document: dict[str, Any]) -> None:
    """Every refusal is problem details (a 422 may be the application's one-time notice);
    an operation with a body may answer 400, a protected one 401 and 403, one whose path
    names something 404."""
    for operations in document.get("paths", {}).values():
        for operation in operations.values():
            responses = operation.setdefault("responses", {})
            if "requestBody" in operation:
                responses.setdefault("400", _refusal("The body could not be read"))
                responses.setdefault("413", _refusal("The body is larger than the limit"))
            if any(p.get("in") == "path" for p in operation.get("parameters", [])):
                responses.setdefault("404", _refusal("Nothing is found at this path"))
            if operation.get("security"):
                for status, description in _AUTH_REFUSALS.items():
                    responses.setdefault(status, _refusal(description))
            for status, response in responses.items():
                if not status.startswith(("4", "5")):
                    continue
                declared = response.get("content", {}).get("application/json", {}).get("schema")
                schema = (
                    {"anyOf": [_NOTICE_REF, _PROBLEM_REF]}
                    if declared == _NOTICE_REF or status == "422"
                    else _PROBLEM_REF
                )
                response["content"] = {MEDIA_TYPE: {"schema": schema}}
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for unused in ("HTTPValidationError", "ValidationError"):
        schemas.pop(unused, None)
    for model in (ProblemDetails, OneTimeNotice):
        if model.__name__ not in schemas:
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            schemas.update(schema.pop("$defs", {}))
            schemas[model.__name__] = schema
