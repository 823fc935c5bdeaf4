"""The bundle's timeline (全程留痕): every step, in order, with its time and its actor."""

from __future__ import annotations

import uuid
from datetime import datetime
from enum import StrEnum

from sqlalchemy import Table
from sqlalchemy.orm import Session

from contracts.api import TimelineStep
from router.store import EventRow
from router.store.appended import append
from runtime import clock

_EVENTS: Table = EventRow.__table__  # type: ignore[assignment]

DEPARTMENT_ACTOR_PREFIX = "department:"


class Actor(StrEnum):
    """Who took a step, when not a department (`department_actor`)."""

    # The timeline, which the platform reads, says `platform`; the audit log names the
    # token that made the call (`ApiToken.actor`).
    PLATFORM = "platform"
    ROUTER = "router"
    # Who applied (the `applied` step): the applicant in person, or an agent (帮办代办).
    APPLICANT = "applicant"
    AGENT = "agent"


def department_actor(code: str) -> str:
    """A department, by its catalog code, as the actor of the steps its answers caused."""
    return f"{DEPARTMENT_ACTOR_PREFIX}{code}"


def record_event(
    session: Session,
    bundle_id: uuid.UUID,
    item: str | None,
    step: TimelineStep,
    detail: str | None,
    *,
    actor: str,
    at: datetime | None = None,
) -> None:
    """Add a step to the bundle's timeline when `session` commits."""
    append(
        session,
        _EVENTS,
        {
            "bundle_id": bundle_id,
            "item": item,
            "state": step,
            "detail": detail,
            "actor": actor,
            "at": at or clock.now(),  # case time, as every deadline reads it
        },
    )
