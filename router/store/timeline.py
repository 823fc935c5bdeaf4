"""The bundle's timeline (全程留痕): every step, in order, with its time and its actor."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from router.store import EventRow

# Who took a step. The platform's own identity per request arrives with authentication;
# until then every platform call is recorded as the platform.
PLATFORM = "platform"
ROUTER = "router"


def department(code: str) -> str:
    return f"department:{code}"


def record_event(
    session: Session,
    bundle_id: uuid.UUID,
    item: str | None,
    state: str,
    detail: str | None,
    *,
    actor: str,
    at: datetime | None = None,
) -> None:
    session.add(
        EventRow(
            bundle_id=bundle_id,
            item=item,
            state=state,
            detail=detail,
            actor=actor,
            at=at or datetime.now(UTC),
        )
    )
