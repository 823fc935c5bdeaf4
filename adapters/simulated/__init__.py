"""A configurable simulated department, so every department in the catalog can be exercised.

It accepts each item, waits as configured, then decides as its scenario says (approve by
default; deny, reject, fail or ask for a correction for chosen services or items) and
records when it decided in a ledger, which tests use to prove prerequisite order from the
department side. A rule may keep a filing "pending" for a number of working days (counted
in China time, filing day as day 1): the router then polls it (`poll`) until it decides.
An item filed for pre-review (容缺预审) is accepted and decided only when its supplement
brings the prerequisites' results; a correction is approved once its supplement brings
materials (a pre-reviewed item's correction is pre-reviewed again, and decided with its
prerequisites' results).
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field, replace
from datetime import date, datetime, timedelta, timezone
from enum import StrEnum
from pathlib import Path
from typing import Any

import chinese_calendar
import yaml

from adapters.base import Adapter
from adapters.context import AdapterContext
from adapters.decisions import Polled
from contracts.catalog import Catalog
from contracts.errors import FatalDepartmentError
from contracts.messages import (
    Accepted,
    Certificate,
    CorrectionRequested,
    Decided,
    Failed,
    ItemCancel,
    ItemDispatch,
    ItemPoll,
    ItemSupplement,
    OutcomeResult,
    Pending,
    PrerequisiteResult,
    Rejected,
    SupplementPurpose,
)
from runtime import clock


class Verdict(StrEnum):
    APPROVE = "approve"
    DENY = "deny"
    REJECT = "reject"
    FAIL = "fail"
    CORRECT = "correct"  # ask for a correction first (补齐补正), approve once corrected


_DECISIONS = (Verdict.APPROVE, Verdict.DENY)
# What a simulated department asking for a correction says is missing.
MISSING_MATERIAL = "申请人有效身份证件（清晰完整）"
# What it says of a filing it has not decided yet.
PENDING_STATUS = "审查中"
CHINA_TZ = timezone(timedelta(hours=8))


@dataclass(frozen=True)
class Rule:
    verdict: Verdict = Verdict.APPROVE
    reason: str = "模拟部门按场景设置作出该结论"
    delay_seconds: float = 0.0
    pending_working_days: int = 0


@dataclass(frozen=True)
class Scenario:
    """Rules by item code or service code; anything unnamed follows `default`."""

    rules: dict[str, Rule] = field(default_factory=dict)
    default: Rule = Rule()

    def rule_for(self, request: ItemDispatch | ItemSupplement | ItemPoll | ItemCancel) -> Rule:
        return self.rules.get(request.item) or self.rules.get(request.service) or self.default

    @classmethod
    def from_file(cls, path: Path) -> Scenario:
        """Read a YAML scenario: `{default: {verdict, delay_seconds}, rules: {code: {...}}}`."""
        raw: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        return cls(
            rules={code: Rule(**rule) for code, rule in (raw.get("rules") or {}).items()},
            default=Rule(**(raw.get("default") or {})),
        )


@dataclass(frozen=True)
class DecisionRecord:
    department: str
    bundle_id: str
    item: str
    verdict: Verdict
    decided_at: datetime
    prerequisites_seen: tuple[str, ...]


class DecisionLedger:
    """What the simulated departments decided and withdrew, shared across their threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._records: list[DecisionRecord] = []
        self._cancelled: list[tuple[str, str, str]] = []

    def record_cancel(self, department: str, bundle_id: str, item: str) -> None:
        with self._lock:
            self._cancelled.append((department, bundle_id, item))

    def cancellations(self) -> list[tuple[str, str, str]]:
        """(department, bundle id, item) of every filing withdrawn, in order."""
        with self._lock:
            return list(self._cancelled)

    def record(self, record: DecisionRecord) -> None:
        with self._lock:
            self._records.append(record)

    def records(self) -> list[DecisionRecord]:
        with self._lock:
            return list(self._records)

    def decided(self, bundle_id: str, item: str) -> bool:
        """Whether the item was approved or denied (a decision: never withdrawn)."""
        with self._lock:
            return any(
                (r.bundle_id, r.item) == (bundle_id, item) and r.verdict in _DECISIONS
                for r in self._records
            )


