"""Documents of the HTTP API other than the application itself: receipts, notices, status."""

from __future__ import annotations

from enum import IntEnum, StrEnum
from typing import Annotated
from uuid import UUID

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from contracts.application import HandoverMethod, MaterialRef
from contracts.catalog import HandlingClass
from contracts.messages import CircuitState, ItemState, ToleratedGap, TroubleKind


class _Document(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BundleState(StrEnum):
    """Where a bundle stands: replied once its one reply exists."""

    IN_PROGRESS = "in_progress"
    REPLIED = "replied"  # answered; results still to reach the applicant (送达)
    DELIVERED = "delivered"  # every result handed over, each with its proof (送达凭证)


class DeadlineKind(StrEnum):
    """Which deadline a clock or an alert is about."""

    ACCEPTANCE = "acceptance"  # 受理, due by the end of the next working day after receipt
    DECISION = "decision"  # 承诺办结时限, counted from 受理
    TOLERATED_GAP = "tolerated_gap"  # 容缺受理: the applicant's promise to supply a material
    BUNDLE = "bundle"  # the bundle's own promise: its longest chain of items
    RECTIFICATION = "rectification"  # 差评整改: a department's reply to a bad rating


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
    RETRYING = "retrying"  # the department was unavailable: its adapter tries again later
    PARKED = "parked"  # the request rests in a parking lot until an operator replays it
    REPLAYED = "replayed"  # an operator sent a parked message back; the detail names them
    WITHDRAWN = "withdrawn"  # 撤回: the platform withdrew the bundle
    REPLIED = "replied"  # the one reply was assembled
    CANCEL_REFUSED = "cancel_refused"  # the department had decided: it refused to withdraw
    DECISION_STANDS = "decision_stands"  # a cancelled item's refused cancel: its decision holds
    REPLY_CORRECTED = "reply_corrected"  # a new version of the reply corrects the one before
    CALLBACK_DELIVERED = "callback_delivered"  # the platform's callback took a message
    RATED = "rated"  # 好差评: the applicant rated the bundle (and maybe its departments)
    RECTIFICATION_OPENED = "rectification_opened"  # a 差评 opened 整改 for a department
    RECTIFICATION_CLOSED = "rectification_closed"  # the department replied to the applicant
    NOTICE_ISSUED = "notice_issued"  # 受理通知书 / 不予受理决定书 issued and pushed
    APPLICANT_MESSAGED = "applicant_messaged"  # 短信告知: the gateway took the message
    APPLICANT_NOT_MESSAGED = "applicant_not_messaged"  # no message sent; the detail says why
    HANDOVER_READY = "handover_ready"  # results ready to reach the applicant (待送达)
    WAYBILL_ISSUED = "waybill_issued"  # 邮寄送达: the courier issued a waybill (运单号)
    DELIVERED = "delivered"  # 送达: the applicant received them; the proof is recorded


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
    items: tuple[str, ...] = Field(
        default=(),
        description="The selected items it concerns: for a missing material or form field, "
        "every item needing it (asked once for the bundle)",
    )


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


class DeliveryTrouble(_Document):
    """Why an open item has no answer: its adapter could not reach the department. From the
    adapter's latest notice; gone once the department answers."""

    state: TroubleKind = Field(description="retrying, or parked until an operator replays it")
    attempts: int = Field(description="Deliveries of the request tried so far")
    next_retry_at: AwareDatetime | None = Field(description="None once parked")
    last_error: str = Field(description="The last error, for operators (masked)")
    circuit: CircuitState = Field(description="The adapter's circuit towards the department")
    reported_at: AwareDatetime


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
    trouble: DeliveryTrouble | None = Field(
        default=None, description="Set while the department cannot be reached for this item"
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

    kind: str = Field(description="reply, item_notice or acceptance")
    url: str
    attempts: int
    delivered_at: AwareDatetime | None
    next_attempt_at: AwareDatetime
    last_error: str | None


class HandoverState(StrEnum):
    """Where one handover (送达) stands."""

    AWAITING_COLLECTION = "awaiting_collection"  # 窗口领取: at the window, not collected
    AWAITING_DOWNLOAD = "awaiting_download"  # 电子送达: published, not downloaded
    AWAITING_WAYBILL = "awaiting_waybill"  # 邮寄送达: the courier is being asked
    IN_TRANSIT = "in_transit"  # 邮寄送达: waybill issued, not signed for yet
    DELIVERED = "delivered"  # received, with a proof (送达凭证)


class ProofSource(StrEnum):
    """Who vouches for a delivery."""

    COURIER = "courier"  # the courier's signed receipt (签收)
    WINDOW = "window"  # the issuing window's signed collection form (领取签字)
    DOWNLOAD = "download"  # the platform's record of the applicant's download


class DeliveryProof(_Document):
    """送达凭证: who received the results, when, and the reference of their signature.

    Posted to `POST /v1/bundles/{id}/handovers/proof`, or dropped in the filedrop inbox as
    `<project_no>.proof.json`."""

    item: str | None = Field(
        default=None, description="The item, for 分别领取; none for the bundle's one handover"
    )
    source: ProofSource
    recipient_name: str = Field(min_length=1, max_length=50, description="签收人")
    received_at: AwareDatetime
    signature_ref: str = Field(
        min_length=1,
        max_length=200,
        description="The signature's reference: the courier's receipt image id, the window's "
        "form number, the download's record",
    )
    waybill_no: str | None = Field(
        default=None, max_length=64, description="运单号: required for a courier's proof"
    )


class HandoverStatus(_Document):
    """One handover (送达) of results to the applicant: the bundle's one, or an item's."""

    item: str | None = Field(description="None: the bundle's results together")
    method: HandoverMethod
    state: HandoverState
    ready_at: AwareDatetime
    courier: str | None = None
    waybill_no: str | None = None
    waybill_issued_at: AwareDatetime | None = None
    courier_attempts: int = 0
    last_error: str | None = None
    delivered_at: AwareDatetime | None = None
    proof: DeliveryProof | None = None


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
    handovers: tuple[HandoverStatus, ...] = Field(
        default=(), description="送达: how each set of results reaches the applicant"
    )


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


class Satisfaction(IntEnum):
    """The five national levels of 好差评 (国办发〔2019〕51号), as the national push codes
    them: 5 非常满意 … 1 非常不满意. 不满意 and 非常不满意 are a 差评."""

    VERY_SATISFIED = 5  # 非常满意
    SATISFIED = 4  # 满意
    BASICALLY_SATISFIED = 3  # 基本满意
    DISSATISFIED = 2  # 不满意
    VERY_DISSATISFIED = 1  # 非常不满意

    @property
    def name_zh(self) -> str:
        return SATISFACTION_ZH[self]

    @property
    def is_bad(self) -> bool:
        """差评: it opens a rectification (整改) and needs a written reason."""
        return self <= Satisfaction.DISSATISFIED


SATISFACTION_ZH = {
    Satisfaction.VERY_SATISFIED: "非常满意",
    Satisfaction.SATISFIED: "满意",
    Satisfaction.BASICALLY_SATISFIED: "基本满意",
    Satisfaction.DISSATISFIED: "不满意",
    Satisfaction.VERY_DISSATISFIED: "非常不满意",
}

RatingReason = Annotated[str, Field(min_length=1, max_length=50)]


class Evaluation(_Document):
    """One rating: a level, the reasons chosen (评价内容, e.g. 办事效率, 服务态度) and the
    applicant's own words. A 差评 must say why in `comment` (the national push asks a
    written reason below 3)."""

    level: Satisfaction = Field(
        description="5 非常满意, 4 满意, 3 基本满意, 2 不满意, 1 非常不满意"
    )
    reasons: tuple[RatingReason, ...] = Field(default=(), max_length=10)
    comment: str | None = Field(default=None, min_length=1, max_length=1000)

    @model_validator(mode="after")
    def _bad_rating_says_why(self) -> Evaluation:
        if self.level.is_bad and self.comment is None:
            raise ValueError("a 差评 (level 1 or 2) needs a comment saying why")
        return self


class DepartmentEvaluation(Evaluation):
    department: str = Field(min_length=1, max_length=64, description="Its catalog code")


class Rating(Evaluation):
    """好差评 of a replied bundle, posted once by the platform: the bundle as a whole,
    and optionally each department that handled one of its items."""

    departments: tuple[DepartmentEvaluation, ...] = Field(default=(), max_length=50)

    @model_validator(mode="after")
    def _each_department_once(self) -> Rating:
        named = [evaluation.department for evaluation in self.departments]
        if len(named) != len(set(named)):
            raise ValueError("each department is rated at most once in a rating")
        return self


class RectificationState(StrEnum):
    OPEN = "open"  # 整改中: the department has not replied yet
    CLOSED = "closed"  # the department replied to the applicant


class Rectification(_Document):
    """整改: what a 差评 obliges its department to do, by a due date in working days."""

    id: UUID
    bundle_id: UUID
    project_no: str
    department: str
    level: Satisfaction = Field(description="The bad rating that opened it")
    comment: str | None
    state: RectificationState
    opened_at: AwareDatetime
    due_at: AwareDatetime = Field(description="End of the last working day allowed")
    overdue: bool = Field(description="Past its due date (closed late, or still open)")
    reply: str | None = Field(description="The department's reply to the applicant")
    closed_at: AwareDatetime | None


class RectificationReply(_Document):
    """The department's reply to the applicant: what was checked and what was changed."""

    reply: str = Field(min_length=1, max_length=2000)


class RatingRecord(_Document):
    """A bundle's rating as stored, with the rectifications its 差评 opened."""

    bundle_id: UUID
    project_no: str
    rated_at: AwareDatetime
    level: Satisfaction
    level_zh: str
    reasons: tuple[str, ...]
    comment: str | None
    departments: tuple[DepartmentEvaluation, ...]
    rectifications: tuple[Rectification, ...]
