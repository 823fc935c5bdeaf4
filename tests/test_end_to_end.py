"""One bundle in, one reply out: each test runs in memory and against real RabbitMQ + PostgreSQL."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import datetime

import pytest
from harness import eventually, new_project_no, replies_on_queue, running_stack

from adapters.simulated import Rule, Scenario, Verdict
from contracts.catalog import BundleType, Catalog, promised_working_days
from contracts.samples import SAMPLE_DISTRICTS, full_selection, sample_application
from lianban.cli import main
from lianban.settings import Settings


def test_newborn_gets_one_reply_with_every_item_approved(
    settings: Settings,
    catalog: Catalog,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    newborn = catalog.bundle_types["newborn"]
    with running_stack(settings, catalog) as running:
        application = sample_application(newborn, new_project_no())
        receipt = running.submit(application).json()
        reply = running.wait_for_reply(receipt["reply_url"])
        eventually(  # each item's 受理 notice is issued too; then the timeline is complete
            lambda: running.client.get(f"{receipt['status_url']}/notices").json(),
            lambda notices: len(notices) == len(reply["items"]),
            timeout=30,
            message="not every item's acceptance notice was issued",
        )
        status = running.client.get(receipt["status_url"]).json()
        timeline = running.client.get(f"{receipt['status_url']}/timeline").json()
        bundle_id = receipt["bundle_id"]
        on_queue = Counter(
            message["kind"] for message in replies_on_queue(settings.broker_url, bundle_id)
        )

    assert reply["outcome"] == "all_approved"
    assert [item["item"] for item in reply["items"]] == status_items(status)
    assert {item["state"] for item in reply["items"]} == {"approved"}
    assert all(item["certificates"] for item in reply["items"])
    assert status["state"] == "replied"
    assert [event["state"] for event in status["timeline"]].count("replied") == 1
    assert on_queue == {"reply": 1, "acceptance": len(reply["items"])}
    assert timeline == status["timeline"]
    promise = promised_working_days(catalog, newborn, application["items"])
    assert receipt["promised_working_days"] == status["promised_working_days"] == promise

    monkeypatch.setenv("LIANBAN_DATABASE_URL", settings.database_url)
    assert main(["bundle", "show", application["project_no"]]) == 0
    shown = capsys.readouterr().out
    assert f"{application['project_no']}  newborn  replied" in shown
    assert f"承诺 {promise} 个工作日" in shown
    assert shown.count("approved") >= len(reply["items"])


def status_items(status: dict[str, object]) -> list[str]:
    items = status["items"]
    assert isinstance(items, list)
    return [item["item"] for item in items]


def test_prerequisites_are_decided_first_for_every_bundle_type(
    settings: Settings, catalog: Catalog
) -> None:
    """Proven from the department side: no dependent is decided before its prerequisites."""
    with running_stack(settings, catalog) as running:
        receipts = {}
        for number, (view, bundle_type) in enumerate(_every_ordered_bundle_type(catalog), start=1):
            application = sample_application(
                bundle_type, new_project_no(), sequence=number, catalog=view
            )
            application["area_code"] = SAMPLE_DISTRICTS[view.region]
            response = running.submit(application)
            assert response.status_code == 202, response.text
            receipts[response.json()["bundle_id"]] = bundle_type
        replies = {
            bundle_id: running.wait_for_reply(f"/v1/bundles/{bundle_id}/reply")
            for bundle_id in receipts
        }
        # Only this test's bundles.
        records = [r for r in running.ledger.records() if r.bundle_id in receipts]

    decided: dict[tuple[str, str], datetime] = {
        (record.bundle_id, record.item): record.decided_at for record in records
    }
    assert len(decided) == len(records), "an item was decided twice at its department"
    checked_edges = 0
    for bundle_id, bundle_type in receipts.items():
        assert replies[bundle_id]["outcome"] == "all_approved"
        selected = set(full_selection(bundle_type))
        assert {item for b, item in decided if b == bundle_id} == selected
        for code in selected:
            for prerequisite in bundle_type.item(code).prerequisites:
                for before in selected.intersection(prerequisite.any_of):
                    assert decided[(bundle_id, before)] < decided[(bundle_id, code)], (
                        f"{bundle_type.code}: {code} decided before its prerequisite {before}"
                    )
                    checked_edges += 1
    seen = {(r.bundle_id, r.item): r.prerequisites_seen for r in records}
    for bundle_id, bundle_type in receipts.items():
        for code in set(full_selection(bundle_type)):
            expected = {
                c
                for p in bundle_type.item(code).prerequisites
                for c in p.any_of
                if c in full_selection(bundle_type)
            }
            assert set(seen[(bundle_id, code)]) == expected
    assert checked_edges > 0


def test_a_denied_prerequisite_cancels_its_dependents_and_says_why(
    settings: Settings, catalog: Catalog
) -> None:
    newborn = catalog.bundle_types["newborn"]
    scenario = Scenario(
        rules={"birth_medical_certificate": Rule(Verdict.DENY, reason="出生医学证明材料不符")}
    )
    with running_stack(settings, catalog, scenario) as running:
        receipt = running.submit(sample_application(newborn, new_project_no())).json()
        reply = running.wait_for_reply(receipt["reply_url"])
        records = [r for r in running.ledger.records() if r.bundle_id == receipt["bundle_id"]]

    states = {item["item"]: item for item in reply["items"]}
    assert reply["outcome"] == "partly_approved"
    assert states["birth_medical_certificate"]["state"] == "denied"
    assert states["birth_medical_certificate"]["reason"] == "出生医学证明材料不符"
    assert states["vaccination_certificate"]["state"] == "approved"
    dependents = [
        code
        for code, item in states.items()
        if code not in {"birth_medical_certificate", "vaccination_certificate"}
    ]
    assert dependents
    for code in dependents:
        assert states[code]["state"] == "cancelled"
        assert "出生医学证明" in states[code]["reason"] or "前置事项" in states[code]["reason"]
    decided_items = {record.item for record in records}
    assert decided_items.isdisjoint(dependents), "a cancelled item reached its department"


def _every_ordered_bundle_type(catalog: Catalog) -> Iterator[tuple[Catalog, BundleType]]:
    """Every region's bundle types that order their items (the province's, then each
    overlay's own and replaced ones), with the catalog view they are applied for under."""
    for region in SAMPLE_DISTRICTS:
        view = catalog.for_region(region)
        own = view.bundle_types if region == "henan" else catalog.regions[region].bundle_types
        for bundle_type in own.values():
            if any(item.prerequisites for item in bundle_type.items):
                yield view, bundle_type
