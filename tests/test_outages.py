"""Finding 10: outages are answered as outages, token guessing is slowed down, and a
revoked token or key is refused within a minute without a restart."""

from __future__ import annotations

import hashlib
import json
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
import time_machine
from conftest import POSTGRES_ADMIN_URL, fresh_postgres_database
from harness import AUTH, TEST_API_TOKEN, new_project_no
from sqlalchemy import create_engine, select, text

from contracts.catalog import Catalog
from contracts.errors import BadSignature
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.settings import Settings
from lianban.stack import Role, Stack
from router.http.auth import Scope, mint
from router.store import AuditRow
from runtime.health import broker_problem
from runtime.messaging import Broker
from runtime.messaging.signing import Keyring, new_key
from runtime.reloading import RELOAD_EVERY

UNKNOWN_BUNDLE = f"/v1/bundles/{uuid.uuid4()}"
SAMPLE_DIGEST = hashlib.sha256(SAMPLE_PDF).hexdigest()


def _serving(settings: Settings, catalog: Catalog) -> Iterator[Stack]:
    stack = Stack(settings, catalog, {Role.SERVE})
    stack.start()
    try:
        yield stack
    finally:
        stack.stop()


@pytest.mark.connected
def test_with_the_database_down_intake_answers_503_with_retry_after_and_is_not_ready(
    tmp_path: Path, catalog: Catalog
) -> None:
    with fresh_postgres_database() as url:
        name = url.rsplit("/", 1)[1]
        settings = Settings(
            database_url=url,
            materials_dir=tmp_path / "materials",
            port=0,
            api_tokens=(TEST_API_TOKEN,),
        )
        admin = create_engine(POSTGRES_ADMIN_URL, isolation_level="AUTOCOMMIT")
        for stack in _serving(settings, catalog):
            api = httpx.Client(base_url=stack.base_url, headers=AUTH, timeout=30)
            stack.materials.put(SAMPLE_DIGEST, SAMPLE_PDF, "application/pdf")
            assert api.get("/readyz").status_code == 200
            with admin.connect() as connection:  # this test's database only goes away
                connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS false'))
                connection.execute(
                    text(
                        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                        "WHERE datname = :name"
                    ),
                    {"name": name},
                )
            project_no = new_project_no()
            application = sample_application(catalog.bundle_types["newborn"], project_no)
            key = {"Idempotency-Key": project_no}
            refused = api.post("/v1/bundles", json=application, headers=key)
            assert refused.status_code == 503 and refused.headers["Retry-After"] == "5"
            not_ready = api.get("/readyz")
            assert not_ready.status_code == 503 and "database" in not_ready.json()["problem"]
            assert api.get("/healthz").status_code == 200  # alive: do not restart it

            with admin.connect() as connection:
                connection.execute(text(f'ALTER DATABASE "{name}" ALLOW_CONNECTIONS true'))
            assert api.get("/readyz").status_code == 200
            assert api.post("/v1/bundles", json=application, headers=key).status_code == 202
        admin.dispose()


def test_an_unreachable_broker_is_a_readiness_problem() -> None:
    assert broker_problem(Broker("memory://")) is None
    problem = broker_problem(Broker("amqp://guest:guest@127.0.0.1:1//", connect_timeout=1))
    assert problem is not None and "broker" in problem


def test_token_guessing_is_refused_per_client_after_the_limit(
    tmp_path: Path, catalog: Catalog
) -> None:
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'intake.db'}",
        materials_dir=tmp_path / "materials",
        port=0,
        api_tokens=(TEST_API_TOKEN,),
        auth_failures_per_minute=5,
    )
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        for stack in _serving(settings, catalog):
            guesser = httpx.Client(base_url=stack.base_url)
            neighbour = httpx.Client(
                base_url=stack.base_url,
                transport=httpx.HTTPTransport(local_address="127.0.0.2"),
                headers=AUTH,
            )
            guesses = [
                guesser.get(UNKNOWN_BUNDLE, headers={"Authorization": f"Bearer lb_guess{n}"})
                for n in range(6)
            ]
            assert [answer.status_code for answer in guesses] == [401] * 5 + [401]
            locked = guesser.get(UNKNOWN_BUNDLE, headers=AUTH)  # even the right token
            assert locked.status_code == 429 and 0 < int(locked.headers["Retry-After"]) <= 60
            assert neighbour.get(UNKNOWN_BUNDLE).status_code == 404  # another client

            clock.shift(61)
            assert guesser.get(UNKNOWN_BUNDLE, headers=AUTH).status_code == 404
            with stack.database.transaction() as session:
                audited = session.execute(
                    select(AuditRow.actor, AuditRow.outcome).where(AuditRow.event == "refused")
                ).all()
    assert sorted(audited) == [
        ("client:127.0.0.1", "locked_out"),
        ("client:127.0.0.1", "unknown_token"),
    ]


def test_a_revoked_token_is_refused_within_a_minute_without_a_restart(
    tmp_path: Path, catalog: Catalog
) -> None:
    token, entry = mint("platform", [Scope.BUNDLES_READ])
    tokens_file = tmp_path / "tokens.json"
    tokens_file.write_text(json.dumps([entry.as_json()]))
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'intake.db'}",
        materials_dir=tmp_path / "materials",
        port=0,
        tokens_file=tokens_file,
    )
    headers = {"Authorization": f"Bearer {token.get_secret_value()}"}
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        for stack in _serving(settings, catalog):
            api = httpx.Client(base_url=stack.base_url, headers=headers)
            assert api.get(UNKNOWN_BUNDLE).status_code == 404
            tokens_file.write_text("[]")
            clock.shift(RELOAD_EVERY + 1)
            assert api.get(UNKNOWN_BUNDLE).status_code == 401


def test_a_revoked_key_is_refused_within_a_minute_without_a_restart(tmp_path: Path) -> None:
    pem, trusted = new_key("police")
    (tmp_path / "signing").mkdir()
    (tmp_path / "signing" / "police.pem").write_bytes(pem)
    trusted_file = tmp_path / "trusted.json"
    trusted_file.write_text(json.dumps([trusted.as_json()]))
    with time_machine.travel(datetime.now(UTC), tick=True) as clock:
        keyring = Keyring.load(tmp_path / "signing", trusted_file)
        headers = keyring.sign("police", body=b"{}", message_id="m", correlation_id="c")
        verify = {"body": b"{}", "headers": headers, "message_id": "m", "correlation_id": "c"}
        assert keyring.verify(**verify) == "police"
        trusted_file.write_text("[]")
        clock.shift(RELOAD_EVERY + 1)
        with pytest.raises(BadSignature):
            keyring.verify(**verify)
