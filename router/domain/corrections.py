"""Correction (补齐补正): a department asked for materials; the platform resubmits them.

The item resumes at the same department on the same filing: the materials go to it as a
supplement, never a second filing. The bundle keeps every material it ever referenced,
so a later dispatch and the file pull see the corrected ones too.
"""

from __future__ import annotations

import uuid
from enum import StrEnum

from contracts.api import TimelineEvent
from contracts.application import MaterialRef
from contracts.messages import ItemState, SupplementPurpose
from router.domain.progress import set_item_state, supplement
from router.store import BundleRow, Database, audit
from router.store.timeline import Actor


class Resubmitted(StrEnum):
    RESUBMITTED = "resubmitted"
    UNKNOWN = "unknown"
    NOT_REQUESTED = "not_requested"


def resubmit(
    database: Database,
    bundle_id: uuid.UUID,
    item_code: str,
    materials: tuple[MaterialRef, ...],
    actor: str = Actor.PLATFORM,
) -> Resubmitted:
    """Resubmit `item_code` with `materials` on `actor`'s request (audited)."""
    with database.transaction() as session:
        bundle = session.get(BundleRow, bundle_id, with_for_update=True)
        item = (
            next((row for row in bundle.items if row.code == item_code), None) if bundle else None
        )
        if bundle is None or item is None:
            return Resubmitted.UNKNOWN
        if item.state != ItemState.CORRECTION_REQUESTED:
            return Resubmitted.NOT_REQUESTED
        known = {material["sha256"] for material in bundle.application["materials"]}
        bundle.application = {
            **bundle.application,
            "materials": [
                *bundle.application["materials"],
                *(m.model_dump(mode="json") for m in materials if m.sha256 not in known),
            ],
        }
        supplement(session, bundle, item, SupplementPurpose.CORRECTION, materials=materials)
        set_item_state(
            session,
            item,
            ItemState.DISPATCHED,
            actor=Actor.PLATFORM,
            reason="已补齐补正：" + "、".join(material.name for material in materials),
            event=TimelineEvent.CORRECTED,
        )
        audit.record(
            session,
            actor=actor,
            event=audit.AuditEvent.CORRECTED,
            outcome="resubmitted",
            bundle_id=bundle.id,
            item=item.code,
            detail=f"{len(materials)} material(s)",
        )
        return Resubmitted.RESUBMITTED
