"""Messages on the broker: item dispatches, item outcomes, bundle replies.

Every message carries its schema version, a message id (the consumers' deduplication
key) and the bundle id (the AMQP correlation id). Department teams read these models,
or the JSON Schema and AsyncAPI documents generated from them in `contracts/schemas/`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Annotated, Any, Literal, Protocol
from uuid import UUID, uuid5

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field

from contracts import SCHEMA_VERSION, SchemaVersion
from contracts.application import Agent, Applicant, Application, MaterialRef
from contracts.ids import new_id


class ItemState(StrEnum):
    """Where an item stands. The last five are final."""

    WAITING = "waiting"  # held until its prerequisites are decided
    DISPATCHED = "dispatched"  # sent to its department, no answer yet
    PRE_REVIEWED = "pre_reviewed"  # 容缺预审: accepted, waits for its prerequisites' results
    ACCEPTED = "accepted"  # 受理
    CORRECTION_REQUESTED = "correction_requested"  # 补齐补正
    APPROVED = "approved"  # 办结, granted
    DENIED = "denied"  # 办结, not granted
    REJECTED = "rejected"  # 不予受理
    FAILED = "failed"  # the department could not be reached or answered nonsense
    CANCELLED = "cancelled"  # a prerequisite was not granted

    @property
    def is_final(self) -> bool:
        return self in FINAL_ITEM_STATES


FINAL_ITEM_STATES = frozenset(
    {
        ItemState.APPROVED,
        ItemState.DENIED,
        ItemState.REJECTED,
        ItemState.FAILED,
        ItemState.CANCELLED,
    }
)


class _Frozen(BaseModel):
    # A misspelt field is refused, never dropped for its default (`certificate=` would
    # otherwise decide with no certificates); nothing that crossed a boundary changes.
    model_config = ConfigDict(extra="forbid", frozen=True)


class _Message(_Frozen):
    schema_version: SchemaVersion = SCHEMA_VERSION
    message_id: UUID = Field(default_factory=new_id)
    bundle_id: UUID


class Certificate(_Frozen):
    """An electronic certificate (电子证照) or other result issued by a department."""

    certificate_name: str
    certificate_number: str
    certificate_type_code: str | None = None
    issuer_name: str
    issue_date: date
    valid_until: date | None = None
    file: MaterialRef | None = None


class PrerequisiteResult(_Frozen):
    """A decided prerequisite, forwarded to the dependent item's department."""

    item: str
    department: str
    certificates: tuple[Certificate, ...] = ()


def filing_key(bundle_id: UUID, item: str) -> str:
    """The idempotency key an item is filed under at its department, stable forever: every
    delivery of its dispatch, its supplements and its withdrawal name the filing by it."""
    return f"{bundle_id}:{item}"


class NamedItem(Protocol):
    """What a dispatch names of its item: a catalog item has it, and so does the router's
    stored copy of one."""

    @property
    def code(self) -> str: ...
    @property
    def name_zh(self) -> str: ...
    @property
    def service(self) -> str: ...
    @property
    def department(self) -> str: ...


