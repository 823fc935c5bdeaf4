"""Signed callbacks to an allowed address: intake refuses a callback URL outside the
operator's prefixes; every push is signed (Standard Webhooks), and the verification
docs/security.md gives the platform refuses a tampered, foreign or replayed push."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
import time_machine
from harness import DOCS, Platform, eventually, new_project_no, python_blocks, running_stack
from sqlalchemy import select
from standardwebhooks import WebhookVerificationError

from contracts.catalog import Catalog
from contracts.errors import ConfigurationError
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.cli import main
from lianban.settings import DEVELOPMENT_CALLBACK_SECRET, Settings, callback_secret
from router.domain.intake import Intake, ProblemsFound, Received
from router.store import BundleRow, Database
from runtime.outbound import OutboundPolicy
from runtime.storage import LocalMaterialStore
from runtime.webhooks import new_secret


def documented_verification() -> dict[str, Any]:
    """The platform's verifier exactly as docs/security.md gives it (its first example)."""
    namespace: dict[str, Any] = {"__name__": "docs_security_md"}
    exec(compile(python_blocks(DOCS / "security.md")[0], "security.md", "exec"), namespace)
    return namespace


def _allowing(settings: Settings, prefix: str) -> Settings:
    return settings.model_copy(
        update={
            "callback_backoff_seconds": 0.05,
            "outbound_hosts": ("127.0.0.1",),  # the platform listens on loopback
            "callback_url_prefixes": (prefix,),
        }
    )


def test_a_callback_url_outside_the_allow_list_is_refused_at_intake(
    settings: Settings, catalog: Catalog, platform: Platform
) -> None:
    prefix = platform.url  # http://127.0.0.1:<port>/callback
    outside = [
        "https://elsewhere.example.com/callback",
        f"{prefix}x",  # the prefix's last path segment, extended
        f"{platform.server.url}/other",  # the allowed host, another path
        prefix.replace("127.0.0.1", "127.0.0.1.nip.io"),  # a look-alike host
        prefix.replace("http:", "https:"),  # another scheme
    ]
    application = sample_application(catalog.bundle_types["newborn"], new_project_no())
    with running_stack(_allowing(settings, prefix), catalog) as running:
        refused = [running.submit({**application, "callback_url": url}) for url in outside]
        with running.stack.database.transaction() as session:
            stored = session.scalar(
                select(BundleRow.id).where(BundleRow.project_no == application["project_no"])
            )
        allowed = running.submit({**application, "callback_url": f"{prefix}/lianban"})

    for url, response in zip(outside, refused, strict=True):
        assert response.status_code == 422, (url, response.text)
        problems = {p["code"]: p for p in response.json()["problems"]}
        problem = problems["callback_url_not_allowed"]
        assert problem["pointer"] == "/callback_url"
        assert problem["message_zh"] == "回调地址不在运营方允许的回调地址范围内"
        assert "LIANBAN_CALLBACK_URL_PREFIXES" in problem["message_en"]
    assert stored is None, "a refused application left a bundle behind"
    assert allowed.status_code == 202, allowed.text


def test_a_loopback_callback_is_refused_unless_its_host_is_explicitly_allowed(
    database: Database, catalog: Catalog, tmp_path: Path
) -> None:
    prefix = "http://127.0.0.1:8080/callback"
    materials = LocalMaterialStore(tmp_path / "materials")
    materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    results = []
    for hosts in ((), ("127.0.0.1",)):  # a prefix alone does not open an internal address
        intake = Intake(database, catalog, materials, outbound=OutboundPolicy(hosts, (prefix,)))
        application = sample_application(catalog.bundle_types["newborn"], new_project_no())
        application["callback_url"] = f"{prefix}/lianban"
        results.append(intake.submit(application, application["project_no"]))

    refused, allowed = results
    assert isinstance(refused, ProblemsFound)
    assert [problem.code for problem in refused.notice.problems] == ["callback_url_refused"]
    assert isinstance(allowed, Received)


@pytest.fixture
def forgetful_platform() -> Iterator[Platform]:
    """Its first two answers are lost: those pushes come again."""
    with Platform(refuse_first=2) as platform:
        yield platform


def test_tampered_foreign_and_replayed_callbacks_fail_the_documented_verification(
    settings: Settings, catalog: Catalog, forgetful_platform: Platform
) -> None:
    platform = forgetful_platform
    settings = _allowing(settings, platform.url)
    application = sample_application(catalog.bundle_types["newborn"], new_project_no())
    application.update(delivery="per_item", callback_url=platform.url)
    with running_stack(settings, catalog) as running:
        receipt = running.submit(application).json()
        pushes = eventually(
            lambda: platform.requests_of(receipt["bundle_id"]),
            # Per item a 受理 notice and its result, then the reply.
            lambda received: len(received) == 2 * len(application["items"]) + 1,
            timeout=60,
            message="the notices and the reply did not all arrive",
        )
    docs = documented_verification()
    secret = DEVELOPMENT_CALLBACK_SECRET.get_secret_value()
    platform_side = docs["CallbackVerifier"](secret)

    # Each push verifies, once; its id is the pushed message's id.
    for headers, body in pushes:
        message = platform_side.verify(body, headers)
        assert headers["webhook-id"] == message["message_id"]
    # A retry is the same push under the same id, signed anew: the platform sees it once.
    for refused_headers, refused_body in platform.refused_requests:
        assert refused_headers["webhook-id"] in {h["webhook-id"] for h, _ in pushes}
        with pytest.raises(docs["Replayed"]):
            platform_side.verify(refused_body, refused_headers)
    ((headers, body),) = [push for push in pushes if json.loads(push[1])["kind"] == "reply"]
    with pytest.raises(docs["Replayed"]):
        platform_side.verify(body, headers)  # seen id
    fresh = docs["CallbackVerifier"]  # a verifier that has seen nothing
    with pytest.raises(WebhookVerificationError):
        fresh(secret).verify(body.replace(b"approved", b"rejected"), headers)  # tampered
    with pytest.raises(WebhookVerificationError):
        fresh(new_secret().get_secret_value()).verify(body, headers)  # another secret
    sent_at = datetime.fromtimestamp(int(headers["webhook-timestamp"]), UTC)
    with (
        time_machine.travel(sent_at + timedelta(minutes=6), tick=False),
        pytest.raises(WebhookVerificationError),
    ):
        fresh(secret).verify(body, headers)  # replayed later: too old


def test_the_secret_comes_from_its_file_made_by_the_cli_and_a_bad_one_stops_the_process(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "callback.secret"
    assert main(["callback-secret", str(path)]) == 0
    assert main(["callback-secret", str(path)]) == 2  # never overwritten: rotate on purpose
    assert path.stat().st_mode & 0o777 == 0o600
    settings = Settings(callback_secret_file=path)
    secret = callback_secret(settings)
    assert secret.get_secret_value() == path.read_text(encoding="utf-8").strip()
    assert secret.get_secret_value() not in capsys.readouterr().out + repr(settings)
    path.write_text("whsec_c2hvcnQ=\n", encoding="utf-8")  # 5 bytes
    with pytest.raises(ConfigurationError, match="at least 24 bytes") as refused:
        callback_secret(settings)
    assert "c2hvcnQ" not in str(refused.value)
