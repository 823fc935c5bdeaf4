"""`lianban dlq`: dead letters are listed with where they came from and why, and a replay
puts them back on their queue exactly once."""

from __future__ import annotations

import json
import threading
import uuid
from pathlib import Path

import pytest
from harness import consuming, emptied_department_queue, eventually, publish_to_department
from kombu import Connection, Queue
from sqlalchemy import select

from contracts import topology
from contracts.catalog import Catalog
from lianban.cli import main
from lianban.settings import Settings
from router.operations.dlq import DeadLetterQueues
from router.store import AuditRow, Database
from runtime.messaging import (
    Ack,
    Broker,
    ConsumerLoop,
    Delivery,
    Outgoing,
    Park,
    Publisher,
    Settlement,
)
from runtime.messaging.declaration import DELIVERY_LIMIT, department_queue
from runtime.messaging.envelope import (
    REFUSED_REASON_HEADER,
    REPLAYED_HEADER,
    SOURCE_QUEUE_HEADER,
)

QUEUE = department_queue("hrss")
PARKING = topology.parking_queue(QUEUE.name)


@pytest.fixture
def broker(settings: Settings, catalog: Catalog) -> Broker:
    return emptied_department_queue(settings.broker_url, catalog, "hrss")


def _publish(broker: Broker, body: bytes) -> str:
    (message_id,) = publish_to_department(broker, "hrss", body)
    return message_id


def _consume_until(loop: ConsumerLoop, done: threading.Event) -> None:
    with consuming(loop):
        assert done.wait(30)


def test_a_refused_message_is_listed_with_its_reason_and_replayed_once(
    broker: Broker, catalog: Catalog
) -> None:
    refused_once = threading.Event()
    handled: list[dict[str, object]] = []
    replay_handled = threading.Event()

    def refuse(delivery: Delivery) -> Settlement:
        refused_once.set()
        return Park("signature by an unknown key")

    message_id = _publish(broker, b'{"n": 1}')
    _consume_until(ConsumerLoop(broker, QUEUE, refuse), refused_once)

    dead = DeadLetterQueues(broker, catalog.departments)
    assert dead.counts()[PARKING] == 1
    (letter,) = dead.list(PARKING)
    assert (letter.message_id, letter.source_queue) == (message_id, QUEUE.name)
    assert letter.reason == "signature by an unknown key"
    assert dead.counts()[PARKING] == 1, "listing took the message away"
    assert dead.find(message_id) == letter

    assert dead.replay(PARKING, {str(uuid.uuid4())}) == []  # not the one parked
    assert len(dead.replay(PARKING)) == 1
    assert dead.counts()[PARKING] == 0

    def accept(delivery: Delivery) -> Settlement:
        handled.append(dict(delivery.headers))
        replay_handled.set()
        return Ack()

    _consume_until(ConsumerLoop(broker, QUEUE, accept), replay_handled)
    assert len(handled) == 1 and handled[0][REPLAYED_HEADER] == 1


# RabbitMQ 4.x drops a quorum queue's message at its 21st delivery by default.
LOOKS = 21


def test_looking_at_dead_letters_leaves_them_as_they_were(broker: Broker, catalog: Catalog) -> None:
    """Listing and showing a parked message, more often than RabbitMQ 4.x would let a
    quorum queue redeliver it, leaves its body, headers, death count and place alone."""
    bodies = [b'{"n": 1}', b'{"n": 2}', b'{"n": 3}']
    refused: list[str] = []
    all_refused = threading.Event()

    def refuse(delivery: Delivery) -> Settlement:
        refused.append(delivery.message_id)
        if len(refused) == len(bodies):
            all_refused.set()
        return Park("signature by an unknown key")

    message_ids = publish_to_department(broker, "hrss", *bodies)
    _consume_until(ConsumerLoop(broker, QUEUE, refuse), all_refused)
    dead = DeadLetterQueues(broker, catalog.departments)
    eventually(lambda: dead.counts()[PARKING] == len(bodies), timeout=10, message="not all parked")

    first_look = dead.list(PARKING)
    for _ in range(LOOKS):
        assert dead.list(PARKING) == first_look
    for _ in range(2):  # `dlq show` browses the same way, through every parking lot
        assert dead.find(message_ids[1]) == first_look[1]
    assert [letter.message_id for letter in first_look] == message_ids
    assert {letter.count for letter in first_look} == {1}

    with broker.connect() as connection:
        parking = Queue(PARKING, no_declare=True)(connection.default_channel)
        taken = [parking.get(no_ack=True, accept=None) for _ in bodies]
        assert parking.get(no_ack=True) is None
    drained = [Delivery.of(message) for message in taken if message is not None]
    assert [delivery.body for delivery in drained] == bodies  # all there, in their order
    for delivery in drained:
        assert "x-delivery-count" not in delivery.headers
        # RabbitMQ's own record of the death (the in-memory transport keeps none).
        assert all(death["count"] == 1 for death in delivery.headers.get("x-death") or [])


