"""Withdrawal (撤回): the applicant takes the bundle back before it is decided.

Every item not yet final is cancelled: waiting ones at once, filed ones by asking their
department to withdraw the filing (an `ItemCancel` through the outbox, so the request
is sent exactly when the cancellation commits). The bundle then ends with its one reply,
which says what was cancelled and what had already been decided.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from contracts.api import BundleState, TimelineEvent
from contracts.messages import BundleOutcome, ItemState
from router.domain.progress import assemble_reply, cancel_at_department, set_item_state
from router.store import BundleRow, Database, audit
from router.store.timeline import Actor, record_event

DEFAULT_REASON = "申请人撤回申请"


class Withdrawn(StrEnum):
    WITHDRAWN = "withdrawn"
    UNKNOWN = "unknown"
    ALREADY_REPLIED = "already_replied"


def withdraw(
    database: Database,
    bundle_id: uuid.UUID,
    actor: str = Actor.PLATFORM,
    reason: str = DEFAULT_REASON,
) -> Withdrawn:
    """Withdraw the bundle on `actor`'s request (the token that asked, audited)."""
    with database.transaction() as session:
        bundle = session.get(BundleRow, bundle_id, with_for_update=True)
        if bundle is None:
            return Withdrawn.UNKNOWN
        if bundle.state != BundleState.IN_PROGRESS:
            return Withdrawn.ALREADY_REPLIED
        record_event(
            session, bundle.id, None, TimelineEvent.WITHDRAWN, reason, actor=Actor.PLATFORM
        )
        audit.record(
            session,
            actor=actor,
            event=audit.AuditEvent.WITHDRAWN,
            outcome="withdrawn",
            bundle_id=bundle.id,
            detail=reason,
        )
        for item in bundle.items:
            if ItemState(item.state).is_final:
                continue
            cancel_at_department(session, bundle, item, reason)
            set_item_state(session, item, ItemState.CANCELLED, actor=Actor.ROUTER, reason=reason)
        assemble_reply(session, bundle, BundleOutcome.WITHDRAWN)
        return Withdrawn.WITHDRAWN
