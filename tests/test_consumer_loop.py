"""The consumer loop never drops and never spins: refused and failing messages are parked
with their reason, a handler whose dependency is down holds the message and keeps its
order, delayed retries come back on both transports, settlements made on other threads
are carried out, and a consumer the broker stopped feeding is restarted."""

from __future__ import annotations

import subprocess
import threading
import time
import uuid
from collections.abc import Sequence

import amqp
import pytest
from harness import consuming, emptied_department_queue, eventually, publish_to_department
from kombu import Connection, Message, Queue

from contracts import topology
from contracts.catalog import Catalog
from contracts.errors import MessageRefused, PublishFailed, TransientError
from lianban.settings import Settings
from runtime.messaging import (
    PENDING,
    Ack,
    Broker,
    ConsumerLoop,
    Delivery,
    Hold,
    Outgoing,
    Park,
    Publisher,
    RetryLater,
    Settlement,
)
from runtime.messaging.declaration import declare_topology, department_queue
from runtime.messaging.delayed import RETRIES_HEADER
from runtime.messaging.envelope import REFUSED_REASON_HEADER, SOURCE_QUEUE_HEADER
from runtime.messaging.settlement import Pending

QUEUE = department_queue("police")
PARKING = topology.parking_queue(QUEUE.name)


@pytest.fixture
def broker(settings: Settings, catalog: Catalog) -> Broker:
    return emptied_department_queue(settings.broker_url, catalog, "police")


def _publish(broker: Broker, *bodies: bytes) -> None:
    publish_to_department(broker, "police", *bodies)


def _parked(broker: Broker) -> list[Message]:
    messages = []
    with Connection(broker.url) as connection:
        queue = connection.SimpleQueue(Queue(PARKING, no_declare=True))
        while True:
            try:
                message = queue.get(timeout=1)
            except queue.Empty:
                return messages
            message.ack()
            messages.append(message)


def _depth(broker: Broker) -> int:
    with broker.connect() as connection:
        declared = QUEUE(connection.default_channel).queue_declare(passive=True)
        return int(declared.message_count)


def test_refused_and_failing_messages_are_parked_with_their_reason(broker: Broker) -> None:
    handled: list[bytes] = []

    def handler(delivery: Delivery) -> Settlement:
        if delivery.body == b'"forged"':
            raise MessageRefused("bad signature")
        if delivery.body == b'"poison"':
            raise KeyError("a bug")
        if delivery.body == b'"unknown"':
            return Park("names nothing we know")
        handled.append(delivery.body)
        return Ack()

    with consuming(ConsumerLoop(broker, QUEUE, handler)):
        _publish(broker, b'"forged"', b'"poison"', b'"unknown"', b'"fine"')
        eventually(
            lambda: handled == [b'"fine"'], timeout=30, message="the fine message was not handled"
        )
    parked = {Delivery.of(message).body: message.headers for message in _parked(broker)}
    assert set(parked) == {b'"forged"', b'"poison"', b'"unknown"'}
    assert parked[b'"forged"'][REFUSED_REASON_HEADER] == "bad signature"
    assert parked[b'"unknown"'][REFUSED_REASON_HEADER] == "names nothing we know"
    assert "KeyError" in parked[b'"poison"'][REFUSED_REASON_HEADER]
    assert parked[b'"poison"'][SOURCE_QUEUE_HEADER] == QUEUE.name
    assert _depth(broker) == 0


def test_an_unavailable_dependency_holds_the_message_in_order_without_redelivery(
    broker: Broker,
) -> None:
    handled: list[tuple[bytes, int]] = []
    failures_left = [4]

    def handler(delivery: Delivery) -> Settlement:
        if failures_left[0]:
            failures_left[0] -= 1
            if failures_left[0] % 2:
                return Hold("database unavailable")
            raise TransientError("database unavailable")
        handled.append((delivery.body, delivery.attempt))
        return Ack()

    with consuming(ConsumerLoop(broker, QUEUE, handler)):
        _publish(broker, b'"first"', b'"second"', b'"third"')
        eventually(lambda: len(handled) == 3, timeout=30, message="three messages were not handled")
    assert [body for body, _ in handled] == [b'"first"', b'"second"', b'"third"']
    assert all(attempt == 1 for _, attempt in handled), handled
    assert _parked(broker) == []


