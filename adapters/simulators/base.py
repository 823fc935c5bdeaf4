"""The common core of department simulators: what a simulated department remembers,
how it decides later, and how it can be told to misbehave.

Each department's simulator (`adapters/<department>/simulator.py`) is a real HTTP or
SOAP server built on this: it files applications idempotently by the key the adapter
sends, counts every filing per applicant and service (so a test sees duplicates the key
did not prevent), decides after a delay, and applies the current fault mode.
"""

from __future__ import annotations

import asyncio
import itertools
import threading
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from runtime.serving import ThreadedServer


class FaultMode(StrEnum):
    NONE = "none"
    SLOW = "slow"  # answers after `slow_seconds`
    DOWN = "down"  # 503 (or a SOAP Server fault) to everything
    FLAKY = "flaky"  # every `flaky_every`-th request fails like DOWN
    GARBAGE = "garbage"  # answers bytes that are neither JSON nor XML
    MALFORMED = "malformed"  # answers broken XML / JSON
    BILLION_LAUGHS = "billion_laughs"  # answers an entity-expansion bomb
    EXTERNAL_ENTITY = "external_entity"  # answers XML that references a local file
    TIMEOUT = "timeout"  # never answers in time
    OVERSIZED = "oversized"  # answers a document of `oversized_bytes`, more than a cap allows


class Verdict(StrEnum):
    APPROVE = "approve"
    DENY = "deny"
    REJECT = "reject"
    CORRECT = "correct"  # asks for a correction (补齐补正), then approves once supplemented


class Stage(StrEnum):
    """What a department says of a filing when asked."""

    PENDING = "pending"
    PRE_REVIEWED = "pre_reviewed"  # passed pre-review; decides once prerequisites arrive
    CORRECTION_REQUIRED = "correction_required"
    APPROVED = "approved"
    DENIED = "denied"
    REJECTED = "rejected"
    CANCELLED = "cancelled"


# An XML bomb: a few hundred bytes that expand to gigabytes if entities are resolved.
BILLION_LAUGHS = (
    '<?xml version="1.0"?>\n<!DOCTYPE lolz [\n<!ENTITY lol "lol">\n'
    + "".join(
        f'<!ENTITY lol{n} "{("&lol" + (str(n - 1) if n > 1 else "") + ";") * 10}">\n'
        for n in range(1, 10)
    )
    + "]>\n<lolz>&lol9;</lolz>\n"
)
EXTERNAL_ENTITY = (
    '<?xml version="1.0"?>\n<!DOCTYPE data [<!ENTITY secret SYSTEM "file:///etc/passwd">]>\n'
    "<data>&secret;</data>\n"
)


