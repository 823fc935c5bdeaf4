"""A configurable simulated department, so every department in the catalog can be exercised.

It accepts each item, waits as configured, then decides as its scenario says (approve by
default; deny, reject or fail for chosen services or items) and records when it decided
in a ledger, which tests use to prove prerequisite order from the department side.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass, field
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
    Decided,
    Failed,
    ItemCancel,
    ItemDispatch,
    OutcomeResult,
    Rejected,
)


class Verdict(StrEnum):
    APPROVE = "approve"
    DENY = "deny"
    REJECT = "reject"
    FAIL = "fail"


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

    def rule_for(self, dispatch: ItemDispatch) -> Rule:
        return self.rules.get(dispatch.item) or self.rules.get(dispatch.service) or self.default

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
        await asyncio.sleep(rule.delay_seconds)
        if rule.verdict is Verdict.FAIL:
            return self._decide(item, rule.verdict, Failed(error=rule.reason))
        if rule.verdict is Verdict.DENY:
            return self._decide(item, rule.verdict, Decided(approved=False, reason=rule.reason))
        certificate = Certificate(
            certificate_name=item.item_name_zh,
            certificate_number=receipt,
            issuer_name=f"{self.department_name}（模拟）",
            issue_date=date.today(),
        )
        return self._decide(item, rule.verdict, Decided(approved=True, certificates=(certificate,)))

    async def cancel(self, item: ItemCancel, ctx: AdapterContext) -> None:
        self.ledger.record_cancel(self.department, str(item.bundle_id), item.item)

    def _decide(self, item: ItemDispatch, verdict: Verdict, result: OutcomeResult) -> OutcomeResult:
        self.ledger.record(
            DecisionRecord(
                department=self.department,
                bundle_id=str(item.bundle_id),
                item=item.item,
                verdict=verdict,
                decided_at=datetime.now(UTC),
                prerequisites_seen=tuple(done.item for done in item.prerequisite_results),
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