def test_deliveries_waiting_together_go_to_the_batch_handler_in_one_call(
    broker: Broker,
) -> None:
    batches: list[list[bytes]] = []
    singles: list[bytes] = []

    def handler(delivery: Delivery) -> Settlement:
        singles.append(delivery.body)
        return Ack()

    def batch_handler(deliveries: Sequence[Delivery]) -> list[Settlement]:
        batches.append([delivery.body for delivery in deliveries])
        return [
            Park("bad signature") if delivery.body == b'"forged"' else Ack()
            for delivery in deliveries
        ]

    bodies = [f'"{n}"'.encode() for n in range(6)]
    _publish(broker, *bodies[:3], b'"forged"', *bodies[3:])  # waiting before the consumer
    with consuming(ConsumerLoop(broker, QUEUE, handler, batch_handler=batch_handler)):
        eventually(
            lambda: sum(map(len, batches)) + len(singles) == 7,
            timeout=30,
            message="seven messages were not handed over",
        )
    assert max(map(len, batches)) > 1, batches
    handed_over = [body for batch in batches for body in batch]
    assert [body for body in handed_over + singles if body != b'"forged"'] == bodies
    parked = _parked(broker)
    assert [(Delivery.of(m).body, m.headers[REFUSED_REASON_HEADER]) for m in parked] == [
        (b'"forged"', "bad signature")
    ]
    assert _depth(broker) == 0


def test_a_failing_batch_is_retried_one_at_a_time_and_only_the_poison_is_parked(
    broker: Broker,
) -> None:
    singles: list[bytes] = []

    def handler(delivery: Delivery) -> Settlement:
        if delivery.body == b'"poison"':
            raise KeyError("a bug")
        singles.append(delivery.body)
        return Ack()

    def batch_handler(deliveries: Sequence[Delivery]) -> list[Settlement]:
        raise KeyError("one of these is poison")

    _publish(broker, b'"first"', b'"poison"', b'"last"')
    with consuming(ConsumerLoop(broker, QUEUE, handler, batch_handler=batch_handler)):
        eventually(lambda: len(singles) == 2, timeout=30, message="two messages were not handled")
    assert singles == [b'"first"', b'"last"']
    assert [Delivery.of(message).body for message in _parked(broker)] == [b'"poison"']
    assert _depth(broker) == 0


def test_a_consumer_the_broker_stopped_feeding_is_restarted(broker: Broker) -> None:
    handled: list[bytes] = []

    def handler(delivery: Delivery) -> Settlement:
        if delivery.body == b'"silence"':
            # What a lost basic.cancel or a wedged channel looks like from the client: the
            # connection is healthy and nothing arrives. The handler runs on the loop's
            # thread, which owns the channel.
            channel = loop._channel
            # py-amqp keeps consumer tags in `callbacks`, kombu's virtual channels elsewhere.
            tags = getattr(channel, "callbacks", None) or channel._tag_to_queue
            for tag in list(tags):
                channel.basic_cancel(tag)
        handled.append(delivery.body)
        return Ack()

    loop = ConsumerLoop(broker, QUEUE, handler, liveness_seconds=1.0)
    with consuming(loop):
        _publish(broker, b'"silence"')
        eventually(
            lambda: handled == [b'"silence"'],
            timeout=30,
            message="the silencing message was not handled",
        )
        _publish(broker, b'"after the silence"')
        eventually(
            lambda: handled == [b'"silence"', b'"after the silence"'],
            timeout=30,
            message="the stalled consumer was not restarted",
        )


class _LeftPending:
    """A handler that answers PENDING, keeping each delivery for the test to settle."""

    def __init__(self) -> None:
        self.deliveries: list[Delivery] = []

    def __call__(self, delivery: Delivery) -> Settlement | Pending:
        self.deliveries.append(delivery)
        return PENDING

    def handed_over(self, count: int) -> list[Delivery]:
        """The deliveries handed over, once there are `count` of them."""
        eventually(
            lambda: len(self.deliveries) == count,
            timeout=30,
            message=f"{count} deliveries were not handed over",
        )
        return self.deliveries


