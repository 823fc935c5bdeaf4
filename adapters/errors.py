"""What happens next when a department call goes wrong, as tables: HTTP status, SOAP
fault code and exception type → retry or fail.

The exceptions themselves are drawn in `contracts.errors` (`DepartmentError` and below).
An adapter raises `RetryableError` for "busy, try again", `FatalDepartmentError` for
"repeating cannot help" and `BadAnswerError` for "the answer is garbage"; anything else
it lets through is classified here. Business rejections (不予受理, denial, a correction
request) are not errors: handlers return them as outcomes.

zeep's errors are looked up only in a process that loaded zeep (a SOAP adapter's): an
error cannot be one of them otherwise, and an adapter that speaks only HTTP never pays
for importing it.
"""

from __future__ import annotations

import sys
from types import ModuleType

import httpx
from pydantic import ValidationError

from contracts.errors import Action, DepartmentError

# HTTP status → what next. Statuses not listed: 5xx retry, anything else fails.
HTTP_STATUS_ACTIONS: dict[int, Action] = {
    408: Action.RETRY,  # request timeout
    425: Action.RETRY,  # too early
    429: Action.RETRY,  # rate limited by the department
    500: Action.RETRY,
    502: Action.RETRY,
    503: Action.RETRY,
    504: Action.RETRY,
    400: Action.FAIL,  # our request is wrong: repeating it will not help
    401: Action.FAIL,
    403: Action.FAIL,
    404: Action.FAIL,
    409: Action.FAIL,
    422: Action.FAIL,
}

# SOAP 1.1 fault codes (local part) → what next.
SOAP_FAULT_ACTIONS: dict[str, Action] = {
    "Server": Action.RETRY,  # the service failed while processing: transient by contract
    "Client": Action.FAIL,  # the message is wrong
    "VersionMismatch": Action.FAIL,
    "MustUnderstand": Action.FAIL,
}

# Exception type → what next, most specific first.
EXCEPTION_ACTIONS: tuple[tuple[type[BaseException], Action], ...] = (
    (DepartmentError, Action.FAIL),  # replaced by the instance's own action below
    (httpx.TimeoutException, Action.RETRY),
    (httpx.TransportError, Action.RETRY),  # connection refused, reset, protocol errors
    (TimeoutError, Action.RETRY),
    (ConnectionError, Action.RETRY),
    (ValidationError, Action.FAIL),
)


def classify(error: BaseException) -> Action:
    """What to do about `error`: retry it or fail the item."""
    if isinstance(error, DepartmentError):
        return error.action
    if isinstance(error, httpx.HTTPStatusError):
        return _http_status_action(error.response.status_code)
    if (soap := _loaded("zeep.exceptions")) is not None:
        if isinstance(error, soap.TransportError):  # for HTTP errors under SOAP
            return _http_status_action(error.status_code or 0)
        if isinstance(error, soap.Fault):
            code = (error.code or "").rsplit(":", 1)[-1].rsplit("}", 1)[-1]
            return SOAP_FAULT_ACTIONS.get(code, Action.FAIL)
    for error_type, action in EXCEPTION_ACTIONS:
        if isinstance(error, error_type):
            return action
    # Hostile or unreadable XML (zeep's DTDForbidden, EntitiesForbidden, XMLParseError,
    # lxml's XMLSyntaxError) among the rest: repeating cannot help.
    return Action.FAIL


def describe(error: BaseException) -> str:
    """A short, log-safe description of an error for the item's failure reason."""
    if isinstance(error, httpx.HTTPStatusError):
        return f"HTTP {error.response.status_code} from {error.request.url.host}"
    if (soap := _loaded("zeep.exceptions")) is not None and isinstance(error, soap.Fault):
        return f"SOAP fault {error.code}: {str(error.message)[:200]}"
    return f"{type(error).__name__}: {str(error)[:200]}"


def _http_status_action(status: int) -> Action:
    return HTTP_STATUS_ACTIONS.get(status, Action.RETRY if status >= 500 else Action.FAIL)


def _loaded(module: str) -> ModuleType | None:
    return sys.modules.get(module)
