"""Declares Lianban's exchanges and queues: durable quorum queues with dead-lettering.

Every consumed queue dead-letters into its own parking-lot queue (a durable classic
queue, so that browsing it costs nothing: see `_parking_queue`), through an exchange
of its own (`<queue>.dead`, bound to that parking lot only), so a message the consumer
refuses (bad contract, delivery limit reached) is kept for an operator, never dropped.
Dead-lettering is at-least-once (quorum queues, RabbitMQ ≥ 3.10): the message leaves
the source only once the parking lot has confirmed it.

Delayed retries of a department's queue go through TTL queues of its own, one per delay
in `RETRY_DELAYS_SECONDS`, bound to its headers exchange `<queue>.retry` by the delay
header. An expired message is dead-lettered to `lianban.dispatch` under a routing key
only that department's queue is bound to — whatever was published there, it can reach
no other department — without a tight requeue loop and without holding a consumer while
it waits (`runtime.messaging.delayed` sends them there, and stands in for the tiers on
the in-memory transport, which has no TTL or dead-lettering).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

from kombu import Connection, Exchange, Queue

from contracts import topology

DELIVERY_LIMIT = 10
RETRY_DELAYS_SECONDS = (1, 5, 30, 120, 600)
# Not `x-…`: RabbitMQ's headers exchange ignores binding arguments that start with `x-`,
# so such a header matched every tier and each retry came back once per tier.
RETRY_DELAY_HEADER = "lianban-delay"

# Dead letters must not be lost between queues: at-least-once dead-lettering needs
# the source queue to refuse publishes rather than drop its head when it overflows.
_AT_LEAST_ONCE = {"x-dead-letter-strategy": "at-least-once", "x-overflow": "reject-publish"}


def dispatch_exchange() -> Exchange:
    return Exchange(topology.DISPATCH_EXCHANGE, type="topic", durable=True)


def outcomes_exchange() -> Exchange:
    return Exchange(topology.OUTCOMES_EXCHANGE, type="topic", durable=True)


def replies_exchange() -> Exchange:
    return Exchange(topology.REPLIES_EXCHANGE, type="topic", durable=True)


def dead_letter_exchange(queue: str) -> Exchange:
    return Exchange(topology.dead_letter_exchange(queue), type="fanout", durable=True)


def retry_exchange(department: str, area: str | None = None) -> Exchange:
    queue = topology.department_queue(department, area)
    return Exchange(topology.retry_exchange(queue), type="headers", durable=True)


def retry_queue(department: str, delay_seconds: int, area: str | None = None) -> Queue:
    label = f"{delay_seconds}s"
    # Back to the queue it came from, and only there: its own area's routing key.
    back = topology.dispatch_routing_key(department, "retry", area)
    return Queue(
        topology.retry_queue(topology.department_queue(department, area), label),
        retry_exchange(department, area),
        durable=True,
        binding_arguments={"x-match": "all", RETRY_DELAY_HEADER: label},
        queue_arguments={
            "x-queue-type": "quorum",
            "x-message-ttl": delay_seconds * 1000,
            # A routing key of the department's own: back to its queue, and only there.
            "x-dead-letter-exchange": topology.DISPATCH_EXCHANGE,
            "x-dead-letter-routing-key": back,
            **_AT_LEAST_ONCE,
        },
    )


def _quorum_queue(name: str, exchange: Exchange, routing_key: str) -> Queue:
    return Queue(
        name,
        exchange,
        routing_key=routing_key,
        durable=True,
        queue_arguments={
            "x-queue-type": "quorum",
            "x-dead-letter-exchange": topology.dead_letter_exchange(name),
            "x-delivery-limit": DELIVERY_LIMIT,
            **_AT_LEAST_ONCE,
        },
    )


def _parking_queue(name: str) -> Queue:
    return Queue(
        topology.parking_queue(name),
        dead_letter_exchange(name),
        durable=True,
        # Classic, not quorum: a quorum queue counts every get-and-requeue as a failed
        # delivery (`x-delivery-count`), and RabbitMQ 4.x drops a message at its default
        # delivery limit of 20, so browsing a quorum parking lot would wear its letters out.
        # A classic queue puts a requeued message back in its place and counts nothing.
        queue_arguments={"x-queue-type": "classic"},
    )


def department_queue(department: str, *, declare: bool = True, area: str | None = None) -> Queue:
    """`declare=False`: consume the queue as the router declared it, never declaring or
    binding anything (a department's broker user may only read its own queue). `area`:
    the queue of the department's adapter serving that area (LIANBAN_ADAPTER_AREAS)."""
    queue = _quorum_queue(
        topology.department_queue(department, area),
        dispatch_exchange(),
        topology.department_binding(department, area),
    )
    queue.no_declare = not declare  # type: ignore[attr-defined]  # kombu's untyped attrs
    return queue


def outcomes_queue() -> Queue:
    return _quorum_queue(topology.OUTCOMES_QUEUE, outcomes_exchange(), "outcome.#")


def replies_queue() -> Queue:
    return _quorum_queue(topology.REPLIES_QUEUE, replies_exchange(), "reply.#")


AdapterAreas = Mapping[str, Sequence[str]]
"""department → the areas its deployed adapters serve, one queue each; a department not
listed has one queue for the whole province (LIANBAN_ADAPTER_AREAS)."""


def department_queues(
    departments: Iterable[str], areas: AdapterAreas | None = None
) -> list[tuple[str, str | None]]:
    """(department, area) of every department queue: None for a province-wide one."""
    areas = areas or {}
    return [
        (code, area)
        for code in sorted(departments)
        for area in (sorted(areas[code]) if code in areas else [None])
    ]


def _consumed_queues(departments: Iterable[str], areas: AdapterAreas | None) -> list[Queue]:
    return [
        outcomes_queue(),
        replies_queue(),
        *(
            department_queue(code, area=area)
            for code, area in department_queues(departments, areas)
        ),
    ]


def exchanges(
    departments: Iterable[str], *, delayed_retries: bool = True, areas: AdapterAreas | None = None
) -> list[Exchange]:
    declared = [
        dispatch_exchange(),
        outcomes_exchange(),
        replies_exchange(),
        *(dead_letter_exchange(queue.name) for queue in _consumed_queues(departments, areas)),
    ]
    if not delayed_retries:
        return declared
    return [*declared, *(retry_exchange(d, a) for d, a in department_queues(departments, areas))]


def queues(
    departments: Iterable[str], *, delayed_retries: bool = True, areas: AdapterAreas | None = None
) -> list[Queue]:
    """Every queue, in declaration order: consumed queues, their parking lots, retry tiers."""
    consumed = _consumed_queues(departments, areas)
    declared = [queue for each in consumed for queue in (each, _parking_queue(each.name))]
    if delayed_retries:
        declared += [
            retry_queue(code, delay, area)
            for code, area in department_queues(departments, areas)
            for delay in RETRY_DELAYS_SECONDS
        ]
    return declared


def declare_topology(
    connection: Connection, departments: Iterable[str], areas: AdapterAreas | None = None
) -> None:
    """Declare everything (idempotent). The in-memory transport gets no retry tiers: it
    has neither headers exchanges nor message TTL."""
    channel = connection.default_channel
    delayed_retries = connection.transport.driver_type != "memory"
    for exchange in exchanges(departments, delayed_retries=delayed_retries, areas=areas):
        exchange(channel).declare()
    for queue in queues(departments, delayed_retries=delayed_retries, areas=areas):
        queue(channel).declare()
