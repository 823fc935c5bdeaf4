"""Delayed delivery: a message comes back to its department queue after a while, on
either transport, without holding a consumer while it waits.

On RabbitMQ a copy goes to the queue's own headers exchange `<queue>.retry`, whose TTL
tiers (`runtime.messaging.declaration`) dead-letter it back to that queue only. kombu's
in-memory transport has neither message TTL nor dead-lettering: the copy waits here, in
the consuming process, and is published to `lianban.dispatch` when due (lost if the
process dies, as everything in the embedded mode's broker is). The code that decides
to retry later is the same in both modes.

Each copy carries how often it was retried and when the first retry was, so the
adapter can stop retrying once its policy's time is up.
"""

from __future__ import annotations

import heapq
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import structlog

from contracts import topology
from runtime.messaging.declaration import RETRY_DELAY_HEADER, RETRY_DELAYS_SECONDS
from runtime.messaging.envelope import Delivery
from runtime.messaging.publisher import Outgoing, Publisher

log = structlog.get_logger(__name__)

RETRIES_HEADER = "x-lianban-retries"
FIRST_RETRY_AT_HEADER = "x-lianban-first-retry-at"


@dataclass(frozen=True)
class Retries:
    """How often a message has been retried through a delay, and since when."""

    count: int
    first_at: datetime | None

    @classmethod
    def of(cls, delivery: Delivery) -> Retries:
        first_at = delivery.headers.get(FIRST_RETRY_AT_HEADER)
        return cls(
            count=int(delivery.headers.get(RETRIES_HEADER, 0)),
            first_at=datetime.fromisoformat(first_at) if first_at else None,
        )

    def exhausted(self, give_up_after_seconds: float) -> bool:
        if self.first_at is None:
            return False
        return (datetime.now(UTC) - self.first_at).total_seconds() >= give_up_after_seconds

    @property
    def next_delay_seconds(self) -> int:
        """Each retry waits longer, up to the last tier."""
        return RETRY_DELAYS_SECONDS[min(self.count, len(RETRY_DELAYS_SECONDS) - 1)]


class DelayedDelivery:
    """Schedules copies of deliveries to come back later: on RabbitMQ the caller publishes
    each to its retry tiers; in memory they wait here, published on the caller's thread."""

    def __init__(
        self,
        publisher: Publisher,
        *,
        queue: str,
        in_memory: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._publisher = publisher
        self._retry_exchange = topology.retry_exchange(queue)
        self._in_memory = in_memory
        self._clock = clock
        self._waiting: list[tuple[float, int, Outgoing]] = []  # in-memory transport only
        self._sequence = itertools.count()

    def schedule(self, delivery: Delivery) -> tuple[Outgoing, ...]:
        """Send `delivery` back to its routing key after its next tier's delay. On RabbitMQ
        the copy to its retry tiers is returned, for the caller to publish (confirmed)
        before it acknowledges; in memory the copy is kept here and nothing returned."""
        retries = Retries.of(delivery)
        delay = retries.next_delay_seconds
        copy = delivery.copy_to(
            self._retry_exchange,
            delivery.routing_key,
            {
                **delivery.fresh_headers(),
                RETRIES_HEADER: retries.count + 1,
                FIRST_RETRY_AT_HEADER: (retries.first_at or datetime.now(UTC)).isoformat(),
                RETRY_DELAY_HEADER: f"{delay}s",
            },
        )
        log.info(
            "delivery.retry_later",
            bundle_id=copy.correlation_id,
            message_id=copy.message_id,
            retries=retries.count + 1,
            delay_seconds=delay,
        )
        if not self._in_memory:
            return (copy,)
        due = self._clock() + delay
        again = replace(copy, exchange=topology.DISPATCH_EXCHANGE)
        heapq.heappush(self._waiting, (due, next(self._sequence), again))
        return ()

    def publish_due(self) -> None:
        """In memory: publish the copies whose delay has passed (a no-op on RabbitMQ)."""
        while self._waiting and self._waiting[0][0] <= self._clock():
            _, _, again = heapq.heappop(self._waiting)
            self._publisher.publish(again)
