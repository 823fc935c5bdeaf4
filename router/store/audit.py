"""The audit log (审计日志): every message received, sent, decided or refused, with its time,
actor, event and outcome, in a hash chain that shows any later change.

Recording is cheap and never contended: `record` adds an unsealed row to the caller's
transaction (written set-based at commit, `router.store.appended`), so a record commits
(or rolls back) with the change it describes. One sealer later gives each record its
place in the chain (`router.store.audit_chain`).

Each record carries its writer's signature (`writer_mac`, an HMAC under the audit key
that only Lianban's processes hold, LIANBAN_AUDIT_KEY_FILE): a row inserted into the
table by anyone with mere database access — a forged, back-dated record — has none that
matches, so the sealer leaves it out of the chain and `lianban audit verify` names it.

    with database.transaction() as session:
        ...
        audit.record(
            session, actor=department_actor("police"), event=AuditEvent.REFUSED,
            outcome="bad_signature", message_id=message_id, detail="signed with an unknown key",
        )

Keep `detail` short and free of personal data; it is masked like a log line all the same.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import uuid
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Protocol

import structlog
from sqlalchemy import Table
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.orm import Session

from contracts.messages import ItemOutcome, ItemState
from contracts.personal_data import mask_text
from router.store import AuditRow, Database
from router.store.appended import append
from router.store.timeline import Actor, department_actor

__all__ = [
    "AuditEvent",
    "credential_refusals",
    "record",
    "record_alone",
    "record_decided",
    "record_sent",
    "writer_mac",
    "written_by_the_application",
]

log = structlog.get_logger(__name__)
_DETAIL_LIMIT = 1000
_AUDIT_LOG: Table = AuditRow.__table__  # type: ignore[assignment]


class AuditEvent(StrEnum):
    RECEIVED = "received"  # an application came in
    SENT = "sent"  # the relay published a message and the broker confirmed it
    DECIDED = "decided"  # an outcome was applied to an item, or staff decided one
    REFUSED = "refused"  # a message or a credential was refused (bad signature, unknown token)
    WITHDRAWN = "withdrawn"  # the platform withdrew a bundle
    CORRECTED = "corrected"  # the platform resubmitted what a department asked to correct
    UPLOADED = "uploaded"  # a material was stored
    PULLED = "pulled"  # a bundle's file was read out
    REPLAYED = "replayed"  # an operator replayed dead letters
    CLAIMED = "claimed"  # staff claimed a manual work-queue item
    RATED = "rated"  # the platform posted the applicant's 好差评 of a bundle
    RECTIFIED = "rectified"  # a department replied to a 差评, closing its 整改
    DELIVERED = "delivered"  # a proof of delivery (送达凭证) was recorded


def record(
    session: Session,
    *,
    actor: str,
    event: AuditEvent,
    outcome: str,
    bundle_id: uuid.UUID | None = None,
    item: str | None = None,
    message_id: str | uuid.UUID | None = None,
    detail: str | None = None,
) -> None:
    """Add one record to the audit log when the caller's transaction commits, signed
    with the session's audit key."""
    fields: dict[str, Any] = {
        "at": datetime.now(UTC),
        "actor": actor,
        "event": event.value,
        "outcome": outcome,
        "bundle_id": bundle_id,
        "item": item,
        "message_id": str(message_id) if message_id is not None else None,
        "detail": mask_text(detail[:_DETAIL_LIMIT]) if detail else None,
    }
    signature = writer_mac(session.info["audit_key"], AuditRow(**fields))
    append(session, _AUDIT_LOG, {**fields, "writer_mac": signature})


def written_fields(row: AuditRow) -> list[str | None]:
    """Every field a writer sets, in the order the signature and the chain hash read them."""
    return [
        row.at.astimezone(UTC).isoformat(),
        row.actor,
        row.event,
        row.outcome,
        str(row.bundle_id) if row.bundle_id is not None else None,
        row.item,
        row.message_id,
        row.detail,
    ]


def canonical_json(fields: list[Any]) -> bytes:
    return json.dumps(fields, ensure_ascii=False, separators=(",", ":")).encode()


def writer_mac(key: bytes, row: AuditRow) -> str:
    """The writer's signature of a record: an HMAC of every field a writer sets."""
    return hmac.new(key, canonical_json(written_fields(row)), hashlib.sha256).hexdigest()


def written_by_the_application(key: bytes, row: AuditRow) -> bool:
    return row.writer_mac is not None and hmac.compare_digest(row.writer_mac, writer_mac(key, row))


def record_alone(database: Database, **fields: Any) -> None:
    """`record` in a transaction of its own: for an action that changes nothing else
    (an upload, a file pulled, a replay)."""
    with database.transaction() as session:
        record(session, **fields)


def credential_refusals(database: Database) -> Callable[[str, int, bool], None]:
    """The HTTP API's hook for refused tokens (`router.http.guessing`), which calls it
    aggregated: a client's first refusal in a minute, and its lockout."""

    def record_refusals(client: str, refused: int, locked_out: bool) -> None:
        try:
            with database.transaction() as session:
                record(
                    session,
                    actor=f"client:{client}",
                    event=AuditEvent.REFUSED,
                    outcome="locked_out" if locked_out else "unknown_token",
                    detail=f"{refused} unknown or expired token(s) this minute",
                )
        except (OperationalError, InterfaceError):
            # The refusal stands either way; the outage is answered where it matters.
            log.warning("audit.credential_refusal_not_recorded", client=client)

    return record_refusals


class SentMessage(Protocol):
    """What the audit log says of a message the broker confirmed."""

    @property
    def exchange(self) -> str: ...

    @property
    def routing_key(self) -> str: ...

    @property
    def message_id(self) -> str: ...

    @property
    def correlation_id(self) -> str: ...


def record_sent(session: Session, messages: Sequence[SentMessage]) -> None:
    """The outbox's hook: the broker confirmed these messages, one record each."""
    for message in messages:
        record(
            session,
            actor=Actor.ROUTER,
            event=AuditEvent.SENT,
            outcome="confirmed",
            bundle_id=uuid.UUID(message.correlation_id),
            message_id=message.message_id,
            detail=f"{message.exchange} {message.routing_key}",
        )


def record_decided(session: Session, outcome: ItemOutcome, state: ItemState) -> None:
    """The correlator's hook: a department's outcome moved an item to `state`."""
    record(
        session,
        actor=department_actor(outcome.department),
        event=AuditEvent.DECIDED,
        outcome=state.value,
        bundle_id=outcome.bundle_id,
        item=outcome.item,
        message_id=outcome.message_id,
    )
