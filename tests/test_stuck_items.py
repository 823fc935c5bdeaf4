"""Why an item is stuck (issue 15, item 7): police's system is down — a loopback port that
refuses connections — so its adapter retries the filing later and finally parks it. The
bundle's status tells an operator the attempts, the next retry, the last error and the
circuit's state, and the timeline has `retrying` and `parked` steps; when police is back,
an operator's replay is a `replayed` step (and in the audit log), and the item goes on."""

from __future__ import annotations

from datetime import datetime

import pytest
from harness import (
    TEST_API_TOKEN,
    PoliceBehindAPort,
    Running,
    eventually,
    free_port,
    item_status,
    new_project_no,
    police_system,
    running_stack,
)
from sqlalchemy import select

from contracts import topology
from contracts.catalog import Catalog
from contracts.samples import sample_application
from lianban.cli import main
from lianban.settings import Settings
from router.store import AuditRow

ITEM = "birth_registration"  # newborn's police item
POLICE_PARKING = topology.parking_queue(topology.department_queue("police"))


def test_a_stuck_item_says_why_and_a_replay_is_on_its_timeline(
    settings: Settings,
    catalog: Catalog,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    port = free_port()  # nothing listens: every connection is refused
    PoliceBehindAPort.url = f"http://127.0.0.1:{port}"
    with running_stack(settings, catalog, adapters=[PoliceBehindAPort()]) as running:
        application = sample_application(catalog.bundle_types["newborn"], new_project_no())
        receipt = running.submit(application)
        status_url = receipt.json()["status_url"]

        retrying = eventually(
            lambda: item_status(running, status_url, ITEM),
            lambda item: item["trouble"] is not None and item["trouble"]["state"] == "retrying",
            timeout=60,
            every=0.05,
            message="police's item never showed it was being retried",
        )
        assert retrying["state"] == "dispatched"
        trouble = retrying["trouble"]
        assert trouble["attempts"] >= 1
        assert datetime.fromisoformat(trouble["next_retry_at"]) > datetime.fromisoformat(
            trouble["reported_at"]
        )
        assert trouble["circuit"] in ("open", "half_open")  # it opens at the first failure
        assert "Error" in trouble["last_error"]

        parked = eventually(
            lambda: item_status(running, status_url, ITEM)["trouble"],
            lambda now: now["state"] == "parked",
            timeout=60,
            every=0.2,
            message="police's request was never parked",
        )
        assert parked["attempts"] == 3 and parked["next_retry_at"] is None
        # `lianban bundle show` says the same.
        monkeypatch.setenv("LIANBAN_DATABASE_URL", settings.database_url)
        capsys.readouterr()
        assert main(["bundle", "show", application["project_no"]]) == 0
        shown = capsys.readouterr().out
        assert "parked: attempt 3, parked: `lianban dlq list` shows it" in shown
        assert "retrying" in shown and "circuit open" in shown
        steps = _steps(running, status_url)
        assert [step for step in steps if step in ("retrying", "parked")] == [
            "retrying",
            "retrying",
            "parked",
        ]

        # Police is back; the operator replays the parked filing.
        system = police_system(port)
        try:
            bundle_id = receipt.json()["bundle_id"]
            letter = _parked_letter_of(running, bundle_id)
            replay = running.client.post(
                f"/v1/ops/dead-letters/{POLICE_PARKING}/replay",
                json={"message_ids": [letter["message_id"]]},
            )
            assert replay.json() == {"replayed": 1}
            running.wait_for_item(status_url, ITEM, "approved", timeout=60)
        finally:
            system.stop()

        approved = item_status(running, status_url, ITEM)
        assert approved["trouble"] is None  # the department answered: nothing stuck
        timeline = running.client.get(status_url).json()["timeline"]
        (replayed,) = [step for step in timeline if step["state"] == "replayed"]
        assert replayed["item"] == ITEM and replayed["actor"] == "router"
        assert TEST_API_TOKEN.actor in replayed["detail"]
        steps = _steps(running, status_url)
        assert steps.index("parked") < steps.index("replayed") < steps.index("approved")
        with running.stack.database.transaction() as session:
            audited = session.execute(
                select(AuditRow.actor, AuditRow.item, AuditRow.message_id).where(
                    AuditRow.event == "replayed", AuditRow.item.is_not(None)
                )
            ).all()
        assert (TEST_API_TOKEN.actor, ITEM, letter["message_id"]) in audited


def _steps(running: Running, status_url: str) -> list[str]:
    """The police item's steps on the bundle's timeline, in order."""
    timeline = running.client.get(status_url).json()["timeline"]
    return [step["state"] for step in timeline if step["item"] == ITEM]


def _parked_letter_of(running: Running, bundle_id: str) -> dict[str, str]:
    """The dead letter of `bundle_id` in police's parking lot (listed by the ops API)."""
    letters = eventually(
        lambda: running.client.get("/v1/ops/dead-letters", params={"queue": POLICE_PARKING}).json(),
        lambda found: any(letter["bundle_id"] == bundle_id for letter in found),
        timeout=30,
        every=0.2,
        message="the parked filing is not in police's parking lot",
    )
    letter: dict[str, str] = next(entry for entry in letters if entry["bundle_id"] == bundle_id)
    return letter
