"""Platform authentication: bearer tokens with scopes and an expiry; a refusal keeps nothing."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import Depends
from harness import AUTH, TEST_API_TOKEN
from sqlalchemy import MetaData, func, select

from contracts.catalog import Catalog
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.cli import main
from lianban.settings import Settings
from lianban.stack import Role, Stack
from router.http.app import create_app
from router.http.auth import (
    ApiToken,
    Scope,
    find_token,
    fixed_tokens,
    load_tokens,
    mint,
    require_scope,
)
from router.http.services import Services
from runtime.serving import ThreadedServer

SAMPLE_DIGEST = hashlib.sha256(SAMPLE_PDF).hexdigest()
READER, READER_ENTRY = mint("dashboard", [Scope.BUNDLES_READ, Scope.FILES_READ])
EXPIRED, EXPIRED_ENTRY = mint("last year's platform", Scope, lifetime=timedelta(seconds=-1))
OPERATOR, OPERATOR_ENTRY = mint("operator", [Scope.OPS])


def bearer(token: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {token.get_secret_value()}"}


@pytest.fixture
def api(tmp_path: Path, catalog: Catalog) -> Iterator[Stack]:
    """The intake alone, open to the tests' token, a reader, an expired token, an operator."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'intake.db'}",
        materials_dir=tmp_path / "materials",
        port=0,
        api_tokens=(TEST_API_TOKEN, READER_ENTRY, EXPIRED_ENTRY, OPERATOR_ENTRY),
    )
    stack = Stack(settings, catalog, {Role.SERVE})
    stack.start()
    yield stack
    stack.stop()


def rows_stored(stack: Stack) -> dict[str, int]:
    """How many rows every table of the migrated database holds."""
    tables = MetaData()
    tables.reflect(stack.database.engine)
    with stack.database.transaction() as session:
        return {
            name: session.scalar(select(func.count()).select_from(table)) or 0
            for name, table in tables.tables.items()
            if name != "alembic_version"
        }


@pytest.mark.parametrize(
    ("headers", "status", "challenge"),
    [
        ({}, 401, 'Bearer realm="lianban"'),
        ({"Authorization": "Bearer lb_not-a-token"}, 401, 'error="invalid_token"'),
        ({"Authorization": "Basic cGxhdGZvcm06c2VjcmV0"}, 401, 'Bearer realm="lianban"'),
        (bearer(EXPIRED), 401, 'error="invalid_token"'),
        (bearer(READER), 403, 'error="insufficient_scope", scope="bundles:write"'),
    ],
    ids=["missing", "unknown", "not-bearer", "expired", "read-only"],
)
def test_a_refused_submission_is_answered_and_leaves_no_trace_but_its_audit_record(
    api: Stack, catalog: Catalog, headers: dict[str, str], status: int, challenge: str
) -> None:
    api.materials.put(SAMPLE_DIGEST, SAMPLE_PDF, "application/pdf")
    application = sample_application(catalog.bundle_types["newborn"], "AUTH0001")
    before = rows_stored(api)
    response = httpx.post(
        f"{api.base_url}/v1/bundles",
        json=application,
        headers={"Idempotency-Key": "AUTH0001", **headers},
    )
    assert response.status_code == status, response.text
    assert challenge in response.headers["WWW-Authenticate"]
    # An unknown or expired token is a credential refusal: audited (aggregated), nothing else.
    refused_credential = 'error="invalid_token"' in challenge
    assert rows_stored(api) == before | {"audit_log": before["audit_log"] + refused_credential}


@pytest.mark.parametrize("token", [None, EXPIRED, READER], ids=["missing", "expired", "reader"])
def test_a_refused_upload_stores_no_file(api: Stack, token: Any) -> None:
    response = httpx.put(
        f"{api.base_url}/v1/materials/{SAMPLE_DIGEST}",
        content=SAMPLE_PDF,
        headers={"Content-Type": "application/pdf", **(bearer(token) if token else {})},
    )
    assert response.status_code == (403 if token is READER else 401)
    assert api.materials.stored_files() == []


