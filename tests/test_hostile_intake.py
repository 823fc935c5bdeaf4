"""Intake against hostile documents (issue 16, findings 3 to 5): every one is answered
in bounded time with a 4xx naming the field, never a 5xx, and stores nothing.

The door checks run before anything is stored, but a NUL reached PostgreSQL's audit
table before, so the tests run in both modes.
"""

from __future__ import annotations

import copy
import hashlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import AUTH, new_project_no
from hypothesis import HealthCheck, given
from hypothesis import settings as hypothesis_settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from contracts.catalog import Catalog
from contracts.messages import ItemDispatch
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.settings import Settings
from lianban.stack import Role, Stack
from router.domain.admission import (
    MAX_DEPTH,
    MAX_FORM_BYTES,
    MAX_ITEMS,
    MAX_STRING_CHARS,
    read_document,
)
from router.domain.intake import Intake, Received
from router.store import BundleRow, Database, OutboxRow
from runtime.storage import LocalMaterialStore


@pytest.fixture
def served(settings: Settings, catalog: Catalog) -> Iterator[Stack]:
    stack = Stack(settings, catalog, {Role.SERVE})
    stack.start()
    stack.materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def client(served: Stack) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=served.base_url, headers=AUTH, timeout=30) as client:
        yield client


@pytest.fixture
def application(catalog: Catalog) -> dict[str, Any]:
    return sample_application(catalog.bundle_types["newborn"], new_project_no())


def _post_raw(client: httpx.Client, body: bytes, project_no: str) -> httpx.Response:
    headers = {"Idempotency-Key": project_no, "Content-Type": "application/json"}
    return client.post("/v1/bundles", content=body, headers=headers)


def _problems(response: httpx.Response) -> set[tuple[str, str]]:
    assert response.status_code == 422, response.text
    return {(problem["pointer"], problem["code"]) for problem in response.json()["problems"]}


def _stored(stack: Stack, project_no: str) -> bool:
    """Whether a bundle was stored under `project_no` (the connected database is shared)."""
    with stack.database.transaction() as session:
        found = select(func.count()).where(BundleRow.project_no == project_no)
        return bool(session.scalar(found))


# Finding 3: the duplicate check was quadratic and ran on the event loop.
def test_a_hundred_thousand_items_are_refused_by_their_count(
    client: httpx.Client, application: dict[str, Any]
) -> None:
    application["items"] = [f"i{n}" for n in range(100_000)]
    body = json.dumps(application).encode()
    response = _post_raw(client, body, application["project_no"])
    assert _problems(response) == {("/items", "items_too_many")}


