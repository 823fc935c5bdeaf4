"""Delivery (统一领取 / 分别领取) and the platform callback that is retried, never dropped."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from harness import Platform, Running, eventually, new_project_no, running_stack
from sqlalchemy import event

from contracts.catalog import Catalog
from contracts.samples import sample_application
from lianban.settings import DEVELOPMENT_CALLBACK_SECRET, Settings
from router.channels.callbacks import NOT_DELIVERED, CallbackSender
from router.store import Database
from runtime.outbound import OutboundPolicy


@pytest.fixture
def platform() -> Iterator[Platform]:
    with Platform(refuse_first=3) as platform:
        yield platform


def _wait_until_delivered(running: Running, status_url: str) -> dict[str, Any]:
    def all_delivered(status: dict[str, Any]) -> bool:
        callbacks = status["callbacks"]
        return bool(callbacks) and all(callback["delivered_at"] for callback in callbacks)

    status: dict[str, Any] = eventually(
        lambda: running.client.get(status_url).json(),
        all_delivered,
        timeout=30,
        message="callbacks never all delivered",
    )
    return status


def _wait_for_acceptances(platform: Platform, bundle_id: str, count: int) -> None:
    eventually(
        lambda: platform.of(bundle_id, kind="acceptance"),
        lambda pushed: len(pushed) == count,
        timeout=30,
        message="the acceptance notices were not all pushed",
    )


def test_per_item_notices_then_one_reply_reach_a_callback_that_failed_at_first(
    settings: Settings, catalog: Catalog, platform: Platform
) -> None:
    # The platform listens on loopback: allow-listed, as an internal callback host must be.
    settings = settings.model_copy(
        update={"callback_backoff_seconds": 0.05, "outbound_hosts": ("127.0.0.1",)}
    )
    newborn = catalog.bundle_types["newborn"]
    url = f"{platform.server.url}/callback"
    with running_stack(settings, catalog) as running:
        per_item = sample_application(newborn, new_project_no())
        per_item.update(delivery="per_item", callback_url=url)
        unified = sample_application(newborn, new_project_no(), sequence=2)
        unified.update(callback_url=url)
        receipts = [running.submit(application).json() for application in (per_item, unified)]
        replies = [running.wait_for_reply(receipt["reply_url"]) for receipt in receipts]
        for receipt, reply in zip(receipts, replies, strict=True):
            # Each item's 受理 notice is pushed too (tests/test_notices.py): all in first.
            _wait_for_acceptances(platform, receipt["bundle_id"], len(reply["items"]))
        statuses = [_wait_until_delivered(running, r["status_url"]) for r in receipts]

    per_item_pushes = platform.of(receipts[0]["bundle_id"])
    kinds = [body["kind"] for body in per_item_pushes]
    items = len(replies[0]["items"])
    assert sorted(kinds) == ["acceptance"] * items + ["item_notice"] * items + ["reply"]
    notices = {
        body["result"]["item"]: body["result"]
        for body in per_item_pushes
        if body["kind"] == "item_notice"
    }
    assert set(notices) == {item["item"] for item in replies[0]["items"]}
    assert all(result["state"] == "approved" for result in notices.values())
    unified_kinds = [body["kind"] for body in platform.of(receipts[1]["bundle_id"])]
    assert sorted(unified_kinds) == ["acceptance"] * len(replies[1]["items"]) + ["reply"]

    assert platform.refused == 3
    attempts = [callback["attempts"] for status in statuses for callback in status["callbacks"]]
    assert sum(attempts) == len(attempts) + 3, "each refusal is retried exactly once more"
    timeline_states = [event["state"] for event in statuses[0]["timeline"]]
    assert timeline_states.count("callback_delivered") == len(kinds)


def test_a_failing_callback_stays_visible_and_is_not_dropped(
    settings: Settings, catalog: Catalog
) -> None:
    # The platform listens on loopback: allow-listed, as an internal callback host must be.
    settings = settings.model_copy(
        update={"callback_backoff_seconds": 0.05, "outbound_hosts": ("127.0.0.1",)}
    )
    newborn = catalog.bundle_types["newborn"]
    with running_stack(settings, catalog) as running:
        application = sample_application(newborn, new_project_no())
        application["callback_url"] = "http://127.0.0.1:9/unreachable"  # discard port
        receipt = running.submit(application).json()
        running.wait_for_reply(receipt["reply_url"])

        def the_callback() -> dict[str, Any]:
            callbacks = running.client.get(receipt["status_url"]).json()["callbacks"]
            (callback,) = [callback for callback in callbacks if callback["kind"] == "reply"]
            return callback

        callback = eventually(
            the_callback,
            lambda callback: callback["attempts"] >= 3,
            timeout=30,
            message="the callback was not tried three times",
        )

    assert callback["delivered_at"] is None
    assert callback["attempts"] >= 3
    assert callback["last_error"] == NOT_DELIVERED  # not what the target answered


def test_an_idle_callback_poll_is_one_select_that_neither_locks_nor_commits(
    database: Database,
) -> None:
    """The sender polls five times a second, whether or not any platform gave a callback
    URL; only a poll that finds a row due claims rows in a transaction."""
    sender = CallbackSender(database, OutboundPolicy(), secret=DEVELOPMENT_CALLBACK_SECRET)
    statements: list[str] = []
    commits: list[object] = []

    def executed(_conn: object, _cursor: object, statement: str, *_args: object) -> None:
        statements.append(statement)

    def committed(connection: object) -> None:
        commits.append(connection)

    event.listen(database.engine, "before_cursor_execute", executed)
    event.listen(database.engine, "commit", committed)
    try:
        assert sender.send_due() == 0
    finally:
        event.remove(database.engine, "before_cursor_execute", executed)
        event.remove(database.engine, "commit", committed)

    # SQLite takes its write lock at BEGIN (router.store.engine), even for a read.
    (select,) = [statement for statement in statements if statement != "BEGIN IMMEDIATE"]
    assert select.startswith("SELECT") and "FOR UPDATE" not in select
    assert commits == []
