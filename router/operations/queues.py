"""Department queues as an operator sees them: ready and unacknowledged messages, consumers,
the oldest message's age and the dead letters in the parking lot.

Counts come from the RabbitMQ management HTTP API (`rabbitmq-plugins enable
rabbitmq_management`). The embedded broker has no such API: there the counts come from a
passive queue declaration, which knows ready messages and consumers but not unacknowledged
ones.

The oldest message's age: quorum queues keep no head-message timestamp (the management
API's `head_message_timestamp` exists for classic queues only), and peeking the head with
a `get` and a requeue would count as a delivery on a quorum queue — enough peeks and the
message is dead-lettered. So the age is read from the database instead: the oldest item
dispatched to the department and not yet answered (accepted, rejected or decided). While
messages wait in the queue, that dispatch is the oldest of them or older (it may be held,
unacknowledged, by an adapter that is still calling the department).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Protocol
from urllib.parse import quote, unquote, urlsplit

import httpx
from sqlalchemy import func, select
from sqlalchemy.orm import Session

from contracts import topology
from contracts.errors import ConfigurationError, QueuesUnavailable
from contracts.messages import ItemState
from router.store import ItemRow
from runtime.messaging import Broker

MANAGEMENT_PORT = 15672


@dataclass(frozen=True)
class QueueCounts:
    ready: int
    unacknowledged: int | None  # unknown without the management API
    consumers: int


class QueueCountSource(Protocol):
    def counts(self, names: Iterable[str]) -> dict[str, QueueCounts]:
        """The counts of each named queue that exists."""
        ...


@dataclass(frozen=True)
class ManagementApi:
    """The RabbitMQ management HTTP API of one vhost."""

    base_url: str
    vhost: str
    username: str
    password: str
    timeout_seconds: float = 5.0

    @classmethod
    def for_broker(cls, broker_url: str, management_url: str | None = None) -> ManagementApi:
        """The API of the broker's vhost: at `management_url` if given (its user and password
        if it names them), else on the broker's host at port 15672; credentials default to
        the broker URL's."""
        broker = urlsplit(broker_url)
        if broker.scheme not in ("amqp", "amqps"):
            raise ConfigurationError(
                f"{broker.scheme}:// has no management API; counts need an amqp:// broker"
            )
        base = urlsplit(management_url or f"http://{broker.hostname}:{MANAGEMENT_PORT}")
        host = f"{base.hostname}:{base.port}" if base.port else str(base.hostname)
        return cls(
            base_url=f"{base.scheme}://{host}{base.path.rstrip('/')}",
            vhost=unquote(broker.path[1:]) if len(broker.path) > 1 else "/",
            username=unquote(base.username or broker.username or "guest"),
            password=unquote(base.password or broker.password or "guest"),
        )

    def counts(self, names: Iterable[str]) -> dict[str, QueueCounts]:
        wanted = set(names)
        columns = "name,messages_ready,messages_unacknowledged,consumers"
        url = f"{self.base_url}/api/queues/{quote(self.vhost, safe='')}"
        try:
            response = httpx.get(
                url,
                params={"columns": columns},
                auth=(self.username, self.password),
                timeout=self.timeout_seconds,
            )
            response.raise_for_status()
        except httpx.HTTPError as error:
            raise QueuesUnavailable(f"RabbitMQ management API at {url}: {error}") from None
        return {
            queue["name"]: QueueCounts(
                ready=int(queue.get("messages_ready") or 0),
                unacknowledged=int(queue.get("messages_unacknowledged") or 0),
                consumers=int(queue.get("consumers") or 0),
            )
            for queue in response.json()
            if queue["name"] in wanted
        }


@dataclass(frozen=True)
class DeclaredQueues:
    """Counts from a passive declaration over AMQP: what the embedded broker can tell."""

    broker: Broker

    def counts(self, names: Iterable[str]) -> dict[str, QueueCounts]:
        """Every process declares the whole topology on start, so every queue exists."""
        found: dict[str, QueueCounts] = {}
        with self.broker.connect() as connection:
            channel = connection.default_channel
            for name in names:
                _, ready, consumers = channel.queue_declare(queue=name, passive=True)
                found[name] = QueueCounts(int(ready), None, int(consumers))
        return found


def count_source(broker: Broker, management_url: str | None) -> QueueCountSource:
    if broker.is_memory:
        return DeclaredQueues(broker)
    return ManagementApi.for_broker(broker.url, management_url)


@dataclass(frozen=True)
class DepartmentQueue:
    department: str
    queue: str
    ready: int
    unacknowledged: int | None
    consumers: int
    oldest_age_seconds: float | None  # None when the queue holds nothing
    dead_letters: int

    @property
    def depth(self) -> int:
        return self.ready + (self.unacknowledged or 0)


def oldest_unanswered_dispatches(session: Session) -> dict[str, datetime]:
    """Per department, when its oldest item still waiting for an answer was dispatched
    (an item's `updated_at` is its dispatch time for as long as it stays dispatched)."""
    rows = session.execute(
        select(ItemRow.department, func.min(ItemRow.updated_at))
        .where(ItemRow.state == ItemState.DISPATCHED.value)
        .group_by(ItemRow.department)
    )
    return {
        department: at if at.tzinfo else at.replace(tzinfo=UTC)  # SQLite's MIN loses the type
        for department, at in rows
    }


def department_queues(
    source: QueueCountSource,
    departments: Iterable[str],
    oldest_dispatch: Mapping[str, datetime],
    now: datetime | None = None,
) -> list[DepartmentQueue]:
    """Every department's queue and parking lot, departments in name order."""
    now = now or datetime.now(UTC)
    names = {
        department: topology.department_queue(department) for department in sorted(departments)
    }
    counts = source.counts(
        [name for queue in names.values() for name in (queue, topology.parking_queue(queue))]
    )
    empty = QueueCounts(0, 0, 0)
    rows = []
    for department, queue in names.items():
        queue_counts = counts.get(queue, empty)
        parking = counts.get(topology.parking_queue(queue), empty)
        waiting = queue_counts.ready + (queue_counts.unacknowledged or 0)
        since = oldest_dispatch.get(department)
        rows.append(
            DepartmentQueue(
                department=department,
                queue=queue,
                ready=queue_counts.ready,
                unacknowledged=queue_counts.unacknowledged,
                consumers=queue_counts.consumers,
                oldest_age_seconds=max((now - since).total_seconds(), 0.0)
                if waiting and since
                else None,
                dead_letters=parking.ready + (parking.unacknowledged or 0),
            )
        )
    return rows


def format_age(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    if days:
        return f"{days}d{hours:02d}h"
    if hours:
        return f"{hours}h{minutes:02d}m"
    return f"{minutes}m{secs:02d}s" if minutes else f"{secs}s"


def format_table(rows: Iterable[DepartmentQueue]) -> list[str]:
    lines = [
        f"{'department':<28} {'ready':>7} {'unacked':>7} {'consumers':>9} "
        f"{'oldest':>8} {'dead letters':>12}"
    ]
    for row in rows:
        unacked = "?" if row.unacknowledged is None else str(row.unacknowledged)
        lines.append(
            f"{row.department:<28} {row.ready:>7} {unacked:>7} {row.consumers:>9} "
            f"{format_age(row.oldest_age_seconds):>8} {row.dead_letters:>12}"
        )
    return lines
