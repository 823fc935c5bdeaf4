"""Material uploads: streamed, capped, sniffed, hash-checked; a refusal stores nothing."""

from __future__ import annotations

import hashlib
from collections.abc import Iterator

import httpx
import pytest
from harness import AUTH, put_material

from contracts.application import MAX_MATERIAL_BYTES
from contracts.catalog import Catalog
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.stack import Stack


@pytest.fixture
def api(intake_only: Stack) -> Stack:
    return intake_only


def test_a_streamed_upload_is_stored_under_its_digest(api: Stack) -> None:
    digest = hashlib.sha256(SAMPLE_PDF).hexdigest()
    chunks = iter([SAMPLE_PDF[:3], SAMPLE_PDF[3:20], SAMPLE_PDF[20:]])
    response = put_material(api, digest, chunks, "application/pdf")
    assert response.status_code == 201, response.text
    assert api.materials.read(digest) == SAMPLE_PDF
    assert [path.name for path in api.materials.stored_files()] == [digest]


def test_an_upload_over_the_cap_is_cut_off_and_nothing_is_kept(api: Stack) -> None:
    chunk = b"%PDF-" + b"0" * (1024 * 1024 - 5)

    def too_much() -> Iterator[bytes]:
        for _ in range(MAX_MATERIAL_BYTES // len(chunk) + 2):
            yield chunk

    response = put_material(api, "a" * 64, too_much(), "application/pdf")
    assert response.status_code == 413
    assert "exceeds" in response.json()["detail"]
    assert api.materials.stored_files() == []


@pytest.mark.parametrize(
    ("digest", "content", "media_type", "message"),
    [
        (
            "sample",
            b"MZ\x90\x00 an executable",
            "application/pdf",
            "content is not application/pdf",
        ),
        ("wrong", SAMPLE_PDF, "application/pdf", "does not match its SHA-256"),
        ("sample", SAMPLE_PDF, "text/html", "is not accepted"),
        ("../../etc/passwd", SAMPLE_PDF, "application/pdf", ""),
        ("sample", b"", "application/pdf", "file is empty"),
        # Issue 16, finding 5: the right first bytes are not enough, the whole is parsed.
        (
            "sample",
            b"%PDF-1.4\n<html><script>alert(1)</script></html>",
            "application/pdf",
            "it is not a PDF that can be read",
        ),
        ("sample", b"%PDF-1.7\nMZ\x90\x00" + bytes(512), "application/pdf", "not a PDF"),
        ("sample", b"\x89PNG\r\n\x1a\n<html></html>", "image/png", "not a PNG image"),
        ("sample", b"\xff\xd8\xff\xe0MZ\x90\x00" + bytes(64), "image/jpeg", "not a JPEG image"),
    ],
)
def test_a_refused_upload_says_why_and_stores_nothing(
    api: Stack, digest: str, content: bytes, media_type: str, message: str
) -> None:
    named = {
        "sample": hashlib.sha256(content).hexdigest(),
        "wrong": "0" * 64,
    }.get(digest, digest)
    response = put_material(api, named, content, media_type)
    assert response.status_code in (404, 422), response.text
    if message:
        assert message in response.json()["detail"]
    assert api.materials.stored_files() == []


def test_a_path_traversal_file_name_is_a_problem_in_the_one_time_notice(
    api: Stack, catalog: Catalog
) -> None:
    application = sample_application(catalog.bundle_types["newborn"], "TRAVERSAL1")
    application["materials"][0]["file_name"] = "../../etc/passwd"
    response = httpx.post(
        f"{api.base_url}/v1/bundles",
        json=application,
        headers={"Idempotency-Key": "TRAVERSAL1", **AUTH},
    )
    assert response.status_code == 422
    pointers = {problem["pointer"] for problem in response.json()["problems"]}
    assert "/materials/0/file_name" in pointers
