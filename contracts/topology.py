"""Exchange, queue and routing-key names: part of the contract department teams plug into."""

from __future__ import annotations

DISPATCH_EXCHANGE = "lianban.dispatch"  # topic: router → department adapters
OUTCOMES_EXCHANGE = "lianban.outcomes"  # topic: adapters → correlator
REPLIES_EXCHANGE = "lianban.replies"  # topic: router → platform consumers that prefer AMQP
# Each consumed queue has its own entrances to its parking lot and (a department's
# queue) to its delayed-retry tiers, so that a department's broker user, allowed to
# publish only to what carries its queue's name, can reach nothing of another's.

OUTCOMES_QUEUE = "lianban.outcomes"
REPLIES_QUEUE = "lianban.replies"


def department_queue(department: str, area: str | None = None) -> str:
    """A department's queue: one for the whole province, or one per area its adapters
    serve (LIANBAN_ADAPTER_AREAS), e.g. `lianban.dept.police.4101` for Zhengzhou's."""
    return f"lianban.dept.{department}" if area is None else f"lianban.dept.{department}.{area}"


def parking_queue(queue: str) -> str:
    """Where a queue's dead letters rest until an operator replays them."""
    return f"{queue}.parking"


def source_of_parking(parking: str) -> str:
    """The queue a parking lot belongs to: where its dead letters are replayed to."""
    return parking.removesuffix(".parking")


def dead_letter_exchange(queue: str) -> str:
    """fanout: `queue`'s refused messages → its parking lot, and nowhere else."""
    return f"{queue}.dead"


def retry_exchange(queue: str) -> str:
    """headers: a department queue's delayed retries → its TTL tiers → back to it."""
    return f"{queue}.retry"


def retry_queue(queue: str, delay_label: str) -> str:
    """A delayed-retry tier of `queue`: messages wait here for `delay_label` (e.g. `30s`)."""
    return f"{queue}.retry.{delay_label}"


# Digits of a GB/T 2260 code that name the office deciding at each level (办理层级): the
# province's (41), the city's (4101), the county's or district's (410102). A township's
# office shares its county's code: six digits name no township.
LEVEL_DIGITS = {"province": 2, "city": 4, "county": 6, "township": 6}


def handling_office(area_code: str, level: str) -> str:
    """The office deciding an item at `level` for an applicant in `area_code`."""
    return area_code[: LEVEL_DIGITS[level]]


def dispatch_routing_key(department: str, service: str, route: str | None = None) -> str:
    """`dept.<department>[.<area>.<level>].<service>`: `route` carries the area whose
    adapter serves the item and the level deciding it (router.domain.routing)."""
    return f"dept.{department}.{route}.{service}" if route else f"dept.{department}.{service}"


def department_binding(department: str, area: str | None = None) -> str:
    """What a department's queue receives: everything for the department, or what was
    routed to one area's adapter."""
    return f"dept.{department}.#" if area is None else f"dept.{department}.{area}.#"


def outcome_routing_key(department: str) -> str:
    return f"outcome.{department}"


def reply_routing_key(bundle_type: str) -> str:
    return f"reply.{bundle_type}"


def notice_routing_key(bundle_type: str) -> str:
    """Per-item notices travel with the replies (`reply.#`), told apart by their `kind`."""
    return f"reply.{bundle_type}.item"


def acceptance_routing_key(bundle_type: str) -> str:
    """受理 / 不予受理 notices travel with the replies (`reply.#`), told apart by `kind`."""
    return f"reply.{bundle_type}.acceptance"
