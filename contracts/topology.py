"""Exchange, queue and routing-key names: part of the contract department teams plug into."""

from __future__ import annotations

DISPATCH_EXCHANGE = "lianban.dispatch"  # topic: router → department adapters
OUTCOMES_EXCHANGE = "lianban.outcomes"  # topic: adapters → correlator
REPLIES_EXCHANGE = "lianban.replies"  # topic: router → platform consumers that prefer AMQP
DEAD_LETTER_EXCHANGE = "lianban.dead"  # direct: rejected messages → parking-lot queues
RETRY_EXCHANGE = "lianban.retry"  # headers: delayed retries → TTL queues → back to dispatch

OUTCOMES_QUEUE = "lianban.outcomes"
REPLIES_QUEUE = "lianban.replies"


def department_queue(department: str) -> str:
    return f"lianban.dept.{department}"


def parking_queue(queue: str) -> str:
    """Where a queue's dead letters rest until an operator replays them."""
    return f"{queue}.parking"


def retry_queue(delay_label: str) -> str:
    """A delayed-retry tier: messages wait here for `delay_label` (e.g. `30s`)."""
    return f"lianban.retry.{delay_label}"


def dispatch_routing_key(department: str, service: str) -> str:
    return f"dept.{department}.{service}"


def department_binding(department: str) -> str:
    return f"dept.{department}.#"


def outcome_routing_key(department: str) -> str:
    return f"outcome.{department}"


def reply_routing_key(bundle_type: str) -> str:
    return f"reply.{bundle_type}"


def notice_routing_key(bundle_type: str) -> str:
    """Per-item notices travel with the replies (`reply.#`), told apart by their `kind`."""
    return f"reply.{bundle_type}.item"
