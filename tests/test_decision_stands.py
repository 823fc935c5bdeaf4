"""Withdrawal tells the truth: a department that had decided when the withdrawal reached
it refuses the cancel, its decision stands, and the platform gets a corrected reply (a
new version, saying so) through the callback, AMQP, the file drop and `/reply`."""

from __future__ import annotations

import asyncio
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import time_machine
from alembic import command
from alembic.config import Config
from harness import Platform, Running, eventually, new_project_no, replies_on_queue, running_stack
from sqlalchemy import select, text
from standardwebhooks import Webhook

from adapters import AdapterContext, ItemCancel
from adapters.simulated import DecisionLedger, Rule, Scenario, Verdict, simulated_adapter
from contracts.catalog import Catalog
from contracts.messages import OutcomeResult, PrerequisiteResult
from contracts.samples import sample_application
from lianban.settings import DEVELOPMENT_CALLBACK_SECRET, Settings
from router.domain.polling import PollScheduler
from router.store import Database, ReplyRow
from router.store.engine import MIGRATIONS

ITEM = "vaccination_certificate"  # health, no prerequisites


class Gates:
    """When the test lets the department's decision, and its refusal, reach the router."""

    def __init__(self) -> None:
        self.decision = threading.Event()
        self.refusal = threading.Event()


def late_health(catalog: Catalog, ledger: DecisionLedger, gates: Gates) -> Any:
    """The health department decides at once, but its answers leave only when let."""
    simulated = type(simulated_adapter("health", catalog, ledger=ledger))

    class LateHealth(simulated):  # type: ignore[misc, valid-type]
        async def _conclude(
            self,
            item: Any,
            prerequisites: tuple[PrerequisiteResult, ...],
            receipt: str,
            rule: Any,
        ) -> OutcomeResult:
            decided: OutcomeResult = await super()._conclude(item, prerequisites, receipt, rule)
            await asyncio.to_thread(gates.decision.wait, 60)
            return decided

        async def cancel(self, item: ItemCancel, ctx: AdapterContext) -> None:
            await asyncio.to_thread(gates.refusal.wait, 60)
            await super().cancel(item, ctx)  # decided: refuses

    return LateHealth()


def _steps(status: dict[str, Any]) -> list[str]:
    return [event["state"] for event in status["timeline"]]


def _reached(running: Running, status_url: str, step: str) -> None:
    eventually(
        lambda: _steps(running.client.get(status_url).json()),
        lambda steps: step in steps,
        timeout=30,
        every=0.02,
        message=f"no {step} on the timeline",
    )


@pytest.mark.parametrize("first", ["refusal", "decision"])
def test_a_decision_the_department_could_not_cancel_stands_and_corrects_the_reply(
    settings: Settings, catalog: Catalog, platform: Platform, tmp_path: Path, first: str
) -> None:
    settings = settings.model_copy(
        update={
            "callback_backoff_seconds": 0.05,
            "outbound_hosts": ("127.0.0.1",),  # the platform listens on loopback
            "callback_url_prefixes": (platform.server.url,),
            "filedrop_dir": tmp_path / "drop",
        }
    )
    gates, ledger = Gates(), DecisionLedger()
    application = sample_application(
        catalog.bundle_types["newborn"], new_project_no(), items=[ITEM]
    )
    application["callback_url"] = platform.url
    project_no = application["project_no"]
    with running_stack(
        settings, catalog, adapters=[late_health(catalog, ledger, gates)]
    ) as running:
        receipt = running.submit(application).json()
        status_url, bundle_id = receipt["status_url"], receipt["bundle_id"]
        running.wait_for_item(status_url, ITEM, "accepted")
        eventually(lambda: ledger.decided(bundle_id, ITEM), timeout=30, message="not decided")

        withdrawn = running.client.post(f"/v1/bundles/{bundle_id}/withdraw").json()
        if first == "refusal":
            gates.refusal.set()
            _reached(running, status_url, "cancel_refused")
            gates.decision.set()
        else:
            gates.decision.set()
            _reached(running, status_url, "ignored")  # held: the cancel is not answered yet
            gates.refusal.set()
        corrected = eventually(
            lambda: running.client.get(receipt["reply_url"]).json(),
            lambda reply: reply["version"] == 2,
            timeout=30,
            message="no corrected reply",
        )
        eventually(
            lambda: platform.of(bundle_id, kind="reply"),
            lambda pushes: len(pushes) == 2,
            timeout=30,
            message="the corrected reply never reached the callback",
        )
        status = running.client.get(status_url).json()
        on_queue = [
            message
            for message in replies_on_queue(settings.broker_url, bundle_id)
            if message["kind"] == "reply"
        ]
        exported = eventually(
            # The connected database is shared: other tests' replies are exported too.
            lambda: sorted((tmp_path / "drop" / "outbox").glob(f"{project_no}.reply*.json")),
            lambda files: len(files) == 2,
            timeout=30,
            message="the corrected reply never reached the file drop",
        )

    # Before: the withdrawal's reply said "cancelled".
    assert withdrawn["version"] == 1 and withdrawn["corrects"] is None
    assert withdrawn["outcome"] == "withdrawn"
    assert [item["state"] for item in withdrawn["items"]] == ["cancelled"]
    # After: the decision stands, with its certificate, in a reply that says it corrects.
    assert corrected["outcome"] == "withdrawn"
    assert (corrected["version"], corrected["corrects"]) == (2, 1)
    assert "无法撤回，该决定有效" in corrected["correction"]
    (item,) = corrected["items"]
    assert item["state"] == "approved"
    (certificate,) = item["certificates"]
    assert certificate["certificate_name"] == item["name_zh"]
    (shown,) = status["items"]
    assert shown["state"] == "approved"
    steps = _steps(status)
    assert steps.count("replied") == 1 and steps.count("reply_corrected") == 1
    assert steps.index("cancel_refused") < steps.index("decision_stands")
    assert steps.index("decision_stands") < steps.index("reply_corrected")

    # Every channel carries both versions, the newest last: never a silent re-send.
    pushed = platform.of(bundle_id, kind="reply")
    assert [(p["version"], p["corrects"]) for p in pushed] == [(1, None), (2, 1)]
    assert pushed[1] == corrected
    assert [(r["version"], r["corrects"]) for r in on_queue] == [(1, None), (2, 1)]
    assert [path.name for path in exported] == [
        f"{project_no}.reply.json",
        f"{project_no}.reply.v2.json",
    ]
    assert json.loads(exported[1].read_text(encoding="utf-8")) == corrected
    # Each push verifies with the official Standard Webhooks library.
    webhook = Webhook(DEVELOPMENT_CALLBACK_SECRET.get_secret_value())
    for headers, body in platform.requests_of(bundle_id):
        assert webhook.verify(body, headers)["bundle_id"] == bundle_id


