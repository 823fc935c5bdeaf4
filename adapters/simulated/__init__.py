"""A configurable simulated department, so every department in the catalog can be exercised.

It accepts each item, waits as configured, then decides as its scenario says (approve by
default; deny, reject, fail or ask for a correction for chosen services or items) and
records when it decided in a ledger, which tests use to prove prerequisite order from the
department side. An item filed for pre-review (容缺预审) is accepted and decided only
when its supplement brings the prerequisites' results; a correction is approved once
its supplement brings materials.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import yaml

from adapters.base import Adapter
from adapters.context import AdapterContext
from contracts.catalog import Catalog
from contracts.messages import (
    Accepted,
    Certificate,
    CorrectionRequested,
    Decided,
    Failed,
    ItemCancel,
    ItemDispatch,
    ItemSupplement,
    OutcomeResult,
    PrerequisiteResult,
    Rejected,
)


class Verdict(StrEnum):
    APPROVE = "approve"
    DENY = "deny"
    REJECT = "reject"
    FAIL = "fail"
    CORRECT = "correct"  # ask for a correction first (补齐补正), approve once corrected


# What a simulated department asking for a correction says is missing.
MISSING_MATERIAL = "申请人有效身份证件（清晰完整）"


@dataclass(frozen=True)
class Rule:
    verdict: Verdict = Verdict.APPROVE
    reason: str = "模拟部门按场景设置作出该结论"
    delay_seconds: float = 0.0


@dataclass(frozen=True)
class Scenario:
    """Rules by item code or service code; anything unnamed follows `default`."""

    rules: dict[str, Rule] = field(default_factory=dict)
    default: Rule = Rule()

    def rule_for(self, request: ItemDispatch | ItemSupplement) -> Rule:
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


class SimulatedDepartment(Adapter):
    department_name: str = "模拟部门"
    scenario: Scenario = Scenario()
    ledger: DecisionLedger = DecisionLedger()

    async def handle(self, item: ItemDispatch, ctx: AdapterContext) -> OutcomeResult:
        rule = self.scenario.rule_for(item)
        if rule.verdict is Verdict.REJECT:
            return self._decide(item, rule.verdict, Rejected(reason=rule.reason))
        receipt = f"SIM-{self.department.upper()}-{item.bundle_id.hex[:8]}-{item.item}"
        await ctx.report(Accepted(receipt_no=receipt))
        if rule.verdict is Verdict.CORRECT:
            return CorrectionRequested(reason=rule.reason, missing_materials=(MISSING_MATERIAL,))
        if item.pre_review:
            return Accepted(receipt_no=receipt)  # pre-reviewed: waits for its supplement
        return await self._conclude(item, item.prerequisite_results, receipt, rule)

    async def supplement(self, item: ItemSupplement, ctx: AdapterContext) -> OutcomeResult:
        rule = self.scenario.rule_for(item)
        if rule.verdict is Verdict.CORRECT:
            if not item.materials:
                return CorrectionRequested(
                    reason=rule.reason, missing_materials=(MISSING_MATERIAL,)
                )
            rule = replace(rule, verdict=Verdict.APPROVE)
        return await self._conclude(item, item.prerequisite_results, item.receipt_no or "", rule)

    async def cancel(self, item: ItemCancel, ctx: AdapterContext) -> None:
        self.ledger.record_cancel(self.department, str(item.bundle_id), item.item)

    async def _conclude(
        self,
        item: ItemDispatch | ItemSupplement,
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
        item: ItemDispatch | ItemSupplement,
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
                decided_at=datetime.now(UTC),
                prerequisites_seen=tuple(done.item for done in prerequisites),
            )
        )
        return result


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