class SimulatedDepartment(Adapter):
    department_name: str = "模拟部门"
    scenario: Scenario = Scenario()
    ledger: DecisionLedger = DecisionLedger()
    decisions = Polled()

    def __init__(self, endpoint: str | None = None) -> None:
        super().__init__(endpoint)
        # The department's memory of its filings, by idempotency key.
        self._filed_at: dict[str, datetime] = {}
        self._pre_reviewed: set[str] = set()
        self._corrected: set[str] = set()

    async def handle(self, item: ItemDispatch, ctx: AdapterContext) -> OutcomeResult:
        rule = self.scenario.rule_for(item)
        if rule.verdict is Verdict.REJECT:
            return self._decide(item, rule.verdict, Rejected(reason=rule.reason))
        receipt = f"SIM-{self.department.upper()}-{item.bundle_id.hex[:8]}-{item.item}"
        await ctx.report(Accepted(receipt_no=receipt))
        if item.pre_review:
            self._pre_reviewed.add(item.idempotency_key)
        if rule.verdict is Verdict.CORRECT:
            return CorrectionRequested(reason=rule.reason, missing_materials=(MISSING_MATERIAL,))
        if item.pre_review:
            return Accepted(receipt_no=receipt)  # pre-reviewed: waits for its supplement
        if rule.pending_working_days:
            self._filed_at.setdefault(item.idempotency_key, clock.now())
            return Pending(department_status=PENDING_STATUS, filing_ref=receipt)
        return await self._conclude(item, item.prerequisite_results, receipt, rule)

    async def poll(self, item: ItemPoll, ctx: AdapterContext) -> OutcomeResult:
        rule = self.scenario.rule_for(item)
        filed_at = self._filed_at.setdefault(item.idempotency_key, clock.now())
        if _working_day_number(filed_at, clock.now()) <= rule.pending_working_days:
            return Pending(department_status=PENDING_STATUS, filing_ref=item.filing_ref)
        return await self._conclude(item, (), item.filing_ref or "", rule)

    async def supplement(self, item: ItemSupplement, ctx: AdapterContext) -> OutcomeResult:
        rule = self.scenario.rule_for(item)
        correction = item.purpose is SupplementPurpose.CORRECTION
        if rule.verdict is Verdict.CORRECT:
            if correction and item.materials:
                self._corrected.add(item.idempotency_key)
            if item.idempotency_key not in self._corrected:
                return CorrectionRequested(
                    reason=rule.reason, missing_materials=(MISSING_MATERIAL,)
                )
            rule = replace(rule, verdict=Verdict.APPROVE)
        if correction and item.idempotency_key in self._pre_reviewed:
            return Accepted(receipt_no=item.receipt_no)  # its prerequisites decide it later
        return await self._conclude(item, item.prerequisite_results, item.receipt_no or "", rule)

    async def cancel(self, item: ItemCancel, ctx: AdapterContext) -> None:
        # Like a real department: a decision (approval or denial) is never withdrawn,
        # reported (the ledger has it) or not polled for yet (its pending days are over).
        rule = self.scenario.rule_for(item)
        filed_at = self._filed_at.get(item.idempotency_key)
        if self.ledger.decided(str(item.bundle_id), item.item) or (
            rule.verdict in _DECISIONS
            and filed_at is not None
            and _working_day_number(filed_at, clock.now()) > rule.pending_working_days
        ):
            raise FatalDepartmentError(f"{self.department_name}已作出决定，不能撤回")
        self.ledger.record_cancel(self.department, str(item.bundle_id), item.item)

    async def _conclude(
        self,
        item: ItemDispatch | ItemSupplement | ItemPoll,
        prerequisites: tuple[PrerequisiteResult, ...],
        receipt: str,
        rule: Rule,
    ) -> OutcomeResult:
        await asyncio.sleep(rule.delay_seconds)
        if rule.verdict is Verdict.FAIL:
            result: OutcomeResult = Failed(error=rule.reason)
        elif rule.verdict is Verdict.DENY:
            result = Decided(approved=False, reason=rule.reason)
        else:
            certificate = Certificate(
                certificate_name=item.item_name_zh,
                certificate_number=receipt,
                issuer_name=f"{self.department_name}（模拟）",
                issue_date=date.today(),
            )
            result = Decided(approved=True, certificates=(certificate,))
        return self._decide(item, rule.verdict, result, prerequisites)

    def _decide(
        self,
        item: ItemDispatch | ItemSupplement | ItemPoll,
        verdict: Verdict,
        result: OutcomeResult,
        prerequisites: tuple[PrerequisiteResult, ...] = (),
    ) -> OutcomeResult:
        self.ledger.record(
            DecisionRecord(
                department=self.department,
                bundle_id=str(item.bundle_id),
                item=item.item,
                verdict=verdict,
                decided_at=clock.now(),
                prerequisites_seen=tuple(done.item for done in prerequisites),
            )
        )
        return result


def _working_day_number(filed_at: datetime, now: datetime) -> int:
    """Which working day of the filing `now` falls on (the filing day is day 1)."""
    first, today = filed_at.astimezone(CHINA_TZ).date(), now.astimezone(CHINA_TZ).date()
    return 1 + sum(
        1
        for offset in range(1, (today - first).days + 1)
        if chinese_calendar.is_workday(first + timedelta(days=offset))
    )


def simulated_adapter(
    department: str,
    catalog: Catalog,
    scenario: Scenario | None = None,
    ledger: DecisionLedger | None = None,
) -> SimulatedDepartment:
    """A simulated adapter for `department`, handling every service the catalog gives it."""
    cls: type[SimulatedDepartment] = type(
        f"Simulated_{department}",
        (SimulatedDepartment,),
        {
            "department": department,
            "department_name": catalog.departments[department].name_zh,
            "services": catalog.services_of(department),
            "scenario": scenario or Scenario(),
            "ledger": ledger or DecisionLedger(),
        },
    )
    cls.check_declaration(catalog)
    return cls()
