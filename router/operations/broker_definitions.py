"""RabbitMQ definitions for a deployment: the vhost, Lianban's topology, and least-privilege
users (`deploy/rabbitmq/definitions.json`, generated from `runtime.messaging.declaration`).

Load with `rabbitmqctl import_definitions definitions.json` (or the management API's
`POST /api/definitions`). Users:

    lianban-router        declares the topology, publishes dispatches and replies,
                          consumes outcomes, parks and replays dead letters (through
                          the default exchange)
    lianban-<department>  reads only its own queue, declares nothing, and publishes only
                          to the outcomes exchange under `outcome.<department>` (topic
                          permission), and to its own queue's parking-lot and retry
                          exchanges (`lianban.dept.<d>.dead`, `.retry`), which lead back
                          to its own parking lot and queue only

No exchange a department may write to reaches another department's queue or parking lot
(tests/test_broker_permissions.py tries every exchange as every department); and every
consumer checks the router's or the department's signature besides
(`runtime.messaging.signing`).

The checked-in file has no passwords: its users log in with a password an operator sets
(`rabbitmqctl change_password`) or with a client certificate (EXTERNAL). Generate a
deployment's own file with `lianban broker definitions --passwords FILE --out PATH`: it
holds salted SHA-256 hashes, never the passwords.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
import secrets
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from kombu import Exchange, Queue

from contracts import topology
from runtime.messaging.declaration import (
    DELIVERY_LIMIT,
    AdapterAreas,
    department_queues,
    exchanges,
    queues,
)

DEFINITIONS_FILE = Path(__file__).resolve().parents[2] / "deploy" / "rabbitmq" / "definitions.json"
DEFAULT_VHOST = "lianban"
USER_PREFIX = "lianban-"
ROUTER_USER = "router"
HASHING_ALGORITHM = "rabbit_password_hashing_sha256"


def definitions(
    departments: Iterable[str],
    *,
    vhost: str = DEFAULT_VHOST,
    user_prefix: str = USER_PREFIX,
    passwords: Mapping[str, str] | None = None,
    areas: AdapterAreas | None = None,
) -> dict[str, Any]:
    """The definitions document; `passwords` maps user name (with prefix) → password;
    `areas` (LIANBAN_ADAPTER_AREAS) gives a department one queue per area it is served in,
    every one of them its user's alone."""
    codes = sorted(departments)
    own_queues: dict[str, list[str]] = {code: [] for code in codes}
    for code, area in department_queues(codes, areas):
        own_queues[code].append(topology.department_queue(code, area))
    users = [f"{user_prefix}{ROUTER_USER}", *(f"{user_prefix}{code}" for code in codes)]
    return {
        "vhosts": [{"name": vhost}],
        "users": [_user(name, (passwords or {}).get(name)) for name in users],
        "permissions": [
            # amq.default: a dead-letter replay publishes straight to the source queue.
            _permission(
                users[0],
                vhost,
                configure=r"^lianban\.",
                write=r"^(lianban\..+|amq\.default)$",
                read=r"^lianban\.",
            ),
            *(
                _permission(
                    f"{user_prefix}{code}",
                    vhost,
                    configure="^$",
                    write=_exactly(
                        topology.OUTCOMES_EXCHANGE,
                        *(topology.dead_letter_exchange(queue) for queue in own_queues[code]),
                        *(topology.retry_exchange(queue) for queue in own_queues[code]),
                    ),
                    read=_exactly(*own_queues[code]),
                )
                for code in codes
            ),
        ],
        "topic_permissions": [
            {
                "user": f"{user_prefix}{code}",
                "vhost": vhost,
                "exchange": topology.OUTCOMES_EXCHANGE,
                "write": _exactly(topology.outcome_routing_key(code)),
                "read": "^$",
            }
            for code in codes
        ],
        "exchanges": [_exchange(exchange, vhost) for exchange in exchanges(codes, areas=areas)],
        "queues": [_queue(queue, vhost) for queue in queues(codes, areas=areas)],
        "bindings": [_binding(queue, vhost) for queue in queues(codes, areas=areas)],
        "policies": [
            {
                # A safety net for a queue declared without the code's arguments: it still
                # dead-letters safely and stops redelivering a poison message.
                "vhost": vhost,
                "name": "lianban-queues",
                "pattern": r"^lianban\.(dept\.[a-z_]+(\.\d+)?|outcomes|replies)$",
                "apply-to": "queues",
                "priority": 0,
                "definition": {
                    "delivery-limit": DELIVERY_LIMIT,
                    "dead-letter-strategy": "at-least-once",
                    "overflow": "reject-publish",
                },
            }
        ],
    }


def render(document: Mapping[str, Any]) -> str:
    return json.dumps(document, indent=2, ensure_ascii=False, sort_keys=True) + "\n"


def is_current(departments: Iterable[str], path: Path = DEFINITIONS_FILE) -> bool:
    """Whether the checked-in file is what the code's topology generates."""
    return path.is_file() and path.read_text(encoding="utf-8") == render(definitions(departments))


def password_hash(password: str) -> str:
    """RabbitMQ's salted SHA-256 (`rabbit_password_hashing_sha256`)."""
    salt = secrets.token_bytes(4)
    return base64.b64encode(salt + hashlib.sha256(salt + password.encode()).digest()).decode()


def _user(name: str, password: str | None) -> dict[str, Any]:
    return {
        "name": name,
        # Empty: no password login until an operator sets one (or certificates only).
        "password_hash": password_hash(password) if password else "",
        "hashing_algorithm": HASHING_ALGORITHM,
        "tags": [],
    }


def _permission(user: str, vhost: str, *, configure: str, write: str, read: str) -> dict[str, str]:
    return {"user": user, "vhost": vhost, "configure": configure, "write": write, "read": read}


def _exactly(*names: str) -> str:
    return "^(" + "|".join(re.escape(name) for name in names) + ")$"


def _exchange(exchange: Exchange, vhost: str) -> dict[str, Any]:
    declared = exchange.as_dict()  # kombu's declaration attributes are untyped
    return {
        "name": exchange.name,
        "vhost": vhost,
        "type": exchange.type,
        "durable": bool(declared["durable"]),
        "auto_delete": bool(declared["auto_delete"]),
        "internal": False,
        "arguments": dict(declared["arguments"] or {}),
    }


def _queue(queue: Queue, vhost: str) -> dict[str, Any]:
    declared = queue.as_dict()
    return {
        "name": queue.name,
        "vhost": vhost,
        "durable": bool(declared["durable"]),
        "auto_delete": bool(declared["auto_delete"]),
        "arguments": dict(declared["queue_arguments"] or {}),
    }


def _binding(queue: Queue, vhost: str) -> dict[str, Any]:
    declared = queue.as_dict()
    return {
        "source": queue.exchange.name,
        "vhost": vhost,
        "destination": queue.name,
        "destination_type": "queue",
        "routing_key": declared["routing_key"] or "",
        "arguments": dict(declared["binding_arguments"] or {}),
    }