class ItemDispatch(_Message):
    """Router → department: file this item (routing key `dept.<department>.<service>`)."""

    kind: Literal["dispatch"] = "dispatch"
    project_no: str
    bundle_type: str
    item: str
    item_name_zh: str
    service: str
    department: str
    idempotency_key: str = Field(
        description="Stable per bundle and item; a department must not file twice under it"
    )
    area_code: str
    applicant: Applicant
    agent: Agent | None = Field(
        default=None, description="帮办代办: who applied for the applicant, with the authorisation"
    )
    form: dict[str, Any]
    materials: tuple[MaterialRef, ...] = Field(
        default=(),
        description="Uploads, the agent's authorisation, and the licences fetched from the "
        "certificate library (电子证照) in their place",
    )
    prerequisite_results: tuple[PrerequisiteResult, ...] = ()
    pre_review: bool = Field(
        default=False,
        description="容缺预审: accept and pre-review now, but decide only after an "
        "ItemSupplement has brought the prerequisites' results",
    )
    respond_by: AwareDatetime | None = Field(
        default=None,
        description="The item's deadline: retries for an unreachable department stop here",
    )

    def filing(self) -> dict[str, Any]:
        """How a later supplement, poll or cancel names the filing this dispatch made."""
        return {
            "bundle_id": self.bundle_id,
            "project_no": self.project_no,
            "item": self.item,
            "service": self.service,
            "department": self.department,
            "dispatch_id": self.message_id,
            "idempotency_key": self.idempotency_key,
        }

    @classmethod
    def for_item(
        cls,
        application: Application,
        bundle_id: UUID,
        item: NamedItem,
        *,
        form_fields: Collection[str],
        prerequisite_results: tuple[PrerequisiteResult, ...] = (),
        pre_review: bool = False,
        fetched_materials: tuple[MaterialRef, ...] = (),
    ) -> ItemDispatch:
        """The dispatch that files `item` of `application`, received as bundle `bundle_id`:
        of the form, only the `form_fields` its department needs (the catalog's); the
        licences intake fetched (`fetched_materials`) travel as uploads do."""
        agent = application.agent
        return cls(
            bundle_id=bundle_id,
            project_no=application.project_no,
            bundle_type=application.bundle_type,
            item=item.code,
            item_name_zh=item.name_zh,
            service=item.service,
            department=item.department,
            idempotency_key=filing_key(bundle_id, item.code),
            area_code=application.area_code,
            applicant=application.applicant,
            agent=agent,
            form={name: value for name, value in application.form.items() if name in form_fields},
            materials=(
                *application.materials,
                *((agent.authorisation,) if agent else ()),
                *fetched_materials,
            ),
            prerequisite_results=prerequisite_results,
            pre_review=pre_review,
        )


class SupplementPurpose(StrEnum):
    PREREQUISITES = "prerequisites"  # the pre-reviewed item's prerequisites are decided
    CORRECTION = "correction"  # 补齐补正: the applicant resubmitted what was asked for


class _ToFiling(_Message):
    """Addressed to a filing the department already has, on the same queue as dispatches."""

    project_no: str
    item: str
    service: str
    department: str
    dispatch_id: UUID = Field(description="message_id of the ItemDispatch that filed the item")
    idempotency_key: str = Field(description="The key the item was filed under")
    receipt_no: str | None = Field(default=None, description="The department's receipt, if any")


class ItemSupplement(_ToFiling):
    """Router → department: add to an existing filing; never a second filing."""

    kind: Literal["supplement"] = "supplement"
    item_name_zh: str
    purpose: SupplementPurpose
    prerequisite_results: tuple[PrerequisiteResult, ...] = ()
    materials: tuple[MaterialRef, ...] = ()
    respond_by: AwareDatetime | None = Field(
        default=None,
        description="The item's deadline: retries for an unreachable department stop here",
    )


class ItemCancel(_ToFiling):
    """Router → department: withdraw this filing (撤回)."""

    kind: Literal["cancel"] = "cancel"
    reason: str


class ItemPoll(_ToFiling):
    """Router → department: where does this filing stand? Sent on the schedule the
    adapter declared while the department answers "pending"."""

    kind: Literal["poll"] = "poll"
    item_name_zh: str
    filing_ref: str | None = Field(default=None, description="The department's filing reference")
    respond_by: AwareDatetime | None = Field(
        default=None,
        description="The item's deadline: retries for an unreachable department stop here",
    )


DepartmentRequest = ItemDispatch | ItemSupplement | ItemPoll
"""The messages a department answers with an outcome."""

DepartmentMessage = Annotated[
    ItemDispatch | ItemSupplement | ItemPoll | ItemCancel, Field(discriminator="kind")
]


class ToleratedGap(_Frozen):
    """容缺受理: a material accepted as missing, on the applicant's commitment to supply it."""

    material: str = Field(min_length=1, description="材料名称")
    commitment: str = Field(min_length=1, description="The applicant's 承诺, in words")
    due_date: date = Field(description="The day the material must be supplied by")


