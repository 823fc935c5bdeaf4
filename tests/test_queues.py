"""`lianban queues` against the real broker's management API, in a vhost of the test's own.

A bundle's first items are dispatched (intake and relay only: no adapter consumes), then
one department's message is held unacknowledged by a consumer and another department's
is rejected into its parking lot; the command must show exactly that.
"""

from __future__ import annotations

import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import AUTH, TEST_API_TOKEN, eventually, new_project_no, put_material
from kombu import Connection, Consumer, Message

from contracts import topology
from contracts.catalog import Catalog
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.cli import main
from lianban.settings import Settings
from lianban.stack import Role, Stack
from router.operations.queues import ManagementApi
from runtime.messaging.declaration import department_queue

pytestmark = pytest.mark.connected


@pytest.fixture
def dispatching(
    amqp_url: str, tmp_path: Path, catalog: Catalog
) -> Iterator[tuple[Settings, dict[str, int]]]:
    """Intake and relay on the real broker; nothing consumes the department queues. Yields
    the settings and how many items were dispatched to each department."""
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'queues.db'}",
        broker_url=amqp_url,
        materials_dir=tmp_path / "materials",
        port=0,
        api_tokens=(TEST_API_TOKEN,),
    )
    stack = Stack(settings, catalog, {Role.SERVE, Role.RELAY})
    stack.start()
    try:
        put_material(stack, hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
        application = sample_application(catalog.bundle_types["newborn"], new_project_no())
        receipt = httpx.post(
            f"{stack.base_url}/v1/bundles",
            json=application,
            headers={"Idempotency-Key": application["project_no"], **AUTH},
        ).json()
        status = httpx.get(f"{stack.base_url}{receipt['status_url']}", headers=AUTH).json()
        dispatched = Counter(
            item["department"] for item in status["items"] if item["state"] == "dispatched"
        )
        yield settings, dict(dispatched)
    finally:
        stack.stop()


def _queues_json(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], settings: Settings
) -> dict[str, dict[str, Any]]:
    monkeypatch.setenv("LIANBAN_BROKER_URL", settings.broker_url)
    monkeypatch.setenv("LIANBAN_DATABASE_URL", settings.database_url)
    assert main(["queues", "--json"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    return {row["department"]: row for row in rows}


def _wait_until_published(settings: Settings, dispatched: dict[str, int]) -> None:
    api = ManagementApi.for_broker(settings.broker_url)

    def ready() -> dict[str, int]:
        counts = api.counts(topology.department_queue(d) for d in dispatched)
        return {name.removeprefix("lianban.dept."): c.ready for name, c in counts.items()}

    eventually(
        ready,
        lambda now: now == dispatched,
        timeout=60,
        every=0.5,
        message=f"the relay did not publish {dispatched}",
    )


def test_queues_shows_ready_unacked_consumers_age_and_dead_letters(
    dispatching: tuple[Settings, dict[str, int]],
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    settings, dispatched = dispatching
    _wait_until_published(settings, dispatched)
    held, rejected = sorted(dispatched)[:2]
    with Connection(settings.broker_url) as connection:
        # A consumer that holds one message unacknowledged, as a busy adapter does.
        got: list[Message] = []
        channel = connection.channel()
        consumer = Consumer(
            channel,
            queues=[department_queue(held)],
            callbacks=[lambda _body, message: got.append(message)],
            prefetch_count=1,
        )
        consumer.consume()
        while not got:
            connection.drain_events(timeout=30)
        # A message the department's adapter refused: dead-lettered into the parking lot.
        refused = connection.default_channel.basic_get(
            topology.department_queue(rejected), no_ack=False
        )
        connection.default_channel.basic_reject(refused.delivery_info["delivery_tag"], False)

        expected = {
            held: (dispatched[held] - 1, 1, 1, 0),
            rejected: (dispatched[rejected] - 1, 0, 0, 1),
        }

        def figures(shown: dict[str, dict[str, Any]]) -> dict[str, tuple[int, ...]]:
            return {
                department: (
                    shown[department]["ready"],
                    shown[department]["unacknowledged"],
                    shown[department]["consumers"],
                    shown[department]["dead_letters"],
                )
                for department in expected
            }

        shown = eventually(
            lambda: _queues_json(monkeypatch, capsys, settings),
            lambda shown: figures(shown) == expected,
            timeout=60,  # the management API refreshes its figures every 5 s
            every=1,
            message="`lianban queues --json` never showed the held and the parked message",
        )
        assert main(["queues"]) == 0
        table = capsys.readouterr().out
        consumer.cancel()
        channel.close()

    assert shown[held]["oldest_age_seconds"] >= 0
    waiting = {
        department for department, row in shown.items() if row["ready"] or row["unacknowledged"]
    }
    assert waiting == {d for d, count in dispatched.items() if count > (d == rejected)}
    assert all(shown[d]["oldest_age_seconds"] is not None for d in waiting)
    assert all(shown[d]["oldest_age_seconds"] is None for d in shown if d not in waiting)
    assert "dead letters" in table.splitlines()[0]
    held_line = next(line for line in table.splitlines() if line.startswith(held + " "))
    assert held_line.split()[1:4] == [str(dispatched[held] - 1), "1", "1"]
