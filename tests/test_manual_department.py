"""A department with no system: its staff decide through the manual work queue."""

from __future__ import annotations

from typing import Any

import httpx
import pytest
from harness import eventually, free_port, new_project_no, running_stack

from adapters.manual import manual_adapter
from contracts.catalog import Catalog
from contracts.samples import sample_application
from lianban.settings import Settings
from router.http.auth import manual_scope, mint

MINTED = {code: mint(f"{code} staff", [manual_scope(code)]) for code in ("health", "police")}
# Staff are who their own token names: two doctors of the health department.
MINTED |= {name: mint(name, [manual_scope("health")]) for name in ("王医生", "李医生")}
TOKENS = {code: token.get_secret_value() for code, (token, _) in MINTED.items()}


def _as(holder: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {TOKENS[holder]}"}


def _wait_for_open_items(client: httpx.Client, project_no: str, count: int) -> list[dict[str, Any]]:
    """The open items of one application: the connected database is shared with other tests."""

    def ours() -> list[dict[str, Any]]:
        listed = client.get("/v1/manual/health/items", headers=_as("health")).json()
        return [item for item in listed if item["project_no"] == project_no]

    items: list[dict[str, Any]] = eventually(
        ours,
        lambda items: len(items) >= count,
        timeout=30,
        message="the manual adapter never filed into the work queue",
    )
    return items


def test_staff_decide_by_hand_and_see_only_their_own_queue(
    settings: Settings, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    staff_tokens = tuple(entry for _, entry in MINTED.values())
    settings = settings.model_copy(
        update={"port": port, "api_tokens": (*settings.api_tokens, *staff_tokens)}
    )
    monkeypatch.setenv("LIANBAN_ADAPTER_HEALTH_TOKEN", TOKENS["health"])
    health = manual_adapter("health", catalog, f"http://127.0.0.1:{port}")
    newborn = catalog.bundle_types["newborn"]
    items = ["birth_medical_certificate", "vaccination_certificate"]

    with running_stack(settings, catalog, adapters=[health]) as running:
        project_no = new_project_no()
        application = sample_application(newborn, project_no, items=items)
        receipt = running.submit(application).json()
        client = running.client
        queued = _wait_for_open_items(client, project_no, 2)

        assert (
            client.get("/v1/manual/health/items", headers={"Authorization": ""}).status_code == 401
        )
        assert client.get("/v1/manual/health/items", headers=_as("police")).status_code == 403
        police_view = client.get(
            f"/v1/manual/police/items/{queued[0]['id']}", headers=_as("police")
        )
        assert police_view.status_code == 404
        for action, body in (
            ("claim", {"staff": "police staff"}),
            ("outcome", {"status": "accepted"}),
        ):
            police_act = client.post(
                f"/v1/manual/police/items/{queued[0]['id']}/{action}",
                json=body,
                headers=_as("police"),
            )
            assert police_act.status_code == 404, action
        # The platform's token has every API scope but opens no department's queue.
        assert client.get("/v1/manual/health/items").status_code == 403
        open_items = _wait_for_open_items(client, project_no, 2)
        assert [item["claimed_by"] for item in open_items] == [None, None]

        by_item = {entry["item"]: entry for entry in queued}
        certificate = by_item["birth_medical_certificate"]["id"]
        impostor = client.post(
            f"/v1/manual/health/items/{certificate}/claim",
            json={"staff": "王医生"},
            headers=_as("李医生"),
        )
        assert impostor.status_code == 403  # staff identity comes from the token
        claimed = client.post(f"/v1/manual/health/items/{certificate}/claim", headers=_as("王医生"))
        assert claimed.json()["claimed_by"] == "王医生"
        taken = client.post(f"/v1/manual/health/items/{certificate}/claim", headers=_as("李医生"))
        assert taken.status_code == 409
        listed = client.get("/v1/manual/health/items?state=claimed", headers=_as("health"))
        claimed_ids = [entry["id"] for entry in listed.json() if entry["project_no"] == project_no]
        assert claimed_ids == [certificate]
        unknown = client.get("/v1/manual/health/items?state=closed", headers=_as("health"))
        assert unknown.status_code == 422
        decision = {
            "status": "decided",
            "approved": True,
            "certificates": [
                {
                    "certificate_name": "出生医学证明",
                    "certificate_number": "Q410000001",
                    "issuer_name": "郑州市妇幼保健院",
                    "issue_date": "2026-11-23",
                }
            ],
        }
        outcome_url = f"/v1/manual/health/items/{certificate}/outcome"
        # Finding 8: a claim is enforced; a second doctor cannot decide the first's item.
        assert client.post(outcome_url, json=decision, headers=_as("李医生")).status_code == 409
        decided = client.post(outcome_url, json=decision, headers=_as("王医生"))
        assert decided.json()["state"] == "done"
        again = client.post(outcome_url, json=decision, headers=_as("王医生"))
        assert again.status_code == 409
        rejected = client.post(
            f"/v1/manual/health/items/{by_item['vaccination_certificate']['id']}/outcome",
            json={"status": "rejected", "reason": "未提供接种记录"},
            headers=_as("李医生"),
        )
        assert rejected.status_code == 200, rejected.text
        reply = running.wait_for_reply(receipt["reply_url"])

    states = {item["item"]: item for item in reply["items"]}
    assert states["birth_medical_certificate"]["state"] == "approved"
    assert states["birth_medical_certificate"]["certificates"][0]["certificate_number"] == (
        "Q410000001"
    )
    assert states["vaccination_certificate"]["state"] == "rejected"
    assert states["vaccination_certificate"]["reason"] == "未提供接种记录"
