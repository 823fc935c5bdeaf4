"""Withdrawal (撤回): the applicant takes the bundle back before it is decided.

Every item not yet final is cancelled: waiting ones at once, filed ones by asking their
department to withdraw the filing (an `ItemCancel` through the outbox, so the request
is sent exactly when the cancellation commits). The bundle then ends with its one reply,
which says what was cancelled and what had already been decided.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from contracts import topology
from contracts.messages import BundleOutcome, ItemCancel, ItemState
from router.db import BundleRow, Database
from router.outbox import enqueue
from router.progress import (
    REPLIED,
    assemble_reply,
    filing_key,
    set_item_state,
)
from router.timeline import record_event

DEFAULT_REASON = "申请人撤回申请"


class Withdrawn(StrEnum):
    WITHDRAWN = "withdrawn"
    UNKNOWN = "unknown"
    ALREADY_REPLIED = "already_replied"


def withdraw(database: Database, bundle_id: uuid.UUID, reason: str = DEFAULT_REASON) -> Withdrawn:
    with database.transaction() as session:
        bundle = session.get(BundleRow, bundle_id, with_for_update=True)
        if bundle is None:
            return Withdrawn.UNKNOWN
        if bundle.state == REPLIED:
            return Withdrawn.ALREADY_REPLIED
        record_event(session, bundle.id, None, "withdrawn", reason)
        for item in bundle.items:
            state = ItemState(item.state)
            if state.is_final:
                continue
            if state is not ItemState.WAITING and item.dispatch_id is not None:
                cancel = ItemCancel(
                    bundle_id=bundle.id,
                    project_no=bundle.project_no,
                    item=item.code,
                    service=item.service,
                    department=item.department,
                    dispatch_id=item.dispatch_id,
                    idempotency_key=filing_key(bundle.id, item.code),
                    receipt_no=item.receipt_no,
                    reason=reason,
                )
                enqueue(
                    session,
                    exchange=topology.DISPATCH_EXCHANGE,
                    routing_key=topology.dispatch_routing_key(item.department, item.service),
                    message=cancel,
                )
            set_item_state(session, item, ItemState.CANCELLED, reason=reason)
        assemble_reply(session, bundle, BundleOutcome.WITHDRAWN)
        return Withdrawn.WITHDRAWN