def test_the_api_answers_health_checks_while_an_application_is_validated(
    client: httpx.Client,
    served: Stack,
    application: dict[str, Any],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    entered, release = threading.Event(), threading.Event()
    submit = served.intake.submit

    def slow_submit(raw: Any, key: str | None, **options: Any) -> Any:
        entered.set()
        release.wait(timeout=30)
        return submit(raw, key, **options)

    monkeypatch.setattr(served.intake, "submit", slow_submit)
    body = json.dumps(application).encode()
    with ThreadPoolExecutor(max_workers=1) as pool:
        posted = pool.submit(_post_raw, client, body, application["project_no"])
        assert entered.wait(timeout=10)
        try:
            with httpx.Client(base_url=str(client.base_url), timeout=5) as prober:
                assert prober.get("/healthz").status_code == 200
        finally:
            release.set()
        assert posted.result().status_code == 202


# Finding 4: no limit on body, items, form size or depth, string lengths.
def test_a_body_over_the_limit_is_refused_before_it_is_read(
    client: httpx.Client, served: Stack
) -> None:
    limit = served.settings.max_body_bytes
    declared = _post_raw(client, b" " * (limit + 1), new_project_no())
    assert declared.status_code == 413
    assert "larger than" in declared.json()["detail"]

    def chunks() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
        for _ in range(limit // 65536 + 2):
            yield b" " * 65536

    streamed = client.post("/v1/bundles", content=chunks(), headers={"Idempotency-Key": "X"})
    assert streamed.status_code == 413


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (lambda a: a.update(items=[*a["items"]] * (MAX_ITEMS + 1)), ("/items", "items_too_many")),
        (
            lambda a: a.update(form={"x": "字" * (MAX_FORM_BYTES // 3 + 1)}),
            ("/form", "form_too_large"),
        ),
        (
            lambda a: a.update(form={"a": {"b": {"c": {"d": {"e": {"f": {"g": {"h": {}}}}}}}}}),
            ("/form", "form_too_deep"),
        ),
        (
            lambda a: a["form"].update(note="x" * (MAX_STRING_CHARS + 1)),
            ("/form/note", "text_too_long"),
        ),
    ],
    ids=["items", "form-size", "form-depth", "string-length"],
)
def test_each_limit_is_a_one_time_notice_problem(
    client: httpx.Client, served: Stack, application: dict[str, Any], change: Any, expected: Any
) -> None:
    change(application)
    response = _post_raw(client, json.dumps(application).encode(), application["project_no"])
    assert expected in _problems(response)
    assert not _stored(served, application["project_no"])


def test_json_nested_a_thousand_deep_is_refused_before_parsing(client: httpx.Client) -> None:
    response = _post_raw(client, b"[" * 1000 + b"]" * 1000, new_project_no())
    assert _problems(response) == {("", "json_too_deep")}


@pytest.mark.parametrize(
    ("body", "too_deep"),
    [
        (b"[" * MAX_DEPTH + b"]" * MAX_DEPTH, False),
        (b"[" * (MAX_DEPTH + 1) + b"]" * (MAX_DEPTH + 1), True),
        (json.dumps([[index] for index in range(2 * MAX_DEPTH)]).encode(), False),
        (json.dumps({"note": "[{" * MAX_DEPTH, "deep": [[[]]]}).encode(), False),
        (
            json.dumps(
                {"note": "]}" * MAX_DEPTH, "x": [[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]}
            ).encode(),
            True,
        ),
    ],
    ids=["at-the-limit", "one-past", "many-shallow", "brackets-in-text", "closing-in-text"],
)
def test_the_nesting_is_counted_on_brackets_outside_strings(body: bytes, too_deep: bool) -> None:
    _document, unreadable = read_document(body)
    assert (unreadable is not None and unreadable.code == "json_too_deep") is too_deep


# Finding 5: unclean text was a 500 or passed to the departments.
UNCLEAN = {
    "nul": ('"name": "张\\u0000三"', "/applicant/name"),
    "lone-surrogate": ('"name": "张\\ud800三"', "/applicant/name"),
    "ansi-escape": ('"name": "\\u001b[31m张三"', "/applicant/name"),
    "bidi-override": ('"name": "张三\\u202egpj.exe"', "/applicant/name"),
}


@pytest.mark.parametrize("case", UNCLEAN.values(), ids=UNCLEAN.keys())
def test_unclean_text_is_refused_naming_the_field(
    client: httpx.Client, served: Stack, application: dict[str, Any], case: tuple[str, str]
) -> None:
    replacement, pointer = case
    name = json.dumps(application["applicant"]["name"], ensure_ascii=False)
    body = json.dumps(application, ensure_ascii=False).replace(f'"name": {name}', replacement, 1)
    response = _post_raw(client, body.encode(), application["project_no"])
    assert (pointer, "text_unclean") in _problems(response)
    assert not _stored(served, application["project_no"])


def test_an_unclean_key_is_named_escaped(client: httpx.Client, application: dict[str, Any]) -> None:
    application["form"] = {"a\x00b": "1"}
    response = _post_raw(client, json.dumps(application).encode(), application["project_no"])
    assert ("/form/a\\u0000b", "text_unclean") in _problems(response)


@pytest.mark.parametrize("number", ["NaN", "Infinity", "-Infinity", "1e999"])
def test_a_number_that_is_not_finite_is_refused(
    client: httpx.Client, application: dict[str, Any], number: str
) -> None:
    application["form"] = {"income": 0}
    body = json.dumps(application).replace('"income": 0', f'"income": {number}')
    response = _post_raw(client, body.encode(), application["project_no"])
    assert _problems(response) == {("/form/income", "number_not_finite")}


@pytest.mark.parametrize("file_name", ["..", ".", "CON", "nul.pdf", "com1.png", "出生证明.pdf."])
def test_a_reserved_file_name_is_refused(
    client: httpx.Client, application: dict[str, Any], file_name: str
) -> None:
    application["materials"][0]["file_name"] = file_name
    response = _post_raw(client, json.dumps(application).encode(), application["project_no"])
    assert ("/materials/0/file_name", "file_name_reserved") in _problems(response)


# The property: whatever a hostile client puts anywhere in an application, intake answers
# with a 4xx (or accepts it) in bounded time, never a 5xx.
_HOSTILE_TEXT = st.text(st.characters(exclude_categories=()), max_size=20)
_HOSTILE_LEAF = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | _HOSTILE_TEXT
)
_HOSTILE_JSON = st.recursive(
    _HOSTILE_LEAF,
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(_HOSTILE_TEXT, children, max_size=5)
    ),
    max_leaves=30,
)
_FIELDS = ["project_no", "bundle_type", "items", "applicant", "area_code", "form", "materials"]


@hypothesis_settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    field=st.sampled_from(_FIELDS),
    inner=st.booleans(),
    value=_HOSTILE_JSON,
    depth=st.sampled_from([0, 0, 0, 20, 2000]),
)
def test_hostile_json_anywhere_never_gets_a_5xx(
    client: httpx.Client,
    application: dict[str, Any],
    field: str,
    inner: bool,
    value: Any,
    depth: int,
) -> None:
    document = copy.deepcopy(application)
    target = document[field]
    if inner and isinstance(target, dict) and target:
        target[next(iter(target))] = value
    elif inner and isinstance(target, list) and target:
        target[0] = value
    else:
        document[field] = value
    body = "[" * depth + json.dumps(document, allow_nan=True) + "]" * depth
    response = _post_raw(client, body.encode("utf-8", "surrogatepass"), new_project_no())
    assert response.status_code < 500, response.text


# Finding 4: the whole form was copied into every dispatch.
def test_a_dispatch_carries_only_the_form_fields_its_service_declares(
    database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    materials = LocalMaterialStore(tmp_path / "materials")
    materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    project_no = new_project_no()
    newborn = catalog.bundle_types["newborn"]
    application = sample_application(newborn, project_no)
    # Declared by no service: stays with the router.
    application["form"]["attachment_notes"] = "备注" * 2000
    result = Intake(database, catalog, materials).submit(application, project_no)
    assert isinstance(result, Received)
    with database.transaction() as session:
        bodies = session.scalars(select(OutboxRow.body)).all()
    forms = {
        dispatch.item: dispatch.form
        for dispatch in (ItemDispatch.model_validate_json(body) for body in bodies)
    }
    # The first dispatches (those without prerequisites, and the pre-reviewed ones): each
    # its own service's fields, never the notes no service declares.
    assert len(forms) >= 2
    for item, form in forms.items():
        fields = newborn.item(item).form_fields
        assert form == {name: application["form"][name] for name in fields}
    assert "birth_place" in forms["birth_medical_certificate"]
    assert "birth_place" not in forms["vaccination_certificate"]
