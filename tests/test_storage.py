"""Material storage behind one interface: a local directory or an S3-compatible bucket.

The S3 tests run against an HTTP server on loopback: moto's S3 server, an emulator, in a
process of its own (no registry here has MinIO or SeaweedFS, and Debian's Ceph gateway
needs a whole cluster), so boto3 speaks the S3 REST protocol for real. If it cannot
start, the tests fail.
Adapters read materials and keep certificate files through the same store, and the
platform pulls a bundle's files from `GET /v1/bundles/{id}/files/{sha256}`.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import quote

import boto3
import httpx
import pytest
from harness import (
    AUTH,
    TEST_API_TOKEN,
    eventually,
    free_port,
    new_project_no,
    put_material,
    put_sample_material,
    running_stack,
    sample_png,
)

from adapters.context import AdapterContext, DepartmentClients
from adapters.errors import classify
from adapters.medical_insurance import MedicalInsuranceAdapter
from adapters.medical_insurance.received import ReceivedFiles
from adapters.medical_insurance.simulator import certificate_pdf, create_app
from adapters.simulators.base import DepartmentState, SimulatorServer
from contracts.application import MAX_MATERIAL_BYTES, MaterialRef
from contracts.catalog import Catalog
from contracts.errors import (
    Action,
    ConfigurationError,
    MaterialCorrupted,
    MaterialMissing,
    MaterialRejected,
    StoreUnavailable,
)
from contracts.messages import OutcomeResult
from contracts.samples import SAMPLE_PDF, minimal_pdf, sample_application
from lianban.settings import Settings
from lianban.stack import Role, Stack
from runtime.storage import LocalMaterialStore, MaterialStore, open_store
from runtime.storage.s3 import S3MaterialStore

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

SAMPLE_DIGEST = hashlib.sha256(SAMPLE_PDF).hexdigest()
PNG = sample_png()
REGION = "us-east-1"


# -- an S3 server on loopback ---------------------------------------------------------


@pytest.fixture(scope="session")
def s3_endpoint() -> Iterator[str]:
    """moto's S3 server in its own process, with credentials for it in the environment."""
    port = free_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    endpoint = f"http://127.0.0.1:{port}"
    try:
        _wait_until_serving(endpoint, server)
        with pytest.MonkeyPatch.context() as env:
            env.setenv("AWS_ACCESS_KEY_ID", "lianban-test")
            env.setenv("AWS_SECRET_ACCESS_KEY", "lianban-test-secret")
            yield endpoint
    finally:
        server.terminate()
        server.wait(timeout=10)


def _wait_until_serving(endpoint: str, server: subprocess.Popen[bytes]) -> None:
    # Never a skip: without the server the S3 backend would go untested.
    def serving() -> bool:
        if server.poll() is not None:
            pytest.fail(f"the S3 test server exited with {server.returncode}")
        try:
            httpx.get(f"{endpoint}/moto-api/", timeout=1)
        except httpx.TransportError:
            return False
        return True

    eventually(
        serving, timeout=30, every=0.1, message=f"the S3 test server did not start at {endpoint}"
    )


@pytest.fixture
def s3(s3_endpoint: str) -> S3Client:
    """A client of its own, to look into the bucket past the store under test."""
    return boto3.client("s3", endpoint_url=s3_endpoint, region_name=REGION)


@pytest.fixture
def bucket_url(s3_endpoint: str, s3: S3Client) -> str:
    bucket = f"lianban-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    return f"s3://{bucket}/materials?endpoint_url={s3_endpoint}&region={REGION}"


def _bucket_contents(s3: S3Client, url: str) -> list[str]:
    """Every object and unfinished multipart upload in the bucket, prefix or not."""
    bucket = url.removeprefix("s3://").split("/", 1)[0]
    objects = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    uploads = s3.list_multipart_uploads(Bucket=bucket).get("Uploads", [])
    return [entry["Key"] for entry in objects] + [entry["Key"] for entry in uploads]


# -- uploads to S3 through the intake API --------------------------------------------


@pytest.fixture
def s3_api(tmp_path: Path, catalog: Catalog, bucket_url: str) -> Iterator[Stack]:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'intake.db'}",
        materials_url=bucket_url,
        port=0,
        api_tokens=(TEST_API_TOKEN,),
    )
    stack = Stack(settings, catalog, {Role.SERVE})
    stack.start()
    yield stack
    stack.stop()


