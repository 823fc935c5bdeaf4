"""The bundle's timeline (全程留痕): every step, in order, with its time."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from router.db import EventRow


def record_event(
    session: Session,
    bundle_id: uuid.UUID,
    item: str | None,
    state: str,
    detail: str | None,
    at: datetime | None = None,
) -> None:
    session.add(
        EventRow(
            bundle_id=bundle_id, item=item, state=state, detail=detail, at=at or datetime.now(UTC)
        )
    )