class Accepted(_Frozen):
    status: Literal["accepted"] = "accepted"
    receipt_no: str | None = Field(
        default=None, max_length=128, description="The department's 受理编号"
    )
    tolerated_gaps: tuple[ToleratedGap, ...] = ()


class Rejected(_Frozen):
    status: Literal["rejected"] = "rejected"
    reason: str = Field(min_length=1, description="不予受理 reason the applicant can read")
    legal_basis: str | None = Field(
        default=None,
        max_length=500,
        description="The provisions the rejection rests on, for the 不予受理决定书; without "
        "it the notice cites 行政许可法 第三十二条",
    )


class CorrectionRequested(_Frozen):
    status: Literal["correction_requested"] = "correction_requested"
    reason: str = Field(min_length=1)
    missing_materials: tuple[str, ...] = ()


class Decided(_Frozen):
    status: Literal["decided"] = "decided"
    approved: bool
    reason: str | None = Field(default=None, description="Required in words when not approved")
    certificates: tuple[Certificate, ...] = ()


class Pending(_Frozen):
    """The department has the filing and has not decided: the router polls it again (or
    waits for its callback). Never a reason to fail the item."""

    status: Literal["pending"] = "pending"
    department_status: str = Field(
        min_length=1, max_length=200, description="The department's own words for the filing"
    )
    filing_ref: str | None = Field(
        default=None, max_length=128, description="The department's reference of the filing"
    )
    next_poll_after: AwareDatetime | None = Field(
        default=None,
        description='The adapter\'s suggestion (e.g. the department said "after 14:00"); '
        "the router polls no earlier, and otherwise follows the declared schedule",
    )


class Unreachable(_Frozen):
    """The department stayed unreachable until the item's deadline (or the retry
    policy's limit): the request is parked for an operator to replay, and the item stays
    open (the deadline watcher marks it overdue). Never a failure of the item."""

    status: Literal["unreachable"] = "unreachable"
    reason: str = Field(min_length=1)


class Failed(_Frozen):
    status: Literal["failed"] = "failed"
    error: str = Field(min_length=1)


class Extended(_Frozen):
    """延期: the department extends the decision deadline, once, with the approval's reason."""

    status: Literal["extended"] = "extended"
    days: int = Field(gt=0, description="Working days added to the promised limit")
    reason: str = Field(min_length=1)


class ExclusionCause(StrEnum):
    """Time the law leaves out of the limit (行政许可法 第四十五条)."""

    HEARING = "听证"
    INSPECTION = "检验"
    TESTING = "检测"
    QUARANTINE = "检疫"
    APPRAISAL = "鉴定"
    EXPERT_REVIEW = "专家评审"


class ClockStopped(_Frozen):
    """The department starts excluded time: the decision clock stops until ClockResumed."""

    status: Literal["clock_stopped"] = "clock_stopped"
    cause: ExclusionCause


class ClockResumed(_Frozen):
    """The excluded time is over: the decision clock runs again, the days used kept."""

    status: Literal["clock_resumed"] = "clock_resumed"


ClockNotice = Extended | ClockStopped | ClockResumed
"""Outcomes about the item's time that leave its state where it is."""


class CancelRefused(_Frozen):
    """The department refused to withdraw the filing (撤回): it had decided already. Its
    decision stands: the router reports it in a corrected reply instead of "cancelled"."""

    status: Literal["cancel_refused"] = "cancel_refused"
    reason: str = Field(min_length=1, max_length=500, description="The department's words")


OutcomeResult = Annotated[
    Accepted
    | Rejected
    | CorrectionRequested
    | Decided
    | Pending
    | Unreachable
    | Failed
    | Extended
    | ClockStopped
    | ClockResumed
    | CancelRefused,
    Field(discriminator="status"),
]