def test_deliveries_left_pending_are_settled_from_another_thread(broker: Broker) -> None:
    """A handler may answer PENDING and settle later, from any thread; the loop alone
    acknowledges, and publishes what the settlement carries before it does."""
    handler = _LeftPending()

    caused = Outgoing(
        exchange=topology.DISPATCH_EXCHANGE,
        routing_key=topology.dispatch_routing_key("police", "any"),
        body=b'"caused"',
        message_id=str(uuid.uuid4()),
        correlation_id=str(uuid.uuid4()),
    )
    loop = ConsumerLoop(broker, QUEUE, handler)
    with consuming(loop):
        _publish(broker, b'"first"', b'"second"')
        first, second = handler.handed_over(2)
        threading.Thread(target=loop.settle, args=(second, Park("refused later"))).start()
        threading.Thread(target=loop.settle, args=(first, Ack(publish=(caused,)))).start()
        eventually(
            lambda: [d.body for d in handler.deliveries] == [b'"first"', b'"second"', b'"caused"'],
            timeout=30,
            message="the settlement's message was not published",
        )
        with pytest.raises(TypeError):
            loop.settle(handler.deliveries[2], Hold("not from another thread"))  # type: ignore[arg-type]
        loop.settle(handler.deliveries[2], Ack())
    assert [Delivery.of(m).body for m in _parked(broker)] == [b'"second"']
    assert _depth(broker) == 0


@pytest.mark.connected
def test_acks_carried_out_together_leave_an_earlier_pending_delivery_unsettled(
    amqp_url: str, catalog: Catalog
) -> None:
    """Acks carried out together may go as one `multiple` ack, which settles every earlier
    delivery of the channel: never one still pending, which comes back after a stop (on
    RabbitMQ: the in-memory transport has no `multiple`, nor requeues on closing)."""
    broker = emptied_department_queue(amqp_url, catalog, "police")
    handler = _LeftPending()

    loop = ConsumerLoop(broker, QUEUE, handler, grace_seconds=0.5)
    with consuming(loop):
        _publish(broker, b'"first"', b'"second"', b'"third"', b'"fourth"')
        for later in handler.handed_over(4)[1:]:
            loop.settle(later, Ack())
    assert _depth(broker) == 1  # the first, never settled, is back in the queue
    assert _parked(broker) == []


