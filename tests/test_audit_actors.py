"""Finding 8: the audit log names who acted — the token, and for staff its holder — for
every action the API takes: applications, uploads, file pulls, withdrawals, replays."""

from __future__ import annotations

import hashlib

import httpx
from harness import AUTH, TEST_API_TOKEN, new_project_no, put_material
from sqlalchemy import select

from contracts import topology
from contracts.catalog import Catalog
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.stack import Stack
from router.store import AuditRow

SAMPLE_DIGEST = hashlib.sha256(SAMPLE_PDF).hexdigest()
POLICE_PARKING = topology.parking_queue(topology.department_queue("police"))


def test_every_api_action_is_audited_with_the_token_behind_it(
    intake_only: Stack, catalog: Catalog
) -> None:
    assert put_material(intake_only, SAMPLE_DIGEST, SAMPLE_PDF, "application/pdf").is_success
    api = httpx.Client(base_url=intake_only.base_url, headers=AUTH)
    project_no = new_project_no()
    application = sample_application(catalog.bundle_types["newborn"], project_no)
    submitted = api.post("/v1/bundles", json=application, headers={"Idempotency-Key": project_no})
    bundle_id = submitted.json()["bundle_id"]
    assert api.get(f"/v1/bundles/{bundle_id}/files/{SAMPLE_DIGEST}").status_code == 200
    assert api.post(f"/v1/bundles/{bundle_id}/withdraw").status_code == 200
    replayed = api.post(f"/v1/ops/dead-letters/{POLICE_PARKING}/replay", json={})
    assert replayed.status_code == 200

    with intake_only.database.transaction() as session:
        audited = session.execute(
            select(AuditRow.event, AuditRow.actor).order_by(AuditRow.id)
        ).all()
    by_the_token = [event for event, actor in audited if actor == TEST_API_TOKEN.actor]
    assert by_the_token == ["uploaded", "received", "pulled", "withdrawn", "replayed"]
    assert TEST_API_TOKEN.token_id in TEST_API_TOKEN.actor
    assert all(actor != "platform" for _, actor in audited)