def test_a_replay_goes_to_the_parking_lots_own_queue_whatever_the_letter_says(
    broker: Broker, catalog: Catalog
) -> None:
    """Finding 2: a letter planted in hrss's parking lot, naming the replies queue as its
    source, is replayed into hrss's queue — the only one that parking lot belongs to."""
    planted = Outgoing(
        topology.dead_letter_exchange(QUEUE.name),
        PARKING,
        b'{"planted": true}',
        str(uuid.uuid4()),
        str(uuid.uuid4()),
        {SOURCE_QUEUE_HEADER: topology.REPLIES_QUEUE, REFUSED_REASON_HEADER: "planted"},
    )
    with Publisher(broker) as publisher:
        publisher.publish(planted)
    dead = DeadLetterQueues(broker, catalog.departments)
    (letter,) = dead.list(PARKING)
    assert letter.source_queue == QUEUE.name

    assert len(dead.replay(PARKING)) == 1
    with broker.connect() as connection:
        channel = connection.default_channel
        depths = {
            name: Queue(name, no_declare=True)(channel).queue_declare(passive=True).message_count
            for name in (QUEUE.name, topology.REPLIES_QUEUE)
        }
    assert depths == {QUEUE.name: 1, topology.REPLIES_QUEUE: 0}


@pytest.mark.connected
def test_a_message_past_its_delivery_limit_is_listed_and_replayable_from_the_cli(
    amqp_url: str,
    catalog: Catalog,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    broker = emptied_department_queue(amqp_url, catalog, "hrss")
    message_id = _publish(broker, b'{"n": 2}')
    # A consumer of another kind that requeues forever: RabbitMQ stops it at the limit.
    with Connection(amqp_url) as connection:
        queue = connection.SimpleQueue(Queue(QUEUE.name, no_declare=True))
        for _ in range(DELIVERY_LIMIT + 1):
            queue.get(timeout=10).requeue()
        queue.close()
    dead = DeadLetterQueues(broker, catalog.departments)
    eventually(
        lambda: dead.counts()[PARKING],
        timeout=10,
        every=0.1,
        message="RabbitMQ did not dead-letter the message at its delivery limit",
    )
    (letter,) = dead.list(PARKING)
    assert letter.reason == "delivery_limit" and letter.source_queue == QUEUE.name

    monkeypatch.setenv("LIANBAN_BROKER_URL", amqp_url)
    assert main(["dlq", "list", "--queue", "lianban.dept.police.parking"]) == 0
    assert capsys.readouterr().out == "no dead letters in lianban.dept.police.parking\n"
    audit_log = Database(f"sqlite:///{tmp_path / 'audit.db'}")
    audit_log.migrate()
    monkeypatch.setenv("LIANBAN_DATABASE_URL", audit_log.url)
    assert main(["dlq", "list", "--json"]) == 0
    listed = json.loads(capsys.readouterr().out)
    assert [entry["message_id"] for entry in listed] == [message_id]
    assert listed == [letter.summary().model_dump(mode="json")]  # the ops page's shape
    assert listed[0]["bundle_id"] == letter.bundle_id != ""
    assert main(["dlq", "show", message_id]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert shown == listed[0] | {"body": {"n": 2}}
    assert main(["dlq", "replay", PARKING, "--message-id", message_id]) == 0
    assert dead.counts()[PARKING] == 0
    with audit_log.transaction() as session:
        (replay,) = session.scalars(select(AuditRow).where(AuditRow.event == "replayed"))
    assert replay.actor.endswith("(lianban dlq)") and message_id in (replay.detail or "")
    audit_log.dispose()
    with broker.connect() as connection:
        depth = QUEUE(connection.default_channel).queue_declare(passive=True).message_count
    assert depth == 1