def test_an_upload_reaches_the_bucket_under_its_digest_only(
    s3_api: Stack, s3: S3Client, bucket_url: str
) -> None:
    chunks = iter([SAMPLE_PDF[:3], SAMPLE_PDF[3:20], SAMPLE_PDF[20:]])
    response = put_material(s3_api, SAMPLE_DIGEST, chunks, "application/pdf")
    assert response.status_code == 201, response.text
    assert _bucket_contents(s3, bucket_url) == [f"materials/{SAMPLE_DIGEST[:2]}/{SAMPLE_DIGEST}"]
    assert [path.name for path in s3_api.materials.stored_files()] == [SAMPLE_DIGEST]
    assert s3_api.materials.read(SAMPLE_DIGEST) == SAMPLE_PDF
    assert s3_api.materials.exists(SAMPLE_DIGEST, len(SAMPLE_PDF))
    assert not s3_api.materials.exists(SAMPLE_DIGEST, len(SAMPLE_PDF) + 1)


def test_an_upload_over_the_cap_never_reaches_the_bucket(
    s3_api: Stack, s3: S3Client, bucket_url: str
) -> None:
    chunk = b"%PDF-" + b"0" * (1024 * 1024 - 5)

    def too_much() -> Iterator[bytes]:
        for _ in range(MAX_MATERIAL_BYTES // len(chunk) + 2):
            yield chunk

    response = put_material(s3_api, "a" * 64, too_much(), "application/pdf")
    assert response.status_code == 413
    assert _bucket_contents(s3, bucket_url) == []


@pytest.mark.parametrize(
    ("digest", "content", "media_type", "message"),
    [
        ("own", b"MZ\x90\x00 an executable", "application/pdf", "content is not application/pdf"),
        ("own", PNG, "application/pdf", "content is not application/pdf"),
        ("other", SAMPLE_PDF, "application/pdf", "does not match its SHA-256"),
        ("own", SAMPLE_PDF, "text/html", "is not accepted"),
        ("own", b"", "application/pdf", "file is empty"),
    ],
    ids=["executable", "type_mismatch", "hash_mismatch", "unaccepted_type", "empty"],
)
def test_a_refused_upload_stores_nothing_in_the_bucket(
    s3_api: Stack,
    s3: S3Client,
    bucket_url: str,
    digest: str,
    content: bytes,
    media_type: str,
    message: str,
) -> None:
    named = hashlib.sha256(content).hexdigest() if digest == "own" else SAMPLE_DIGEST[::-1]
    response = put_material(s3_api, named, content, media_type)
    assert response.status_code == 422, response.text
    assert message in response.json()["detail"]
    assert _bucket_contents(s3, bucket_url) == []
    assert s3_api.materials.stored_files() == []


def test_a_large_file_goes_up_in_parts_and_comes_back_whole(
    bucket_url: str, s3: S3Client, tmp_path: Path
) -> None:
    store = S3MaterialStore.from_url(bucket_url, spool_dir=tmp_path / "spool")
    # Past boto3's 8 MiB multipart threshold.
    large = minimal_pdf("large", os.urandom(12 * 1024 * 1024))
    digest = hashlib.sha256(large).hexdigest()
    assert store.put(digest, large, "application/pdf") == len(large)
    assert store.read(digest) == large
    assert _bucket_contents(s3, bucket_url) == [f"materials/{digest[:2]}/{digest}"]
    assert list((tmp_path / "spool").iterdir()) == [], "the spool file outlived the upload"


def test_a_refusal_leaves_no_spool_file_either(bucket_url: str, tmp_path: Path) -> None:
    store = S3MaterialStore.from_url(bucket_url, spool_dir=tmp_path / "spool")
    with pytest.raises(MaterialRejected, match="does not match its SHA-256"):
        store.put("0" * 64, SAMPLE_PDF, "application/pdf")
    assert list((tmp_path / "spool").iterdir()) == []


def test_an_unreachable_bucket_is_a_503_to_try_again(
    tmp_path: Path, catalog: Catalog, s3_endpoint: str
) -> None:
    nowhere = f"s3://lianban/materials?endpoint_url=http://127.0.0.1:{free_port()}"
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'intake.db'}",
        materials_url=nowhere,
        port=0,
        api_tokens=(TEST_API_TOKEN,),
    )
    stack = Stack(settings, catalog, {Role.SERVE})
    stack.start()
    try:
        response = put_material(stack, SAMPLE_DIGEST, SAMPLE_PDF, "application/pdf")
    finally:
        stack.stop()
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"]
    with pytest.raises(StoreUnavailable) as raised:
        stack.materials.exists(SAMPLE_DIGEST, len(SAMPLE_PDF))
    assert classify(raised.value) is Action.RETRY


