"""Documents of the HTTP API other than the application itself: receipts, notices, status."""

from __future__ import annotations

from enum import StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts.application import MaterialRef
from contracts.catalog import HandlingClass
from contracts.messages import ItemState, ToleratedGap


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BundleState(StrEnum):
    """Where a bundle stands: replied once its one reply exists."""

    IN_PROGRESS = "in_progress"
    REPLIED = "replied"


class DeadlineKind(StrEnum):
    """Which deadline a clock or an alert is about."""

    ACCEPTANCE = "acceptance"  # 受理, due by the end of the next working day after receipt
    DECISION = "decision"  # 承诺办结时限, counted from 受理
    TOLERATED_GAP = "tolerated_gap"  # 容缺受理: the applicant's promise to supply a material
    BUNDLE = "bundle"  # the bundle's own promise: its longest chain of items


class AlertLevel(StrEnum):
    """How close a deadline is: 预警 once at most one working day is left, 超期 once past."""

    WARNING = "warning"  # 预警 (yellow)
    MISSED = "missed"  # 超期 (red)


class TimelineEvent(StrEnum):
    """A step on a bundle's timeline other than an item entering a state (recorded as
    its ItemState)."""

    RECEIVED = "received"  # the platform posted the bundle
    APPLIED = "applied"  # who applied: the applicant, or an agent (帮办代办) for them
    VALIDATED = "validated"  # it passed every check of the one-time notice
    PREREQUISITES_FORWARDED = "prerequisites_forwarded"  # a pre-reviewed item goes on
    CORRECTED = "corrected"  # 补齐补正: the materials asked for went to the department
    DEADLINE_UNKNOWN = "deadline_unknown"  # the working-day calendar lacks the year
    CLOCK_STARTED = "clock_started"  # a deadline began to run; the detail says which
    CLOCK_PAUSED = "clock_paused"  # waiting for the applicant, or excluded time (听证, 鉴定 …)
    CLOCK_RESUMED = "clock_resumed"  # running again, the working days already used kept
    DEADLINE_EXTENDED = "deadline_extended"  # 延期: the department extended once, with a reason
    DEADLINE_MOVED = "deadline_moved"  # recomputed with a newer working-day calendar
    DEADLINE_WARNING = "deadline_warning"  # 预警: at most one working day left
    OVERDUE = "overdue"  # 超期: a deadline passed; the detail starts with its DeadlineKind
    IGNORED = "ignored"  # an outcome that came too late or out of order changed nothing
    DECISION_PENDING = "decision_pending"  # filed, not decided: polled until it is
    UNREACHABLE = "unreachable"  # the department stayed unreachable until the deadline
    WITHDRAWN = "withdrawn"  # 撤回: the platform withdrew the bundle
    REPLIED = "replied"  # the one reply was assembled
    CALLBACK_DELIVERED = "callback_delivered"  # the platform's callback took a message


TimelineStep = ItemState | TimelineEvent


PromisedWorkingDays = Annotated[
    int,
    Field(
        ge=1,
        description="The bundle's promised limit in working days from receipt: the longest "
        "chain of its items through the prerequisite graph, 1 working day of 受理 plus "
        "promise_days each (a pre-reviewed item runs beside its prerequisites)",
    ),
]
PromiseDays = Annotated[
    int,
    Field(
        ge=0,
        description="承诺办结时限 in working days from 受理; 0 for a 即办件 (decided that day)",
    ),
]


class ItemPromise(_Document):
    """What the catalog promises for one item of a bundle."""

    item: str
    handling_class: HandlingClass
    promise_days: PromiseDays


class IntakeReceipt(_Document):
    """收件回执: the bundle was received and will be handled, within its promised limit."""

    bundle_id: UUID
    project_no: str
    bundle_type: str
    received_at: AwareDatetime
    status_url: str
    reply_url: str
    promised_working_days: PromisedWorkingDays
    items: tuple[ItemPromise, ...]


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


class ClockStatus(_Document):
    """One deadline as the status shows it: when it is due and how much time is left."""

    kind: DeadlineKind
    due_at: AwareDatetime | None = Field(description="None while paused or not computable")
    limit_days: int = Field(description="Working days allowed, an extension included")
    days_used: int = Field(description="Working days consumed, paused time excluded")
    days_left: int
    running: bool
    paused_cause: str | None = None
    finished_at: AwareDatetime | None = None
    provisional: bool = Field(
        default=False, description="Due in a year whose official holiday notice is missing"
    )


class DeadlineAlert(_Document):
    """A 预警 or 超期 raised once for one deadline."""

    kind: DeadlineKind
    level: AlertLevel
    due_at: AwareDatetime
    raised_at: AwareDatetime


class DecisionPoll(_Document):
    """Waiting for a department's decision: what it said last, and when it is asked."""

    department_answer: str = Field(description="The department's own words, last answer")
    answered_at: AwareDatetime
    pending_since: AwareDatetime
    last_poll_at: AwareDatetime | None
    next_poll_at: AwareDatetime | None = Field(description="None: the department calls back")
    polls: int


class ItemStatus(_Document):
    item: str
    name_zh: str
    department: str
    state: ItemState
    reason: str | None
    updated_at: AwareDatetime
    handling_class: HandlingClass
    promise_days: PromiseDays
    accept_due_at: AwareDatetime | None = Field(default=None, description="受理 due: 1 working day")
    decide_due_at: AwareDatetime | None = Field(default=None, description="承诺办结时限 due")
    overdue: DeadlineKind | None = Field(
        default=None, description="The deadline this open item is past, if any"
    )
    clocks: tuple[ClockStatus, ...] = ()
    alerts: tuple[DeadlineAlert, ...] = ()
    tolerated_gaps: tuple[ToleratedGap, ...] = Field(
        default=(), description="容缺受理: materials accepted as missing, on commitment"
    )
    decision_poll: DecisionPoll | None = Field(
        default=None, description="Set while the department has the filing and has not decided"
    )


class TimelineEntry(_Document):
    at: AwareDatetime
    item: str | None
    state: TimelineStep
    detail: str | None
    actor: str = Field(
        pattern=r"^(platform|router|applicant|agent|department:[a-z][a-z0-9_]*)$",
        description="platform, router, applicant, agent (帮办代办), or department:<code>",
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
    promised_working_days: PromisedWorkingDays
    due_at: AwareDatetime | None = Field(
        default=None, description="The bundle's promise: its longest chain of items"
    )
    clock: ClockStatus | None = None
    alerts: tuple[DeadlineAlert, ...] = ()
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