# Outcome ids derive from the dispatch and the result kind: answering the same dispatch
# with the same kind of result twice (a redelivery) yields the same id, which the
# correlator drops as a duplicate.
_OUTCOME_NAMESPACE = UUID("6f1c3c1e-3f5e-4a8e-9a51-2b8f0d1c7a10")


class ItemOutcome(_Message):
    """Department adapter → router: what the department did with one dispatched item."""

    item: str
    department: str
    dispatch_id: UUID = Field(description="message_id of the ItemDispatch this answers")
    occurred_at: AwareDatetime
    result: OutcomeResult

    @classmethod
    def answering(
        cls, request: DepartmentRequest | ItemCancel, result: OutcomeResult
    ) -> ItemOutcome:
        """The outcome of a dispatch, or of a supplement, poll or cancel of its filing
        (which answers the same dispatch, under an id of its own: a second "accepted"
        after a correction, or each poll's "pending", is news)."""
        dispatch_id = (
            request.message_id if isinstance(request, ItemDispatch) else request.dispatch_id
        )
        occurred_at = datetime.now(UTC)
        key = f"{request.message_id}:{result.status}"
        if isinstance(result, ClockNotice):
            # Excluded time may stop and resume one filing's clock more than once: each
            # notice is news. One sent twice changes nothing (a stopped clock stays stopped).
            key += f":{occurred_at.isoformat()}"
        return cls(
            message_id=uuid5(_OUTCOME_NAMESPACE, key),
            bundle_id=request.bundle_id,
            item=request.item,
            department=request.department,
            dispatch_id=dispatch_id,
            occurred_at=occurred_at,
            result=result,
        )


class CircuitState(StrEnum):
    """The adapter's circuit breaker towards its department's system."""

    CLOSED = "closed"  # calls go through
    OPEN = "open"  # too many failures in a row: nobody calls until it half-opens
    HALF_OPEN = "half_open"  # one probe call decides whether it closes again


class TroubleKind(StrEnum):
    RETRYING = "retrying"  # the department was unavailable: the request comes back later
    PARKED = "parked"  # the request rests in a parking lot until an operator replays it


OPERATOR_DETAIL_MAX = 300
"""Characters of an error an operator is shown: enough to recognise it, never a dump."""

_TROUBLE_NAMESPACE = UUID("0b8f6a62-5d7e-4c1b-8f33-6a1c2e9d4b57")


class ItemTrouble(_Message):
    """Department adapter → router: why an item has no answer yet. Sent once per retry
    decision and when a request is parked; the router keeps the latest on the item and
    writes a `retrying` or `parked` step on its timeline. An operator's view, never the
    applicant's: `last_error` is masked and holds no applicant data."""

    kind: Literal["trouble"] = "trouble"
    item: str
    department: str
    dispatch_id: UUID = Field(description="message_id of the ItemDispatch that filed the item")
    request_id: UUID = Field(description="message_id of the request that could not be handled")
    occurred_at: AwareDatetime
    trouble: TroubleKind
    attempt: int = Field(ge=1, description="Deliveries of the request tried so far")
    next_retry_at: AwareDatetime | None = Field(
        default=None, description="When the request comes back; None once parked"
    )
    last_error: str = Field(min_length=1, max_length=OPERATOR_DETAIL_MAX)
    circuit: CircuitState

    @classmethod
    def about(
        cls,
        request: DepartmentRequest,
        trouble: TroubleKind,
        *,
        attempt: int,
        last_error: str,
        circuit: CircuitState,
        next_retry_at: datetime | None = None,
    ) -> ItemTrouble:
        """The notice about `request`; its id derives from the request, the attempt and
        the kind, so a redelivered decision is the same notice (deduplicated)."""
        dispatch_id = (
            request.message_id if isinstance(request, ItemDispatch) else request.dispatch_id
        )
        key = f"{request.message_id}:{attempt}:{trouble.value}"
        return cls(
            message_id=uuid5(_TROUBLE_NAMESPACE, key),
            bundle_id=request.bundle_id,
            item=request.item,
            department=request.department,
            dispatch_id=dispatch_id,
            request_id=request.message_id,
            occurred_at=datetime.now(UTC),
            trouble=trouble,
            attempt=attempt,
            next_retry_at=next_retry_at,
            last_error=last_error[:OPERATOR_DETAIL_MAX] or "unknown error",
            circuit=circuit,
        )