async def oversized_body(head: bytes, size: int) -> AsyncIterator[bytes]:
    """`head`, then blanks up to `size` bytes in chunks, with no Content-Length: a client
    learns how big the answer is only by reading it."""
    yield head
    blanks = b" " * 65536
    for _ in range(max(0, size - len(head)) // len(blanks) + 1):
        yield blanks


@dataclass
class Filing:
    receipt_no: str
    idempotency_key: str
    service: str
    subject: str
    verdict: Verdict
    reason: str | None
    filed_at: float
    decide_at: float
    payload: dict[str, Any]
    cancelled: bool = False
    awaiting_prerequisites: bool = False
    corrected: bool = False
    supplements: list[dict[str, Any]] = field(default_factory=list)

    @property
    def decided(self) -> bool:
        return self.stage() in _DECIDED

    def stage(self) -> Stage:
        if self.cancelled:
            return Stage.CANCELLED
        if time.monotonic() < self.decide_at:
            return Stage.PENDING
        if self.verdict is Verdict.REJECT:
            return Stage.REJECTED
        if self.awaiting_prerequisites:
            return Stage.PRE_REVIEWED
        if self.verdict is Verdict.CORRECT and not self.corrected:
            return Stage.CORRECTION_REQUIRED
        return Stage.DENIED if self.verdict is Verdict.DENY else Stage.APPROVED


_DECIDED = frozenset({Stage.APPROVED, Stage.DENIED, Stage.REJECTED})
# What a department that asks for a correction (Verdict.CORRECT) says is missing.
CORRECTION_MATERIALS = ("申请人有效身份证件（清晰完整）",)


@dataclass
class DepartmentState:
    """A simulated department's memory and behaviour; safe to change from a test thread."""

    code: str
    decision_delay: float = 0.2
    verdicts: dict[str, tuple[Verdict, str | None]] = field(default_factory=dict)
    fault: FaultMode = FaultMode.NONE
    fault_until: float | None = None  # monotonic time the fault ends; None = until changed
    slow_seconds: float = 2.0
    flaky_every: int = 2
    oversized_bytes: int = 4 * 1024 * 1024
    filings: dict[str, Filing] = field(default_factory=dict)
    filings_per_subject: dict[tuple[str, str], int] = field(default_factory=dict)
    requests: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _numbers: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def set_fault(self, mode: FaultMode, seconds: float | None = None) -> None:
        """Misbehave as `mode`, for `seconds` (or until told otherwise)."""
        with self._lock:
            self.fault = mode
            self.fault_until = None if seconds is None else time.monotonic() + seconds

    def active_fault(self) -> FaultMode:
        """The fault that applies to the request being served now (counts requests)."""
        with self._lock:
            self.requests += 1
            if self.fault_until is not None and time.monotonic() >= self.fault_until:
                self.fault, self.fault_until = FaultMode.NONE, None
            if self.fault is FaultMode.FLAKY:
                return FaultMode.DOWN if self.requests % self.flaky_every == 0 else FaultMode.NONE
            return self.fault

    async def delay_for(self, fault: FaultMode) -> None:
        if fault is FaultMode.SLOW:
            await asyncio.sleep(self.slow_seconds)
        elif fault is FaultMode.TIMEOUT:
            await asyncio.sleep(3600)

    def file(
        self,
        idempotency_key: str,
        service: str,
        subject: str,
        payload: dict[str, Any],
        *,
        pre_review: bool = False,
    ) -> Filing:
        """File once per idempotency key; a repeat returns the first filing. A filing for
        pre-review is not decided before its prerequisites' results are supplied."""
        with self._lock:
            existing = self.filings.get(idempotency_key)
            if existing is not None:
                return existing
            verdict, reason = self.verdicts.get(service, (Verdict.APPROVE, None))
            now = time.monotonic()
            filing = Filing(
                receipt_no=f"{self.code.upper()}-{next(self._numbers):08d}",
                idempotency_key=idempotency_key,
                service=service,
                subject=subject,
                verdict=verdict,
                reason=reason or _default_reason(verdict),
                filed_at=now,
                decide_at=now + self.decision_delay,
                payload=payload,
                awaiting_prerequisites=pre_review,
            )
            self.filings[idempotency_key] = filing
            key = (subject, service)
            self.filings_per_subject[key] = self.filings_per_subject.get(key, 0) + 1
            return filing

    def find(self, receipt_no: str) -> Filing | None:
        with self._lock:
            return self._by_receipt(receipt_no)

    def cancel(self, receipt_no: str) -> Filing | None:
        """Withdraw the filing with this receipt unless it is decided (then it stays as it
        is; the caller refuses); None if there is no such receipt."""
        with self._lock:
            return _withdraw(self._by_receipt(receipt_no))

    def cancel_by_key(self, idempotency_key: str) -> Filing | None:
        """As `cancel`, for a filing known only by its key; None: nothing filed under it."""
        with self._lock:
            return _withdraw(self.filings.get(idempotency_key))

    def supplement(
        self,
        receipt_no: str,
        *,
        prerequisites: list[Any] | None = None,
        materials: list[Any] | None = None,
    ) -> Filing | None:
        """Add prerequisites' results or corrected materials to an undecided filing, which
        then goes back for a decision; None if there is no such receipt."""
        with self._lock:
            filing = self._by_receipt(receipt_no)
            if filing is None or filing.cancelled or filing.decided:
                return filing
            filing.supplements.append({"prerequisites": prerequisites, "materials": materials})
            if prerequisites is not None:
                filing.awaiting_prerequisites = False
            if materials:
                filing.corrected = True
            filing.decide_at = time.monotonic() + self.decision_delay
            return filing

    def decide_now(self) -> None:
        """Every filing waiting out its decision delay is due now: a test's stand-in for
        the department's working days, instead of sleeping through them."""
        with self._lock:
            now = time.monotonic()
            for filing in self.filings.values():
                filing.decide_at = min(filing.decide_at, now)

    def _by_receipt(self, receipt_no: str) -> Filing | None:
        return next((f for f in self.filings.values() if f.receipt_no == receipt_no), None)

    def duplicate_filings(self) -> dict[tuple[str, str], int]:
        """Applicant and service filed more than once: what idempotency must prevent."""
        with self._lock:
            return {key: n for key, n in self.filings_per_subject.items() if n > 1}


def _withdraw(filing: Filing | None) -> Filing | None:
    # Decided is final: a department never undoes a decision by withdrawing it.
    if filing is not None and not filing.decided:
        filing.cancelled = True
    return filing


def _default_reason(verdict: Verdict) -> str | None:
    return {
        Verdict.APPROVE: None,
        Verdict.DENY: "经审查不符合办理条件",
        Verdict.REJECT: "申请材料不齐全，不予受理",
        Verdict.CORRECT: "申请材料需补正：请补充提交清晰完整的证明材料",
    }[verdict]


class SimulatorServer:
    """Runs a simulator's ASGI app on loopback; use as a context manager."""

    def __init__(self, app: Any, state: DepartmentState) -> None:
        self.state = state
        self._server = ThreadedServer(app)

    @property
    def url(self) -> str:
        return self._server.url

    def __enter__(self) -> SimulatorServer:
        self._server.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._server.stop()
