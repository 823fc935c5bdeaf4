"""One shape for every refusal of the HTTP API (RFC 9457 problem details): a stable code,
a Chinese title, English detail; `/reply` tells an unknown bundle from one in progress;
a case number finds its bundle."""

from __future__ import annotations

import hashlib
import uuid
from typing import Any

import httpx
import pytest
from harness import AUTH, put_material

from contracts.catalog import Catalog
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.stack import Stack


def _assert_problem(response: httpx.Response, status: int, code: str, title: str) -> Any:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["status"] == status
    assert problem["code"] == code
    assert problem["type"] == f"urn:lianban:problem:{code}"
    assert problem["title"] == title
    assert problem["title_en"] and problem["detail"].isascii()
    return problem


def _submit(stack: Stack, catalog: Catalog, project_no: str) -> Any:
    digest = hashlib.sha256(SAMPLE_PDF).hexdigest()
    assert put_material(stack, digest, SAMPLE_PDF, "application/pdf").is_success
    application = sample_application(catalog.bundle_types["newborn"], project_no)
    response = httpx.post(
        f"{stack.base_url}/v1/bundles",
        json=application,
        headers={"Idempotency-Key": project_no, **AUTH},
    )
    assert response.status_code == 202, response.text
    return response.json()


@pytest.mark.parametrize(
    ("method", "path", "status", "code", "title"),
    [
        ("GET", "/v1/bundles/{unknown}", 404, "bundle_not_found", "办件不存在"),
        ("GET", "/v1/bundles/{unknown}/reply", 404, "bundle_not_found", "办件不存在"),
        ("POST", "/v1/bundles/{unknown}/withdraw", 404, "bundle_not_found", "办件不存在"),
        ("GET", "/v1/no-such-route", 404, "not_found", "未找到所请求的资源"),
        ("DELETE", "/v1/bundles", 405, "method_not_allowed", "不支持该请求方法"),
    ],
)
def test_each_refusal_names_its_cause(
    intake_only: Stack, method: str, path: str, status: int, code: str, title: str
) -> None:
    url = intake_only.base_url + path.format(unknown=uuid.uuid4())
    _assert_problem(httpx.request(method, url, headers=AUTH), status, code, title)


def test_a_missing_or_wrong_token_is_refused_in_the_same_shape(intake_only: Stack) -> None:
    response = httpx.get(f"{intake_only.base_url}/v1/bundles/{uuid.uuid4()}")
    _assert_problem(response, 401, "unauthenticated", "未提供有效的访问令牌")
    assert response.headers["WWW-Authenticate"].startswith("Bearer")


def test_an_application_with_problems_is_a_one_time_notice_inside_problem_details(
    intake_only: Stack, catalog: Catalog
) -> None:
    application = sample_application(catalog.bundle_types["newborn"], "PROBLEMS-1")
    del application["applicant"]
    response = httpx.post(
        f"{intake_only.base_url}/v1/bundles",
        json=application,
        headers={"Idempotency-Key": "PROBLEMS-1", **AUTH},
    )
    problem = _assert_problem(response, 422, "application_problems", "申请材料需补正（一次告知）")
    assert problem["problems"] and all(p["pointer"] for p in problem["problems"])


def test_a_case_number_used_for_another_application_is_a_conflict(
    intake_only: Stack, catalog: Catalog
) -> None:
    _submit(intake_only, catalog, "TAKEN-1")
    other = sample_application(catalog.bundle_types["citizen_after_death"], "TAKEN-1")
    response = httpx.post(
        f"{intake_only.base_url}/v1/bundles",
        json=other,
        headers={"Idempotency-Key": "TAKEN-1", **AUTH},
    )
    _assert_problem(response, 409, "case_number_taken", "办件编号已用于另一申请")


def test_reply_is_202_while_in_progress_and_404_only_when_unknown(
    intake_only: Stack, catalog: Catalog
) -> None:
    """intake_only runs no correlator: the bundle stays in progress."""
    receipt = _submit(intake_only, catalog, "INPROGRESS-1")
    response = httpx.get(intake_only.base_url + receipt["reply_url"], headers=AUTH)
    assert response.status_code == 202
    assert response.headers["Retry-After"] == "5"
    assert response.json()["bundle_id"] == receipt["bundle_id"]
    assert response.json()["state"] == "in_progress"


def test_a_case_number_finds_its_bundle(intake_only: Stack, catalog: Catalog) -> None:
    receipt = _submit(intake_only, catalog, "LOOKUP-1")
    found = httpx.get(
        f"{intake_only.base_url}/v1/bundles", params={"project_no": "LOOKUP-1"}, headers=AUTH
    )
    assert found.status_code == 200
    assert [bundle["bundle_id"] for bundle in found.json()] == [receipt["bundle_id"]]
    none = httpx.get(
        f"{intake_only.base_url}/v1/bundles", params={"project_no": "NO-SUCH-1"}, headers=AUTH
    )
    assert none.status_code == 200 and none.json() == []
