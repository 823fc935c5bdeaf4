"""Dead letters: what rests in the parking lots, why, and sending it back.

A message reaches a parking lot two ways: the consumer refused it (`MessageRefused`, a handler
failure; the reason is in `x-lianban-refused-reason`), or RabbitMQ dead-lettered it (the
delivery limit; the reason is in `x-first-death-reason`). Either way it names the queue
it came from, and a replay publishes it back to that queue through the default exchange
— confirmed before the parked copy is acknowledged, so a replay interrupted half-way
leaves a message in both places at worst, never in neither. Consumers deduplicate by
message id (the correlator's inbox, the departments' idempotency keys), so a replayed
message that had in fact been handled changes nothing.

A replay is recorded (`record_replay`): in the audit log with the operator who asked, and
as a `replayed` step on the timeline of each item a replayed message names.

Browsing takes messages without acknowledging them and puts them back afterwards.
Parking lots are classic queues, which put a requeued message back in its place and
count nothing: no `x-delivery-count`, no delivery limit (a quorum queue would count each
look as a failed delivery and, on RabbitMQ 4.x, drop the letter at the 20th).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Collection, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from kombu import Message, Queue
from pydantic import BaseModel

from contracts import topology
from contracts.api import TimelineEvent
from router.store import Database, ItemRow, audit
from router.store.timeline import Actor, record_event
from runtime.messaging import Broker, Delivery, Outgoing, Publisher
from runtime.messaging.declaration import queues
from runtime.messaging.envelope import (
    REFUSED_AT_HEADER,
    REFUSED_REASON_HEADER,
    REPLAYED_HEADER,
    SOURCE_QUEUE_HEADER,
)

_REFUSAL_HEADERS = (REFUSED_REASON_HEADER, SOURCE_QUEUE_HEADER, REFUSED_AT_HEADER)


class DeadLetterSummary(BaseModel):
    """A dead letter as operators see it, the same in `lianban dlq` and on the ops page."""

    queue: str  # the parking lot it rests in
    source_queue: str  # where a replay sends it
    message_id: str
    bundle_id: str  # the message's correlation id
    reason: str
    count: int  # how often it was dead-lettered
    died_at: datetime | None
    replayed: int  # how often it was replayed before


@dataclass(frozen=True)
class DeadLetter:
    """A message resting in a parking lot: what its summary says, and its body."""

    queue: str
    source_queue: str
    message_id: str
    bundle_id: str
    reason: str
    count: int
    died_at: datetime | None
    replayed: int
    body: bytes

    def summary(self) -> DeadLetterSummary:
        """Everything but the body."""
        return DeadLetterSummary.model_validate(self, from_attributes=True)

    @classmethod
    def of(cls, queue: str, delivery: Delivery) -> DeadLetter:
        headers = delivery.headers
        deaths: list[dict[str, Any]] = headers.get("x-death") or []
        died_at = headers.get(REFUSED_AT_HEADER)
        return cls(
            queue=queue,
            # The parking lot decides where a replay goes, never the letter's headers:
            # whoever could write a letter could otherwise aim it at any queue.
            source_queue=topology.source_of_parking(queue),
            message_id=delivery.message_id,
            bundle_id=delivery.correlation_id,
            reason=str(
                headers.get(REFUSED_REASON_HEADER) or headers.get("x-first-death-reason") or ""
            ),
            count=sum(int(death.get("count", 1)) for death in deaths) or 1,
            died_at=datetime.fromisoformat(died_at) if died_at else _death_time(deaths),
            replayed=int(headers.get(REPLAYED_HEADER, 0)),
            body=delivery.body,
        )


class DeadLetterQueues:
    """The parking lots of every consumed queue of one broker."""

    def __init__(self, broker: Broker, departments: Iterable[str]) -> None:
        self._broker = broker
        self.parking_queues = [
            queue.name
            for queue in queues(departments, delayed_retries=False)
            if queue.name.endswith(".parking")
        ]

    def counts(self) -> dict[str, int]:
        """Messages resting in each parking lot."""
        with self._broker.connect() as connection:
            channel = connection.default_channel
            return {
                name: int(Queue(name, no_declare=True)(channel).queue_declare(passive=True)[1])
                for name in self.parking_queues
            }

    def list(self, queue: str | None = None, limit: int = 50) -> list[DeadLetter]:
        found: list[DeadLetter] = []
        for name in [queue] if queue else self.parking_queues:
            self._check(name)
            with self._browsing(name) as messages:
                for message in messages:
                    if len(found) >= limit:
                        break
                    found.append(DeadLetter.of(name, Delivery.of(message)))
        return found

    def find(self, message_id: str) -> DeadLetter | None:
        for name in self.parking_queues:
            with self._browsing(name) as messages:
                for message in messages:
                    if message.properties.get("message_id") == message_id:
                        return DeadLetter.of(name, Delivery.of(message))
        return None

    def replay(
        self, queue: str, message_ids: Collection[str] | None = None
    ) -> Sequence[DeadLetter]:
        """Send the chosen (default: every) dead letter of `queue` back to its source
        queue; returns those replayed."""
        self._check(queue)
        replayed: list[DeadLetter] = []
        with Publisher(self._broker) as publisher, self._browsing(queue) as messages:
            for message in messages:
                delivery = Delivery.of(message)
                letter = DeadLetter.of(queue, delivery)
                if message_ids is not None and letter.message_id not in message_ids:
                    continue
                publisher.publish(_replay_of(letter, delivery))
                message.ack()
                replayed.append(letter)
        return replayed

    def _check(self, queue: str) -> None:
        if queue not in self.parking_queues:
            raise ValueError(f"{queue!r} is not a parking lot; these are: {self.parking_queues}")

    @contextmanager
    def _browsing(self, queue: str) -> Iterator[Iterator[Message]]:
        """Each message currently in `queue`, once; whatever the caller does not
        acknowledge goes back afterwards (all together, so none is taken twice)."""
        taken: list[Message] = []
        with self._broker.connect() as connection:
            channel = connection.channel()
            bound = Queue(queue, no_declare=True)(channel)
            depth = int(bound.queue_declare(passive=True)[1])

            def messages() -> Iterator[Message]:
                for _ in range(depth):
                    message = bound.get(no_ack=False, accept=None)
                    if message is None:
                        return
                    taken.append(message)
                    yield message

            browsed = messages()
            try:
                yield browsed
            finally:
                # Take the rest too before requeueing, so all go back in their order: the
                # in-memory transport appends a requeued message at the tail (RabbitMQ's
                # classic queues put it back in its place either way).
                for _ in browsed:
                    pass
                for message in taken:
                    if not message.acknowledged:
                        message.requeue()
                channel.close()


def record_replay(
    database: Database,
    queue: str,
    requested: Collection[str] | None,
    replayed: Sequence[DeadLetter],
    *,
    actor: str,
) -> None:
    """Record a replay `actor` asked for: one audit record for the request, and for each
    replayed message that names an item of a known bundle, an audit record and a
    `replayed` step on that item's timeline (the timeline names the operator in its
    detail: its actor is the router, which sent the message again)."""
    with database.transaction() as session:
        audit.record(
            session,
            actor=actor,
            event=audit.AuditEvent.REPLAYED,
            outcome=f"{len(replayed)} replayed",
            detail=f"{queue}: {', '.join(sorted(requested)) if requested is not None else 'all'}",
        )
        for letter in replayed:
            item = _item_of(letter)
            if item is None or session.get(ItemRow, item) is None:
                continue
            bundle_id, code = item
            detail = f"{letter.message_id} from {queue}, by {actor}"
            record_event(
                session, bundle_id, code, TimelineEvent.REPLAYED, detail, actor=Actor.ROUTER
            )
            audit.record(
                session,
                actor=actor,
                event=audit.AuditEvent.REPLAYED,
                outcome="replayed",
                bundle_id=bundle_id,
                item=code,
                message_id=letter.message_id,
                detail=queue,
            )


def _item_of(letter: DeadLetter) -> tuple[uuid.UUID, str] | None:
    """The bundle and item a dead letter names (a dispatch, supplement, poll, cancel or
    outcome does); None for anything else."""
    try:
        body = json.loads(letter.body)
        return uuid.UUID(letter.bundle_id), str(body["item"])
    except (ValueError, TypeError, KeyError):
        return None


def _replay_of(letter: DeadLetter, delivery: Delivery) -> Outgoing:
    return delivery.copy_to(
        "",  # the default exchange routes by queue name
        letter.source_queue,
        {**delivery.fresh_headers(drop=_REFUSAL_HEADERS), REPLAYED_HEADER: letter.replayed + 1},
    )


def _death_time(deaths: list[dict[str, Any]]) -> datetime | None:
    if not deaths or "time" not in deaths[0]:
        return None
    time = deaths[0]["time"]
    return time if isinstance(time, datetime) else datetime.fromtimestamp(float(time), UTC)
