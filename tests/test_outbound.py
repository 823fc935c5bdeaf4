"""Outbound calls (issue 16, finding 7): callbacks and department endpoints reach only
allowed hosts; credentials in URLs and internal addresses are refused before any call,
and what the platform sees of a failed callback does not reveal the target's answer."""

from __future__ import annotations

import hashlib
import threading
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import AUTH, new_project_no
from sqlalchemy import select
from structlog.testing import capture_logs

from adapters.registry import endpoint_of
from contracts.catalog import Catalog
from contracts.errors import ConfigurationError
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.settings import DEVELOPMENT_CALLBACK_SECRET
from lianban.stack import Stack
from router.channels.callbacks import NOT_DELIVERED, CallbackSender
from router.domain.intake import Intake, Received
from router.store import CallbackRow, Database
from runtime.outbound import OutboundPolicy, OutboundRefused
from runtime.storage import LocalMaterialStore


class Target:
    """A loopback HTTP server standing in for an internal service: it counts what reaches it."""

    def __init__(self, status: int) -> None:
        self.hits = 0
        target = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                target.hits += 1
                self.rfile.read(int(self.headers.get("Content-Length", 0)))
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def target() -> Iterator[Target]:
    served = Target(status=401)  # like the broker's management API without credentials
    yield served
    served.close()


@pytest.mark.parametrize(
    "url",
    [
        "http://guest:guest@127.0.0.1:15672/api/definitions",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.5/",
        "http://[::1]:8080/",
        "http://[::ffff:127.0.0.1]/",
        "http://localhost/",  # a name: refused on what it resolves to
        "file:///etc/passwd",
    ],
)
def test_credentials_and_internal_addresses_are_refused(url: str) -> None:
    with pytest.raises(OutboundRefused):
        OutboundPolicy().check(url)


def test_only_allow_listed_hosts_are_reached_and_listing_permits_an_internal_one() -> None:
    policy = OutboundPolicy(("platform.example.gov.cn", "127.0.0.1"))
    policy.check("http://127.0.0.1:8500/filing")
    assert policy.refusal("https://elsewhere.example.com/") == (
        "elsewhere.example.com is not an allowed host"
    )
    assert policy.refusal("http://user:secret@127.0.0.1/") == "the URL carries credentials"


def test_a_department_endpoint_the_policy_refuses_stops_the_adapter() -> None:
    env = {"LIANBAN_ADAPTER_POLICE_URL": "http://169.254.169.254/"}
    with pytest.raises(ConfigurationError, match="LIANBAN_ADAPTER_POLICE_URL is refused"):
        endpoint_of("police", env)
    listed = {**env, "LIANBAN_OUTBOUND_HOSTS": "169.254.169.254"}
    assert endpoint_of("police", listed) == "http://169.254.169.254/"


@pytest.mark.parametrize(
    "url", ["http://guest:guest@platform.example.gov.cn/cb", "http://169.254.169.254/cb"]
)
def test_intake_refuses_such_a_callback_url_naming_the_field(
    intake_only: Stack, catalog: Catalog, url: str
) -> None:
    intake_only.materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    application = sample_application(catalog.bundle_types["newborn"], new_project_no())
    application["callback_url"] = url
    response = httpx.post(
        f"{intake_only.base_url}/v1/bundles",
        json=application,
        headers={"Idempotency-Key": application["project_no"], **AUTH},
    )
    assert response.status_code == 422
    codes = {(p["pointer"], p["code"]) for p in response.json()["problems"]}
    assert codes == {("/callback_url", "callback_url_refused")}


def _bundle_with_callback(database: Database, catalog: Catalog, tmp_path: Path, url: str) -> int:
    materials = LocalMaterialStore(tmp_path / "materials")
    materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    project_no = new_project_no()
    application = sample_application(catalog.bundle_types["newborn"], project_no)
    application["callback_url"] = url
    result = Intake(database, catalog, materials).submit(application, project_no)
    assert isinstance(result, Received), result
    now = datetime.now(UTC)
    with database.transaction() as session:
        row = CallbackRow(
            bundle_id=result.receipt.bundle_id,
            url=url,
            kind="reply",
            body=f'{{"message_id": "{uuid.uuid4()}"}}'.encode(),  # as pushed messages carry
            attempts=0,
            next_attempt_at=now,
            delivered_at=None,
            last_error=None,
            created_at=now,
        )
        session.add(row)
        session.flush()
        return row.id


def _callback(database: Database, row_id: int) -> CallbackRow:
    with database.transaction() as session:
        row = session.scalars(select(CallbackRow).where(CallbackRow.id == row_id)).one()
        session.expunge(row)
        return row


def test_a_callback_to_a_name_resolving_inward_is_never_sent(
    database: Database, catalog: Catalog, tmp_path: Path, target: Target
) -> None:
    row_id = _bundle_with_callback(
        database, catalog, tmp_path, f"http://localhost:{target.port}/api/definitions"
    )
    with capture_logs() as logs:
        assert (
            CallbackSender(
                database, OutboundPolicy(), secret=DEVELOPMENT_CALLBACK_SECRET
            ).send_due()
            == 1
        )
    assert target.hits == 0
    assert _callback(database, row_id).last_error == NOT_DELIVERED
    (failure,) = [entry for entry in logs if entry["event"] == "callback.failed"]
    assert "resolves to 127.0.0.1, not a public address" in failure["error"]


def test_a_failed_callback_does_not_reveal_the_targets_answer(
    database: Database, catalog: Catalog, tmp_path: Path, target: Target
) -> None:
    row_id = _bundle_with_callback(database, catalog, tmp_path, f"http://localhost:{target.port}/")
    CallbackSender(
        database, OutboundPolicy(("localhost",)), secret=DEVELOPMENT_CALLBACK_SECRET
    ).send_due()
    assert target.hits == 1
    row = _callback(database, row_id)
    assert row.last_error == NOT_DELIVERED
    assert "401" not in row.last_error