DepartmentReport = Annotated[ItemOutcome | ItemTrouble, Field(union_mode="left_to_right")]
"""What the outcomes queue carries: an outcome, or a notice of trouble reaching the
department."""


class DecisionPush(_Frozen):
    """Department → adapter's decision endpoint: what became of a filing (callback mode).
    An adapter whose department speaks another format reads it in `read_decision`."""

    bundle_id: UUID
    item: str
    dispatch_id: UUID = Field(description="message_id of the ItemDispatch that filed the item")
    result: OutcomeResult

    def outcome(self, department: str, body: bytes) -> ItemOutcome:
        """The outcome to publish; a push repeated byte for byte gets the same id."""
        return ItemOutcome(
            message_id=uuid5(_OUTCOME_NAMESPACE, f"{self.dispatch_id}:push:{body.hex()}"),
            bundle_id=self.bundle_id,
            item=self.item,
            department=department,
            dispatch_id=self.dispatch_id,
            occurred_at=datetime.now(UTC),
            result=self.result,
        )


class BundleOutcome(StrEnum):
    ALL_APPROVED = "all_approved"
    PARTLY_APPROVED = "partly_approved"
    NONE_APPROVED = "none_approved"
    WITHDRAWN = "withdrawn"  # 撤回: the applicant withdrew before every item was decided


class ItemResult(_Frozen):
    item: str
    name_zh: str
    department: str
    state: ItemState
    reason: str | None = None
    certificates: tuple[Certificate, ...] = ()
    tolerated_gaps: tuple[ToleratedGap, ...] = ()
    finished_at: AwareDatetime


class ItemNotice(_Message):
    """分别领取: an item became final; sent as it happens when the applicant chose
    per-item delivery, before the bundle's one reply."""

    kind: Literal["item_notice"] = "item_notice"
    project_no: str
    bundle_type: str
    result: ItemResult


class BundleReply(_Message):
    """The ONE reply per bundle, assembled when every selected item is final. Should a
    fact it reported change (a department's decision outlived the withdrawal), a new
    version of it follows, saying which version it corrects and why: never a silent
    re-send."""

    kind: Literal["reply"] = "reply"
    project_no: str
    bundle_type: str
    outcome: BundleOutcome
    items: tuple[ItemResult, ...]
    replied_at: AwareDatetime
    version: int = Field(default=1, ge=1, description="1 for the reply, n + 1 corrects n")
    corrects: int | None = Field(
        default=None, ge=1, description="The version this one supersedes (更正); None for 1"
    )
    correction: str | None = Field(
        default=None, description="What changed since the version it corrects, in Chinese"
    )


class NoticeDecision(StrEnum):
    ACCEPTED = "accepted"  # 受理: a 受理通知书
    REJECTED = "rejected"  # 不予受理: a 不予受理决定书


class AcceptanceNotice(_Message):
    """A department accepted (受理) or rejected (不予受理) an item: told to the platform as
    it happens (seed 001 附件3: "实时推送至省一体化政务服务平台"), with the notice document
    the applicant receives, by reference (`GET /v1/bundles/{bundle_id}/files/{sha256}`)."""

    kind: Literal["acceptance"] = "acceptance"
    project_no: str = Field(description="办件编号")
    bundle_type: str
    item: str
    item_name_zh: str
    department: str
    department_name_zh: str
    decision: NoticeDecision
    receipt_no: str | None = Field(default=None, description="The department's 受理编号")
    decided_at: AwareDatetime
    reason: str | None = Field(default=None, description="不予受理: the reason, in words")
    legal_basis: str
    decide_by: date | None = Field(
        default=None, description="受理: the day the decision is promised by (China time)"
    )
    document: MaterialRef = Field(description="受理通知书 or 不予受理决定书 (PDF)")
