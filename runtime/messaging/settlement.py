"""What becomes of a delivery once its handler is done with it.

A handler returns one of these and the consumer loop carries it out; nothing else
acknowledges, parks or re-publishes a message (`runtime.messaging.consumer`).
"""

from __future__ import annotations

from dataclasses import dataclass

from runtime.messaging.publisher import Outgoing


@dataclass(frozen=True)
class Ack:
    """Done. `publish` goes out first, confirmed by the broker, then the delivery is
    acknowledged: a crash in between re-delivers it, never loses what it caused."""

    publish: tuple[Outgoing, ...] = ()


@dataclass(frozen=True)
class Park:
    """Never to be processed: moved to the queue's parking lot with `reason`, for an
    operator to read and replay (`lianban dlq`)."""

    reason: str


@dataclass(frozen=True)
class Hold:
    """Lianban's own dependency (the database, say) is away: keep this delivery and the
    ones behind it, in order, and hand it over again after a backoff. Not requeued, so
    no delivery is spent. Only a handler's direct answer can hold."""

    reason: str


@dataclass(frozen=True)
class RetryLater:
    """The department stayed unavailable through this delivery: send the message back to
    its queue after the delay of its next retry tier (`runtime.messaging.delayed`)."""

    reason: str


class Pending:
    """The handler took the delivery and will settle it later, from any thread, through
    `ConsumerLoop.settle`."""

    def __repr__(self) -> str:
        return "PENDING"


PENDING = Pending()

Settlement = Ack | Park | Hold | RetryLater
