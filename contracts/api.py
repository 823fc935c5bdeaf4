"""Documents of the HTTP API other than the application itself: receipts, notices, status."""

from __future__ import annotations

from enum import StrEnum
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.application import MaterialRef
from contracts.messages import ItemState, ToleratedGap


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BundleState(StrEnum):
    """Where a bundle stands: replied once its one reply exists."""

    IN_PROGRESS = "in_progress"
    REPLIED = "replied"


class OverdueKind(StrEnum):
    """The deadline an item missed."""

    ACCEPTANCE = "acceptance"  # 受理, due 1 working day after dispatch
    DECISION = "decision"  # 承诺办结时限, the promised time limit


class TimelineEvent(StrEnum):
    """A step on a bundle's timeline other than an item entering a state (recorded as
    its ItemState)."""

    RECEIVED = "received"  # the platform posted the bundle
    VALIDATED = "validated"  # it passed every check of the one-time notice
    PREREQUISITES_FORWARDED = "prerequisites_forwarded"  # a pre-reviewed item goes on
    CORRECTED = "corrected"  # 补齐补正: the materials asked for went to the department
    DEADLINE_UNKNOWN = "deadline_unknown"  # the working-day calendar lacks the year
    OVERDUE = "overdue"  # a deadline passed; the detail is its OverdueKind
    IGNORED = "ignored"  # an outcome that came too late or out of order changed nothing
    WITHDRAWN = "withdrawn"  # 撤回: the platform withdrew the bundle
    REPLIED = "replied"  # the one reply was assembled
    CALLBACK_DELIVERED = "callback_delivered"  # the platform's callback took a message


TimelineStep = ItemState | TimelineEvent


class IntakeReceipt(_Document):
    """收件回执: the bundle was received and will be handled."""

    bundle_id: UUID
    project_no: str
    bundle_type: str
    received_at: AwareDatetime
    status_url: str
    reply_url: str


class Problem(_Document):
    """One problem with an application, located by a JSON pointer into it."""

    pointer: str = Field(description="RFC 6901 pointer into the posted application")
    code: str
    message_zh: str
    message_en: str


class ProblemDetails(_Document):
    """Every refusal of the HTTP API, in one shape (RFC 9457 problem details): a stable
    `code` to act on, a Chinese `title` for people, English `title_en` and `detail`, and
    the one-time notice's `problems` where the request's content is at fault."""

    type: str = Field(description="urn:lianban:problem:<code>")
    code: str = Field(description="Stable machine-readable cause, e.g. bundle_not_found")
    status: int
    title: str = Field(description="中文：what went wrong, for people")
    title_en: str
    detail: str = Field(description="English: the specifics of this occurrence")
    problems: tuple[Problem, ...] = ()


class OneTimeNotice(ProblemDetails):
    """一次告知: every problem with an application, reported in one answer (a 422)."""

    type: str = "urn:lianban:problem:application_problems"
    code: str = "application_problems"
    status: int = 422
    title: str = "申请材料需补正（一次告知）"
    title_en: str = "The application has problems"
    detail: str = "Every problem with the application, at once: see problems."
    problems: tuple[Problem, ...]


class ItemStatus(_Document):
    item: str
    name_zh: str
    department: str
    state: ItemState
    reason: str | None
    updated_at: AwareDatetime
    accept_due_at: AwareDatetime | None = Field(default=None, description="受理 due: 1 working day")
    decide_due_at: AwareDatetime | None = Field(default=None, description="承诺办结时限 due")
    overdue: OverdueKind | None = Field(default=None, description="Set once a deadline is missed")
    tolerated_gaps: tuple[ToleratedGap, ...] = Field(
        default=(), description="容缺受理: materials accepted as missing, on commitment"
    )


class TimelineEntry(_Document):
    at: AwareDatetime
    item: str | None
    state: TimelineStep
    detail: str | None
    actor: str = Field(
        pattern=r"^(platform|router|department:[a-z][a-z0-9_]*)$",
        description="platform, router, or department:<code>",
    )


class CallbackStatus(_Document):
    """One push to the platform's callback URL: delivered, or still being retried."""

    kind: str = Field(description="reply or item_notice")
    url: str
    attempts: int
    delivered_at: AwareDatetime | None
    next_attempt_at: AwareDatetime
    last_error: str | None


class BundleStatus(_Document):
    bundle_id: UUID
    project_no: str
    bundle_type: str
    state: BundleState
    received_at: AwareDatetime
    replied_at: AwareDatetime | None
    items: tuple[ItemStatus, ...]
    timeline: tuple[TimelineEntry, ...]
    callbacks: tuple[CallbackStatus, ...] = ()


class ManualItemState(StrEnum):
    """Where an item stands in a manual department's work queue."""

    OPEN = "open"  # filed, no one has claimed it
    CLAIMED = "claimed"  # taken by one of the department's staff
    DONE = "done"  # answered for good: an acceptance or a correction request is not


class ManualItem(_Document):
    """An item in a manual department's work queue (尚未完成系统对接的部门)."""

    id: UUID
    receipt_no: str
    department: str
    item: str
    item_name_zh: str
    project_no: str
    state: ManualItemState
    claimed_by: str | None
    created_at: AwareDatetime
    updated_at: AwareDatetime


class Claim(_Document):
    staff: str = Field(min_length=1, max_length=64)


class Correction(_Document):
    """补齐补正: the materials a department asked for, uploaded first to /v1/materials."""

    materials: tuple[MaterialRef, ...] = Field(min_length=1, max_length=100)


class Withdrawal(_Document):
    """撤回: why the applicant withdraws (shown to every department and in the reply)."""

    reason: str = Field(default="申请人撤回申请", min_length=1, max_length=500)
