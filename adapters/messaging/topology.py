"""Declares Lianban's exchanges and queues: durable quorum queues with dead-lettering.

Every consumed queue dead-letters into its own parking-lot queue, so a message the
consumer refuses (bad contract, delivery limit reached) is kept for an operator,
never dropped.
"""

from __future__ import annotations

from collections.abc import Iterable

from kombu import Connection, Exchange, Queue

from contracts import topology

DELIVERY_LIMIT = 10


def dispatch_exchange() -> Exchange:
    return Exchange(topology.DISPATCH_EXCHANGE, type="topic", durable=True)


def outcomes_exchange() -> Exchange:
    return Exchange(topology.OUTCOMES_EXCHANGE, type="topic", durable=True)


def replies_exchange() -> Exchange:
    return Exchange(topology.REPLIES_EXCHANGE, type="topic", durable=True)


def dead_letter_exchange() -> Exchange:
    return Exchange(topology.DEAD_LETTER_EXCHANGE, type="direct", durable=True)


def _quorum_queue(name: str, exchange: Exchange, routing_key: str) -> Queue:
    return Queue(
        name,
        exchange,
        routing_key=routing_key,
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": topology.DEAD_LETTER_EXCHANGE,
            "x-dead-letter-routing-key": topology.parking_queue(name),
            "x-delivery-limit": DELIVERY_LIMIT,
        },
    )


def _parking_queue(name: str) -> Queue:
    parking = topology.parking_queue(name)
    return Queue(
        parking,
        dead_letter_exchange(),
        routing_key=parking,
        durable=True,
        queue_arguments={"x-queue-type": "quorum"},
    )


def department_queue(department: str) -> Queue:
    return _quorum_queue(
        topology.department_queue(department),
        dispatch_exchange(),
        topology.department_binding(department),
    )


def outcomes_queue() -> Queue:
    return _quorum_queue(topology.OUTCOMES_QUEUE, outcomes_exchange(), "outcome.#")


def replies_queue() -> Queue:
    return _quorum_queue(topology.REPLIES_QUEUE, replies_exchange(), "reply.#")


def declare_topology(connection: Connection, departments: Iterable[str]) -> None:
    """Declare everything (idempotent): exchanges, department/outcome/reply queues, parking lots."""
    channel = connection.default_channel
    for exchange in (
        dispatch_exchange(),
        outcomes_exchange(),
        replies_exchange(),
        dead_letter_exchange(),
    ):
        exchange(channel).declare()
    queues = [outcomes_queue(), replies_queue(), *map(department_queue, sorted(departments))]
    for queue in queues:
        queue(channel).declare()
        _parking_queue(queue.name)(channel).declare()