def test_each_scope_opens_only_its_routes(api: Stack, catalog: Catalog) -> None:
    with httpx.Client(base_url=api.base_url, headers=AUTH) as platform:
        platform.put(
            f"/v1/materials/{SAMPLE_DIGEST}",
            content=SAMPLE_PDF,
            headers={"Content-Type": "application/pdf"},
        ).raise_for_status()
        application = sample_application(catalog.bundle_types["newborn"], "AUTH0002")
        submitted = platform.post(
            "/v1/bundles", json=application, headers={"Idempotency-Key": "AUTH0002"}
        )
    assert submitted.status_code == 202, submitted.text
    bundle = submitted.json()["status_url"]
    with httpx.Client(base_url=api.base_url, headers=bearer(READER)) as reader:
        assert reader.get(bundle).status_code == 200
        assert reader.get(f"{bundle}/files/{SAMPLE_DIGEST}").status_code == 200
        assert reader.post(f"{bundle}/withdraw").status_code == 403
    with httpx.Client(base_url=api.base_url, headers=bearer(OPERATOR)) as operator:
        assert operator.get(bundle).status_code == 403


def test_every_api_route_refuses_an_anonymous_caller(api: Stack) -> None:
    """A route added without a scope fails here, whatever its path."""
    filler = {
        "bundle_id": "00000000-0000-0000-0000-000000000000",
        "sha256": SAMPLE_DIGEST,
        "item": "x",
        "item_id": "00000000-0000-0000-0000-000000000000",
        "department": "police",
        "code": "newborn",
        "rectification_id": "00000000-0000-0000-0000-000000000000",
    }
    paths = create_app(api.catalog).openapi()["paths"]  # every route, manual queue included
    operations = [
        (method, path)
        for path, methods in paths.items()
        if path.startswith("/v1/")
        for method in methods
    ]
    assert len(operations) >= 15
    for method, path in operations:
        response = httpx.request(method, f"{api.base_url}{path.format(**filler)}", json={})
        assert response.status_code == 401, (method, path)


def test_require_scope_guards_an_operator_route(api: Stack) -> None:
    """The dependency operator pages use: `Depends(require_scope(Scope.OPS))`."""
    services = Services(
        api.database, api.intake, api.materials, api_tokens=fixed_tokens(api.settings.api_tokens)
    )
    app = create_app(api.catalog, services)

    @app.get("/ops/ping", dependencies=[Depends(require_scope(Scope.OPS))])
    def ping() -> dict[str, str]:
        return {"pong": "ok"}

    server = ThreadedServer(app)
    server.start()
    url = f"{server.url}/ops/ping"
    try:
        answers = [
            httpx.get(url, headers=headers)
            for headers in (bearer(OPERATOR), AUTH, bearer(READER), {})
        ]
    finally:
        server.stop()
    assert answers[0].json() == {"pong": "ok"}
    assert [answer.status_code for answer in answers] == [200, 200, 403, 401]


def test_the_tokens_file_holds_digests_only(tmp_path: Path) -> None:
    token, entry = mint("platform", [Scope.BUNDLES_WRITE], lifetime=timedelta(days=90))
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps([entry.as_json()]))
    assert token.get_secret_value() not in tokens_file.read_text()
    assert "**********" in repr(token)  # a SecretStr: never printed by accident

    settings = Settings.from_env({"LIANBAN_TOKENS_FILE": str(tokens_file)})
    assert settings.tokens_file == tokens_file and load_tokens(tokens_file) == (entry,)
    assert ApiToken.from_json(json.loads(tokens_file.read_text())[0]) == entry


def test_lianban_token_new_prints_the_token_once_and_only_its_digest_for_the_file(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert main(["token", "new", "platform", "--scope", "bundles:write", "--days", "30"]) == 0
    printed = capsys.readouterr().out.splitlines()
    token = printed[0].rsplit(" ", 1)[-1]
    entry = ApiToken.from_json(json.loads(printed[-1]))
    assert token not in printed[-1]
    assert find_token([entry], token) == entry
    assert entry.scopes == {"bundles:write"} and entry.expires_at is not None
