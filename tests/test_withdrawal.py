"""Withdrawal (撤回) mid-flight: pending items are cancelled at their departments and the
bundle ends with one reply saying what was cancelled and what was already decided."""

from __future__ import annotations

import time

from harness import eventually, new_project_no, running_stack

from adapters.simulated import Rule, Scenario, Verdict
from contracts.catalog import Catalog
from contracts.samples import sample_application
from lianban.settings import Settings

SLOW = Rule(Verdict.APPROVE, delay_seconds=3.0)


def test_withdrawal_cancels_pending_items_at_their_departments(
    settings: Settings, catalog: Catalog
) -> None:
    newborn = catalog.bundle_types["newborn"]
    scenario = Scenario(rules={"birth_medical_certificate": SLOW})
    with running_stack(settings, catalog, scenario) as running:
        receipt = running.submit(sample_application(newborn, new_project_no())).json()
        running.wait_for_item(receipt["status_url"], "vaccination_certificate", "approved")
        running.wait_for_item(receipt["status_url"], "birth_medical_certificate", "accepted")

        withdrawn = running.client.post(
            f"/v1/bundles/{receipt['bundle_id']}/withdraw", json={"reason": "家长决定暂缓办理"}
        )
        again = running.client.post(f"/v1/bundles/{receipt['bundle_id']}/withdraw")
        eventually(
            running.ledger.cancellations,
            timeout=30,
            every=0.02,
            message="no filing was withdrawn at its department",
        )
        time.sleep(SLOW.delay_seconds)  # the slow department's late answer arrives now
        reply = running.client.get(receipt["reply_url"]).json()
        cancellations = running.ledger.cancellations()

    assert withdrawn.status_code == 200, withdrawn.text
    assert again.status_code == 409
    assert reply == withdrawn.json(), "the one reply changed after the withdrawal"
    assert reply["outcome"] == "withdrawn"
    states = {item["item"]: item for item in reply["items"]}
    assert states["vaccination_certificate"]["state"] == "approved"  # decided before: kept
    for code, item in states.items():
        if code != "vaccination_certificate":
            assert item["state"] == "cancelled"
            assert item["reason"] == "家长决定暂缓办理"
    # Filed, undecided items are withdrawn at their departments, those filed for pre-review
    # (容缺预审) included; the birth registration was still waiting and never left.
    bundle_id = receipt["bundle_id"]
    assert sorted(cancellations) == [
        ("health", bundle_id, "birth_medical_certificate"),
        ("hrss", bundle_id, "social_security_card_application"),
        ("medical_insurance", bundle_id, "medical_insurance_nonlocal_parents"),
    ]
