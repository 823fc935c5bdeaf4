"""What the fuzzer (tests/test_fuzz_intake.py) found, pinned as examples: each of these
requests once got a 500 or an answer its OpenAPI document did not describe."""

from __future__ import annotations

import json
import uuid
from typing import Any

import httpx
from harness import AUTH

from contracts.catalog import Catalog
from contracts.samples import sample_application
from lianban.schemas import SCHEMA_DIR
from lianban.stack import Stack


def _post_bundle(stack: Stack, application: dict[str, Any]) -> httpx.Response:
    return httpx.post(
        f"{stack.base_url}/v1/bundles",
        json=application,
        headers={"Idempotency-Key": application["project_no"], **AUTH},
    )


def _pointers(response: httpx.Response) -> dict[str, str]:
    return {problem["pointer"]: problem["code"] for problem in response.json()["problems"]}


def test_a_malformed_material_digest_is_a_problem_not_a_crash(
    intake_only: Stack, catalog: Catalog
) -> None:
    application = sample_application(catalog.bundle_types["newborn"], "FUZZ-DIGEST")
    application["materials"][0]["sha256"] = "ABC"
    response = _post_bundle(intake_only, application)
    assert response.status_code == 422
    assert _pointers(response)["/materials/0/sha256"] == "string_pattern_mismatch"


def test_a_message_with_braces_is_reported_as_is(intake_only: Stack, catalog: Catalog) -> None:
    application = sample_application(catalog.bundle_types["newborn"], "FUZZ-BRACES")
    application["applicant"]["applicant_type"] = {}
    response = _post_bundle(intake_only, application)
    assert response.status_code == 422
    assert "union_tag_invalid" in _pointers(response).values()


def test_a_department_no_header_can_carry_is_refused_with_a_403(intake_only: Stack) -> None:
    response = httpx.get(f"{intake_only.base_url}/v1/manual/公安局/items", headers=AUTH)
    assert response.status_code == 403
    assert "manual:%E5%85%AC" in response.headers["WWW-Authenticate"]


def test_a_request_fastapi_cannot_read_gets_a_one_time_notice(intake_only: Stack) -> None:
    bad_id = httpx.get(f"{intake_only.base_url}/v1/bundles/not-a-uuid", headers=AUTH)
    bad_body = httpx.post(
        f"{intake_only.base_url}/v1/bundles/{uuid.uuid4()}/withdraw",
        json={"reason": 5},
        headers=AUTH,
    )
    assert bad_id.status_code == bad_body.status_code == 422
    assert _pointers(bad_id) == {"": "path_uuid_parsing"}
    assert _pointers(bad_body) == {"/reason": "string_type"}
    assert all(p["message_zh"] and p["message_en"] for p in bad_body.json()["problems"])
    for response in (bad_id, bad_body):
        problem = response.json()
        assert problem["code"] == "invalid_request"
        assert problem["title"] == "请求参数或格式有误"  # not the application's one-time notice
        assert not any("Input should" in p["message_zh"] for p in problem["problems"])


def test_the_openapi_document_declares_every_refusal() -> None:
    document = json.loads((SCHEMA_DIR / "openapi.json").read_text(encoding="utf-8"))
    schemas = document["components"]["schemas"]
    assert "HTTPValidationError" not in schemas
    assert "applicant_type" in schemas["NaturalPerson"]["required"]
    assert "discriminator" not in schemas["Application"]["properties"]["applicant"]
    for path, operations in document["paths"].items():
        for method, operation in operations.items():
            responses = operation["responses"]
            where = f"{method.upper()} {path}"
            if operation.get("security"):
                assert {"401", "403"} <= set(responses), where
            if "{" in path:
                assert "404" in responses, where
            if "requestBody" in operation:
                assert "400" in responses, where
            for status, response in responses.items():
                if status.startswith(("4", "5")):
                    (schema,) = [c["schema"] for c in response["content"].values()]
                    assert "ProblemDetails" in json.dumps(schema), f"{where} {status}"
            if "422" in responses:
                schema = responses["422"]["content"]["application/problem+json"]["schema"]
                assert "OneTimeNotice" in json.dumps(schema), where