# Monday 2 March 2026, 10:00 in China; Tuesday 3 March is a working day.
FILED_AT = datetime(2026, 3, 2, 10, 0, tzinfo=timezone(timedelta(hours=8)))


def test_a_polled_decision_not_fetched_yet_is_polled_for_and_stands(
    settings: Settings, catalog: Catalog, platform: Platform
) -> None:
    """The department decided on day 2; the router, between two polls, did not know. Its
    refusal makes the router poll again at once, not wait for a poll it had stopped."""
    settings = settings.model_copy(
        update={
            "callback_backoff_seconds": 0.05,
            "outbound_hosts": ("127.0.0.1",),
            "callback_url_prefixes": (platform.server.url,),
            # The test sends the poll rounds itself: the stack's scheduler idles.
            "poll_round_seconds": 3600.0,
            "poll_jitter_seconds": 0,
        }
    )
    scenario = Scenario(rules={ITEM: Rule(Verdict.APPROVE, pending_working_days=1)})
    application = sample_application(
        catalog.bundle_types["newborn"], new_project_no(), items=[ITEM]
    )
    application["callback_url"] = platform.url
    with (
        time_machine.travel(FILED_AT, tick=False) as traveller,
        running_stack(settings, catalog, scenario) as running,
    ):
        receipt = running.submit(application).json()
        status_url, bundle_id = receipt["status_url"], receipt["bundle_id"]
        eventually(
            lambda: running.client.get(status_url).json()["items"][0]["decision_poll"],
            timeout=30,
            message="the department never said pending",
        )
        traveller.move_to(FILED_AT + timedelta(days=1, hours=1))  # decided, not polled
        withdrawn = running.client.post(f"/v1/bundles/{bundle_id}/withdraw").json()
        _reached(running, status_url, "cancel_refused")
        polls = PollScheduler(
            running.stack.database,
            running.stack.polls,
            jitter=timedelta(0),
        )
        assert polls.run_once(datetime.now(UTC)) == 1
        corrected = eventually(
            lambda: running.client.get(receipt["reply_url"]).json(),
            lambda reply: reply["version"] == 2,
            timeout=30,
            message="no corrected reply",
        )
        pushed = eventually(
            lambda: platform.of(bundle_id, kind="reply"),
            lambda pushes: len(pushes) == 2,
            timeout=30,
            message="the corrected reply never reached the callback",
        )
        status = running.client.get(status_url).json()

    assert [item["state"] for item in withdrawn["items"]] == ["cancelled"]
    assert [item["state"] for item in corrected["items"]] == ["approved"]
    assert corrected["items"][0]["certificates"]
    assert pushed[1] == corrected
    assert status["items"][0]["decision_poll"] is None, "still polled after the decision"
    assert "decision_stands" in _steps(status)


def test_migration_0018_keeps_each_reply_as_its_first_version(tmp_path: Path) -> None:
    database = Database(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    bundle_id = uuid.uuid4()
    with database.engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0013")
        connection.execute(
            text(
                "INSERT INTO bundles (id, project_no, bundle_type, state, application, "
                "received_at) VALUES (:id, 'P1', 'newborn', 'replied', '{}', "
                "'2026-12-28 02:00:00.000000')"
            ),
            {"id": bundle_id.hex},
        )
        connection.execute(
            text(
                "INSERT INTO replies (bundle_id, body, created_at) "
                "VALUES (:id, '{\"outcome\": \"withdrawn\"}', '2026-12-28 02:00:00.000000')"
            ),
            {"id": bundle_id.hex},
        )
    database.migrate()
    with database.transaction() as session:
        reply = session.scalars(select(ReplyRow)).one()
        assert (reply.bundle_id, reply.version) == (bundle_id, 1)
        assert reply.body == {"outcome": "withdrawn"}
    database.dispose()
