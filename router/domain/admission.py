"""The door of intake: a posted document is bounded and its text clean before anything
else reads it.

Every check here is linear in the document's size and none recurses, so a hostile
document costs one pass over at most its byte limit. What fails here is reported as a
one-time notice (一次告知) naming each field, and the application's own checks are skipped:
their messages quote the input, and a document this far off is not worth quoting.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Iterator
from typing import Any

from contracts.api import Problem

MAX_DEPTH = 16  # the application nests four deep; its form gets the rest
MAX_FORM_DEPTH = 8
MAX_FORM_BYTES = 64 * 1024
MAX_STRING_CHARS = 4096
MAX_ITEMS = 64  # the largest bundle type has a dozen items
MAX_MATERIALS = 100

# NUL and the other C0/C1 controls (tab and newlines stay: forms hold addresses), bidi
# embeddings, overrides and isolates, lone surrogates and the XML non-characters: none can
# be shown safely, stored in PostgreSQL or carried to a SOAP department.
_UNCLEAN = re.compile(
    "[\x00-\x08\x0b\x0c\x0e-\x1f\x7f-\x9f\u202a-\u202e\u2066-\u2069\ud800-\udfff\ufffe\uffff]"
)
# Bracket characters outside strings: a string (escapes included) is skipped as one token.
_STRUCTURE = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"|[\[\]{}]')


def is_clean(text: str) -> bool:
    return _UNCLEAN.search(text) is None


def read_document(body: bytes) -> tuple[Any, Problem | None]:
    """Parse a JSON body whose nesting is first measured on the bytes (the parser itself
    recurses); returns the document, or the problem that kept it from being read."""
    if _nests_too_deep(body):
        return None, _problem(
            "",
            "json_too_deep",
            f"嵌套层数超过上限{MAX_DEPTH}",
            f"nested deeper than {MAX_DEPTH} levels",
        )
    try:
        return json.loads(body), None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        return None, _problem(
            "", "json_invalid", "请求体不是合法的JSON", "the body is not valid JSON"
        )


def door_problems(raw: Any) -> list[Problem]:
    """Unclean text, non-finite numbers, overlong strings and the document's limits."""
    problems = [*_value_problems(raw)]
    if isinstance(raw, dict):
        problems.extend(_count_problems(raw))
    return problems


def _value_problems(raw: Any) -> Iterator[Problem]:
    stack: list[tuple[tuple[str, ...], Any]] = [((), raw)]
    while stack:
        path, value = stack.pop()
        if isinstance(value, str):
            if (problem := _text_problem(path, value)) is not None:
                yield problem
        elif isinstance(value, float) and not math.isfinite(value):
            yield _problem(
                _pointer(path),
                "number_not_finite",
                "数值无效（非有限数）",
                "not a finite number (NaN and Infinity are refused)",
            )
        elif isinstance(value, dict):
            if path == ("form",) and _depth(value) > MAX_FORM_DEPTH:
                yield _problem(
                    "/form",
                    "form_too_deep",
                    f"表单嵌套超过{MAX_FORM_DEPTH}层",
                    f"the form nests deeper than {MAX_FORM_DEPTH} levels",
                )
            for key, child in value.items():
                at = (*path, key)
                if (problem := _text_problem(at, key)) is not None:
                    yield problem
                stack.append((at, child))
        elif isinstance(value, list):
            stack.extend(((*path, str(index)), child) for index, child in enumerate(value))


def _text_problem(path: tuple[str, ...], text: str) -> Problem | None:
    # A function, not a generator: it runs for every key and string of the document.
    if not is_clean(text):
        return _problem(
            _pointer(path),
            "text_unclean",
            "含有不允许的字符（控制字符、空字符、双向控制符或无效编码）",
            "contains characters that are not allowed (control, NUL, "
            "bidirectional override or an unpaired surrogate)",
        )
    if len(text) > MAX_STRING_CHARS:
        return _problem(
            _pointer(path),
            "text_too_long",
            f"内容超过{MAX_STRING_CHARS}个字符",
            f"longer than {MAX_STRING_CHARS} characters",
        )
    return None


def _count_problems(raw: dict[str, Any]) -> Iterator[Problem]:
    for field, limit, zh in (("items", MAX_ITEMS, "事项"), ("materials", MAX_MATERIALS, "材料")):
        listed = raw.get(field)
        if isinstance(listed, list) and len(listed) > limit:
            yield _problem(
                f"/{field}",
                f"{field}_too_many",
                f"{zh}数量超过上限{limit}",
                f"{len(listed)} {field}; at most {limit} are allowed",
            )
    form = raw.get("form")
    if isinstance(form, dict):
        size = len(json.dumps(form, ensure_ascii=False, allow_nan=True).encode(errors="replace"))
        if size > MAX_FORM_BYTES:
            yield _problem(
                "/form",
                "form_too_large",
                f"表单超过{MAX_FORM_BYTES}字节",
                f"the form is {size} bytes; at most {MAX_FORM_BYTES} are allowed",
            )


def _depth(value: Any) -> int:
    deepest = 0
    stack = [(value, 1)]
    while stack:
        node, level = stack.pop()
        deepest = max(deepest, level)
        children = node.values() if isinstance(node, dict) else node
        stack.extend((child, level + 1) for child in children if isinstance(child, dict | list))
    return deepest


def _nests_too_deep(body: bytes) -> bool:
    """Whether the body nests deeper than MAX_DEPTH."""
    if body.count(b"[") + body.count(b"{") <= MAX_DEPTH:
        # Each level opens with a bracket (one in a string only counts more): an
        # application has a handful, counted without walking its tokens one by one.
        return False
    depth = 0
    for token in _STRUCTURE.finditer(body):
        symbol = token.group()
        if symbol in (b"[", b"{"):
            depth += 1
            if depth > MAX_DEPTH:
                return True
        elif symbol in (b"]", b"}"):
            depth -= 1
    return False


def _pointer(path: tuple[str, ...]) -> str:
    """A JSON pointer that is itself clean: an unclean key appears \\u-escaped."""
    return "".join("/" + _safe(part).replace("~", "~0").replace("/", "~1") for part in path)


def _safe(part: str) -> str:
    return part if is_clean(part) else json.dumps(part)[1:-1]


def _problem(pointer: str, code: str, zh: str, en: str) -> Problem:
    return Problem(pointer=pointer, code=code, message_zh=zh, message_en=en)