# -- choosing the store ---------------------------------------------------------------


def test_the_materials_url_chooses_the_store(tmp_path: Path, bucket_url: str) -> None:
    assert isinstance(open_store(tmp_path.as_uri()), LocalMaterialStore)
    assert isinstance(open_store(bucket_url), S3MaterialStore)
    settings = Settings.from_env({"LIANBAN_MATERIALS_URL": bucket_url})
    assert settings.materials_url == bucket_url
    assert Settings.from_env({"LIANBAN_MATERIALS_URL": ""}).materials_url is None


@pytest.mark.parametrize(
    "url",
    [
        "ftp://host/materials",
        "s3:///no-bucket",
        "s3://key:secret@bucket/prefix",
        "s3://bucket/prefix?endpoint=http://127.0.0.1:9000",
        "s3://bucket/prefix?addressing_style=sideways",
    ],
)
def test_a_wrong_materials_url_says_how_to_write_it(url: str) -> None:
    with pytest.raises(ConfigurationError, match=r"s3://bucket/prefix"):
        open_store(url)


# -- adapters reading materials and keeping certificate files ------------------------


@pytest.fixture(params=["local", "s3"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> MaterialStore:
    if request.param == "local":
        return LocalMaterialStore(tmp_path / "materials")
    url: str = request.getfixturevalue("bucket_url")
    return S3MaterialStore.from_url(url, spool_dir=tmp_path / "spool")


@pytest.mark.parametrize(
    "named",
    [
        SAMPLE_DIGEST.upper(),
        SAMPLE_DIGEST[:-1],
        SAMPLE_DIGEST + "0",
        SAMPLE_DIGEST + "\n",
        "../" + SAMPLE_DIGEST[3:],
    ],
    ids=["uppercase", "short", "long", "newline", "path"],
)
def test_a_name_that_is_not_a_lowercase_sha256_is_refused(store: MaterialStore, named: str) -> None:
    """The digest becomes a file name or an object key: nothing else may."""
    with pytest.raises(MaterialRejected, match="not a lowercase hex SHA-256"):
        store.put(named, SAMPLE_PDF, "application/pdf")
    assert store.stored_files() == []


@pytest.fixture
def tamper(
    store: MaterialStore, tmp_path: Path, request: pytest.FixtureRequest
) -> Callable[[str, bytes], None]:
    """Replace what is stored under a digest, past every check (disk rot, a bad copy)."""

    def on_disk(digest: str, data: bytes) -> None:
        (tmp_path / "materials" / digest[:2] / digest).write_bytes(data)

    def in_bucket(digest: str, data: bytes) -> None:
        s3: S3Client = request.getfixturevalue("s3")
        bucket = request.getfixturevalue("bucket_url").removeprefix("s3://").split("/", 1)[0]
        s3.put_object(Bucket=bucket, Key=f"materials/{digest[:2]}/{digest}", Body=data)

    return on_disk if isinstance(store, LocalMaterialStore) else in_bucket


def _context(store: MaterialStore | None) -> AdapterContext:
    async def report(result: OutcomeResult) -> None:
        raise AssertionError(f"nothing should be reported: {result}")

    clients = DepartmentClients(None, 1.0, 1, materials=store)
    return AdapterContext(idempotency_key="k", delivery=1, report=report, clients=clients)


def _sample_ref(**changes: object) -> MaterialRef:
    fields: dict[str, object] = {
        "name": "申请表",
        "sha256": SAMPLE_DIGEST,
        "size": len(SAMPLE_PDF),
        "media_type": "application/pdf",
        "file_name": "application.pdf",
    }
    return MaterialRef.model_validate({**fields, **changes})


def test_an_adapter_fetches_a_material_by_reference(store: MaterialStore) -> None:
    store.put(SAMPLE_DIGEST, SAMPLE_PDF, "application/pdf")
    assert asyncio.run(_context(store).fetch_material(_sample_ref())) == SAMPLE_PDF


def test_a_corrupted_material_is_a_clear_error(
    store: MaterialStore, tamper: Callable[[str, bytes], None]
) -> None:
    store.put(SAMPLE_DIGEST, SAMPLE_PDF, "application/pdf")
    tamper(SAMPLE_DIGEST, SAMPLE_PDF.replace(b"sample", b"forged"))
    with pytest.raises(MaterialCorrupted, match=r"'申请表' .*does not match its reference"):
        asyncio.run(_context(store).fetch_material(_sample_ref()))


def test_a_material_of_another_size_than_its_reference_is_refused(store: MaterialStore) -> None:
    store.put(SAMPLE_DIGEST, SAMPLE_PDF, "application/pdf")
    with pytest.raises(MaterialCorrupted, match=f"expected {len(SAMPLE_PDF) + 1} bytes"):
        asyncio.run(_context(store).fetch_material(_sample_ref(size=len(SAMPLE_PDF) + 1)))


def test_a_missing_material_is_a_clear_error(store: MaterialStore) -> None:
    with pytest.raises(MaterialMissing, match=f"nothing is stored under {SAMPLE_DIGEST}"):
        asyncio.run(_context(store).fetch_material(_sample_ref()))
    assert classify(MaterialMissing("gone")) is Action.FAIL


def _streamed(ctx: AdapterContext, ref: MaterialRef) -> bytes:
    async def read() -> bytes:
        return b"".join([chunk async for chunk in await ctx.stream_material(ref)])

    return asyncio.run(read())


def test_an_adapter_streams_a_material_checked_chunk_by_chunk(
    store: MaterialStore, tamper: Callable[[str, bytes], None]
) -> None:
    large = minimal_pdf("streamed", padding=b"\0" * (3 * 1024 * 1024))
    ref = _sample_ref(sha256=hashlib.sha256(large).hexdigest(), size=len(large))
    store.put(ref.sha256, large, "application/pdf")
    assert _streamed(_context(store), ref) == large
    tamper(ref.sha256, large.replace(b"streamed", b"tampered"))
    with pytest.raises(MaterialCorrupted, match="does not match its reference"):
        _streamed(_context(store), ref)  # found only at the end: a stream ends with the check
    with pytest.raises(MaterialCorrupted, match="expected 10 bytes"):
        _streamed(_context(store), _sample_ref(sha256=ref.sha256, size=10))


def test_a_missing_material_is_missing_before_its_stream_is_read(store: MaterialStore) -> None:
    async def open_only() -> None:
        await _context(store).stream_material(_sample_ref())

    with pytest.raises(MaterialMissing, match=f"nothing is stored under {SAMPLE_DIGEST}"):
        asyncio.run(open_only())


def test_without_a_store_an_adapter_is_told_how_to_get_one() -> None:
    with pytest.raises(ConfigurationError, match="LIANBAN_MATERIALS_URL"):
        asyncio.run(_context(None).fetch_material(_sample_ref()))


def test_a_certificate_file_is_kept_with_the_checks_of_an_upload(store: MaterialStore) -> None:
    ctx = _context(store)
    ref = asyncio.run(ctx.store_certificate(SAMPLE_PDF, "application/pdf", "凭证.pdf", "参保凭证"))
    assert ref == _sample_ref(name="参保凭证", file_name="凭证.pdf")
    assert asyncio.run(ctx.fetch_material(ref)) == SAMPLE_PDF
    with pytest.raises(MaterialRejected, match="content is not application/pdf"):
        asyncio.run(ctx.store_certificate(PNG, "application/pdf", "fake.pdf", "伪造凭证"))
    assert [path.name for path in store.stored_files()] == [SAMPLE_DIGEST]


# -- certificates out: a medical insurance approval, pulled by the platform ----------


@pytest.mark.parametrize("backend", ["local", "s3"])
def test_a_certificate_file_is_issued_kept_and_pulled_with_identical_bytes(
    settings: Settings, catalog: Catalog, request: pytest.FixtureRequest, backend: str
) -> None:
    if backend == "s3":
        settings = settings.model_copy(
            update={"materials_url": request.getfixturevalue("bucket_url")}
        )
    state = DepartmentState(code="medical_insurance", decision_delay=0.05)
    hiring = catalog.bundle_types["employee_hiring"]
    received = ReceivedFiles()
    with SimulatorServer(create_app(state, received), state) as department:
        adapter = MedicalInsuranceAdapter(endpoint=department.url)
        with running_stack(settings, catalog, adapters=[adapter]) as running:
            application = sample_application(
                hiring, new_project_no(), items=["employee_medical_insurance_enrolment"]
            )
            receipt = running.submit(application).json()
            reply = running.wait_for_reply(receipt["reply_url"])
            files = f"/v1/bundles/{receipt['bundle_id']}/files"
            (item,) = reply["items"]
            (certificate,) = item["certificates"]
            pulled = running.client.get(f"{files}/{certificate['file']['sha256']}")
            material = running.client.get(f"{files}/{SAMPLE_DIGEST}")

    assert reply["outcome"] == "all_approved", reply
    (filing,) = state.filings.values()
    filed = [received.path(m["sha256"]).read_bytes() for m in filing.payload["materials"]]
    # Every material of the sample is SAMPLE_PDF's bytes, each filed by reference.
    assert filed == [SAMPLE_PDF] * len(application["materials"]), (
        "the department did not get the material's bytes"
    )
    assert pulled.status_code == 200, pulled.text
    assert pulled.content == certificate_pdf(filing)
    assert pulled.headers["content-type"] == "application/pdf"
    assert certificate["file"]["sha256"] == hashlib.sha256(pulled.content).hexdigest()
    assert pulled.headers["content-disposition"].startswith("attachment;")
    assert certificate["file"]["file_name"] in pulled.headers["content-disposition"]
    assert material.status_code == 200 and material.content == SAMPLE_PDF


# -- what the file pull refuses -------------------------------------------------------


@pytest.fixture
def submitted(intake_only: Stack, catalog: Catalog) -> tuple[httpx.Client, str]:
    """A bundle whose one material has a file name no header could carry as it is."""
    client = httpx.Client(base_url=intake_only.base_url, headers=AUTH, timeout=30)
    put_sample_material(client)
    project_no = new_project_no()
    application = sample_application(catalog.bundle_types["newborn"], project_no)
    application["materials"][0]["file_name"] = '出生医学证明 "副本"\r\nX-Evil: 1.pdf'
    response = client.post("/v1/bundles", json=application, headers={"Idempotency-Key": project_no})
    assert response.status_code == 202, response.text
    return client, response.json()["bundle_id"]


def test_a_file_name_cannot_break_out_of_its_header(submitted: tuple[httpx.Client, str]) -> None:
    client, bundle_id = submitted
    response = client.get(f"/v1/bundles/{bundle_id}/files/{SAMPLE_DIGEST}")
    assert response.status_code == 200, response.text
    assert "x-evil" not in response.headers
    name = '出生医学证明 "副本"\r\nX-Evil: 1.pdf'
    assert response.headers["content-disposition"] == (
        'attachment; filename="______ ______X-Evil: 1.pdf"; '
        f"filename*=UTF-8''{quote(name, safe='')}"
    )
    assert response.headers["x-content-type-options"] == "nosniff"


def test_only_files_the_bundle_references_are_served(
    submitted: tuple[httpx.Client, str], intake_only: Stack
) -> None:
    client, bundle_id = submitted
    stored_elsewhere = hashlib.sha256(PNG).hexdigest()
    intake_only.materials.put(stored_elsewhere, PNG, "image/png")
    unreferenced = client.get(f"/v1/bundles/{bundle_id}/files/{stored_elsewhere}")
    other_bundle = client.get(f"/v1/bundles/{uuid.uuid4()}/files/{SAMPLE_DIGEST}")
    not_a_digest = client.get(f"/v1/bundles/{bundle_id}/files/..%2F..%2Fetc%2Fpasswd")
    assert (unreferenced.status_code, other_bundle.status_code) == (404, 404)
    assert not_a_digest.status_code in (404, 422)
    assert unreferenced.json()["detail"] == "the bundle references no such file"
