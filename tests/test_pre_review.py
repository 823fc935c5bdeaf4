"""Pre-review of dependent items (容缺预审), end to end: a dependent the catalog lets be
pre-reviewed is filed at once and accepted before its prerequisite is decided, and its
department decides only after the prerequisite's result was forwarded to it."""

from __future__ import annotations

from typing import Any

from harness import eventually, new_project_no, running_stack

from adapters.simulated import Rule, Scenario, Verdict
from contracts.catalog import Catalog
from contracts.samples import sample_application
from lianban.settings import Settings

REGISTRATION = "birth_registration"  # police, after the birth certificate
INSURANCE = "medical_insurance_nonlocal_parents"  # pre-reviewable, after the registration
CARD = "social_security_card_application"  # pre-reviewable, after the insurance


def _first(timeline: list[dict[str, Any]], item: str, state: str) -> int:
    return next(
        index
        for index, entry in enumerate(timeline)
        if (entry["item"], entry["state"]) == (item, state)
    )


def test_a_pre_reviewed_dependent_is_accepted_before_and_decided_after_its_prerequisite(
    settings: Settings, catalog: Catalog
) -> None:
    newborn = catalog.bundle_types["newborn"]
    scenario = Scenario(rules={REGISTRATION: Rule(Verdict.APPROVE, delay_seconds=0.5)})
    with running_stack(settings, catalog, scenario) as running:
        receipt = running.submit(sample_application(newborn, new_project_no())).json()
        reply = running.wait_for_reply(receipt["reply_url"])
        timeline = running.client.get(receipt["status_url"] + "/timeline").json()
        decisions = {record.item: record for record in running.ledger.records()}

    assert reply["outcome"] == "all_approved"
    # Filed for pre-review and pre-reviewed while the registration was still undecided.
    assert _first(timeline, INSURANCE, "pre_reviewed") < _first(timeline, REGISTRATION, "approved")
    assert _first(timeline, CARD, "pre_reviewed") < _first(timeline, INSURANCE, "approved")
    for item, prerequisite in ((INSURANCE, REGISTRATION), (CARD, INSURANCE)):
        forwarded = _first(timeline, item, "prerequisites_forwarded")
        assert _first(timeline, prerequisite, "approved") < forwarded
        assert forwarded < _first(timeline, item, "approved")
        # The department decided after its prerequisite, with the prerequisite's result.
        assert decisions[prerequisite].decided_at < decisions[item].decided_at
        assert decisions[item].prerequisites_seen == (prerequisite,)
    actors = {(entry["item"], entry["state"]): entry["actor"] for entry in timeline}
    assert actors[(INSURANCE, "pre_reviewed")] == "department:medical_insurance"
    assert actors[(INSURANCE, "prerequisites_forwarded")] == "router"
    assert actors[(None, "received")] == "platform"


def test_a_pre_reviewed_dependent_is_withdrawn_when_its_prerequisite_is_denied(
    settings: Settings, catalog: Catalog
) -> None:
    newborn = catalog.bundle_types["newborn"]
    denied = Rule(Verdict.DENY, reason="户籍信息核验不通过（测试）", delay_seconds=0.5)
    with running_stack(settings, catalog, Scenario(rules={REGISTRATION: denied})) as running:
        receipt = running.submit(sample_application(newborn, new_project_no())).json()
        reply = running.wait_for_reply(receipt["reply_url"])
        eventually(  # the withdrawals travel after the reply is kept
            running.ledger.cancellations,
            lambda cancelled: len(cancelled) >= 2,
            timeout=30,
            every=0.02,
            message="two filings were not withdrawn",
        )
        cancellations = {item for _, _, item in running.ledger.cancellations()}
        decided = {record.item for record in running.ledger.records()}

    states = {item["item"]: item for item in reply["items"]}
    assert states[REGISTRATION]["state"] == "denied"
    for dependent in (INSURANCE, CARD):
        assert states[dependent]["state"] == "cancelled"
        assert "户籍信息核验不通过" in states[dependent]["reason"]
    # Both had been filed for pre-review, so both filings are withdrawn; neither decided.
    assert cancellations == {INSURANCE, CARD}
    assert not decided & {INSURANCE, CARD}