@pytest.mark.connected
def test_deliveries_settled_moments_apart_are_acknowledged_together(
    amqp_url: str, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each ack waits a moment for others, to go with them as one `multiple` ack: one
    frame, and one Raft command in the quorum queue instead of one each."""
    broker = emptied_department_queue(amqp_url, catalog, "police")
    acks: list[bool] = []
    basic_ack = amqp.Channel.basic_ack

    def counted_ack(channel: amqp.Channel, delivery_tag: int, multiple: bool = False) -> None:
        acks.append(multiple)
        basic_ack(channel, delivery_tag, multiple)

    monkeypatch.setattr(amqp.Channel, "basic_ack", counted_ack)
    handler = _LeftPending()

    loop = ConsumerLoop(broker, QUEUE, handler, tick_seconds=0.01)
    with consuming(loop):
        _publish(broker, b'"1"', b'"2"', b'"3"', b'"4"')
        for delivery in handler.handed_over(
            4
        ):  # each settlement carried out alone, a few ticks apart
            loop.settle(delivery, Ack())
            time.sleep(0.03)
        eventually(lambda: bool(acks), timeout=30, message="nothing was acknowledged")
    assert acks == [True], acks
    assert _depth(broker) == 0  # all four acknowledged: none came back at the stop


@pytest.mark.connected
def test_a_settlement_from_another_thread_ends_the_consumers_wait(
    amqp_url: str, catalog: Catalog
) -> None:
    """On RabbitMQ what another thread settles or sends wakes the consumer: a pending
    delivery needs no tick (here of ten minutes) to be carried out."""
    broker = emptied_department_queue(amqp_url, catalog, "police")
    handler = _LeftPending()
    loop = ConsumerLoop(broker, QUEUE, handler, tick_seconds=600)
    stop = threading.Event()
    thread = threading.Thread(target=loop.run, args=(stop,), daemon=True)
    thread.start()
    assert loop.ready.wait(30)
    try:
        _publish(broker, b'"refused"', b'"last"')
        refused, last = handler.handed_over(2)
        loop.settle(refused, Park("refused"))
        parked = eventually(
            lambda: _parked(broker), timeout=30, message="the settlement waited for the tick"
        )
    finally:
        stop.set()
        loop.settle(last, Ack())  # and the stop is seen at once, too
        thread.join(30)
    assert [Delivery.of(message).body for message in parked] == [b'"refused"']
    assert not thread.is_alive()
    assert _depth(broker) == 0


def test_parked_and_retried_copies_of_a_batch_go_out_in_one_confirmed_publish(
    broker: Broker, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What a batch's settlements publish (parked and retried copies alike) waits for one
    round of confirms, not one each."""
    handovers: list[int] = []  # how many deliveries each call to a handler got
    handled: list[bytes] = []

    def park_or_retry_once(delivery: Delivery) -> Settlement:
        handled.append(delivery.body)
        if b"retry" in delivery.body and RETRIES_HEADER not in delivery.headers:
            return RetryLater("later")
        return Park("refused")

    def handler(delivery: Delivery) -> Settlement:
        handovers.append(1)
        return park_or_retry_once(delivery)

    def batch_handler(deliveries: Sequence[Delivery]) -> list[Settlement]:
        handovers.append(len(deliveries))
        return [park_or_retry_once(delivery) for delivery in deliveries]

    _publish(broker, *(f'"park {n}"'.encode() for n in range(5)), b'"retry"')
    publishes: list[int] = []  # sizes of the loop's confirmed publishes, from here on
    publish_many = Publisher.publish_many

    def counted_publish(publisher: Publisher, messages: Sequence[Outgoing]) -> None:
        publishes.extend([len(messages)] if messages else [])
        publish_many(publisher, messages)

    monkeypatch.setattr(Publisher, "publish_many", counted_publish)
    loop = ConsumerLoop(broker, QUEUE, handler, batch_handler=batch_handler)
    with consuming(loop):
        eventually(
            lambda: len(handled) == 7, timeout=30, message="the retried message did not come back"
        )
    assert max(handovers) > 1, handovers
    assert max(publishes) > 1, publishes  # one each, were copies published one by one
    assert len(_parked(broker)) == 6


def test_a_delivery_retried_later_comes_back_after_its_delay(broker: Broker) -> None:
    """The same body on both transports: RabbitMQ's TTL tier, or the loop's own timer."""
    seen: list[tuple[bytes, int]] = []

    def handler(delivery: Delivery) -> Settlement:
        retries = int(delivery.headers.get(RETRIES_HEADER, 0))
        seen.append((delivery.body, retries))
        return RetryLater("department down") if retries == 0 else Ack()

    with consuming(ConsumerLoop(broker, QUEUE, handler)):
        _publish(broker, b'"later"')
        eventually(lambda: len(seen) == 2, timeout=30, message="the delivery did not come back")
    assert seen == [(b'"later"', 0), (b'"later"', 1)]
    assert _parked(broker) == [] and _depth(broker) == 0


@pytest.mark.connected
def test_a_consumer_whose_connection_is_closed_reconnects(amqp_url: str, catalog: Catalog) -> None:
    broker = emptied_department_queue(amqp_url, catalog, "police")
    handled: list[bytes] = []

    def handler(delivery: Delivery) -> Settlement:
        handled.append(delivery.body)
        return Ack()

    with consuming(ConsumerLoop(broker, QUEUE, handler)):
        vhost = amqp_url.rsplit("/", 1)[1]
        subprocess.run(
            ["rabbitmqctl", "close_all_connections", "-p", vhost, "test"],
            check=True,
            capture_output=True,
            timeout=60,
        )
        _publish(broker, b'"after the reconnect"')
        eventually(
            lambda: b'"after the reconnect"' in handled,
            timeout=30,
            message="the consumer did not reconnect",
        )


@pytest.mark.connected
def test_an_unroutable_publish_is_not_reported_sent(amqp_url: str, catalog: Catalog) -> None:
    broker = Broker(amqp_url)
    with broker.connect() as connection:
        declare_topology(connection, catalog.departments)
    with Publisher(broker) as publisher, pytest.raises(PublishFailed, match="unroutable"):
        publisher.publish(
            Outgoing(
                exchange=topology.DISPATCH_EXCHANGE,
                routing_key="dept.nowhere.any",
                body=b"{}",
                message_id=str(uuid.uuid4()),
                correlation_id=str(uuid.uuid4()),
            )
        )
