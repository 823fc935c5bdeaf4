"""The conformance suite every department adapter passes against its simulator.

    from adapters.police import PoliceAdapter
    from adapters.police.simulator import create_app
    from adapters.testing.conformance import AdapterConformance

    class TestPoliceConformance(AdapterConformance):
        adapter_class = PoliceAdapter
        create_simulator = staticmethod(create_app)

It runs the adapter through the same `AdapterRunner` production uses, over real
loopback HTTP, and proves: approval with a receipt first, denial and business rejection
as results, one filing per item across retries and redeliveries, retries through a
flaky or briefly-down department, timeouts, the circuit breaker, refusal of garbage,
malformed and hostile XML, the delivery limit, and that a cancelled call files once.
Withdrawals (撤回) go through `AdapterRunner.cancel`: by receipt or, before one is known,
by idempotency key; nothing filed counts as withdrawn, a decided filing is refused.
Supplements go through `AdapterRunner.run`: a filing for pre-review (容缺预审) is accepted
and decided only after its prerequisites' results are supplied, and a correction request
(补齐补正) is answered with materials on the same filing, never a second one.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar

import pytest
import structlog.testing

from adapters.base import Adapter
from adapters.decisions import Polled
from adapters.resilience import RetryPolicy
from adapters.runner import AdapterRunner
from adapters.simulators.base import (
    CORRECTION_MATERIALS,
    DepartmentState,
    FaultMode,
    SimulatorServer,
    Stage,
    Verdict,
)
from adapters.testing.dispatches import dispatch_for
from contracts.catalog import default_catalog
from contracts.errors import DepartmentUnavailable
from contracts.messages import (
    Accepted,
    CorrectionRequested,
    Decided,
    DepartmentRequest,
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
from contracts.samples import SAMPLE_PDF
from runtime.storage import LocalMaterialStore, MaterialStore

# Enough attempts to outlast a half-second outage (backoffs 0.05, 0.1, 0.2, 0.2, 0.2 s).
FAST_RETRY = RetryPolicy(
    max_attempts=6, max_deliveries=3, initial_backoff=0.05, max_backoff=0.2, budget_seconds=6
)


class AdapterConformance:
    """Subclass with `adapter_class` and `create_simulator`; pytest collects the tests."""

    adapter_class: ClassVar[type[Adapter]]

    @staticmethod
    def create_simulator(state: DepartmentState) -> Any:
        """The department simulator's ASGI app; set `create_simulator = staticmethod(...)`."""
        raise NotImplementedError

    service: ClassVar[str | None] = None
    """The catalog service to exercise; by default the first one the adapter declares."""
    materials: MaterialStore
    """The adapter's material store in each test (see `material_store`)."""

    # -- fixtures ---------------------------------------------------------------------

    @pytest.fixture
    def state(self) -> DepartmentState:
        return DepartmentState(code=self.adapter_class.department, decision_delay=0.05)

    @pytest.fixture
    def server(self, state: DepartmentState) -> Iterator[SimulatorServer]:
        with SimulatorServer(type(self).create_simulator(state), state) as server:
            yield server

    @pytest.fixture(autouse=True)
    def material_store(self, tmp_path: Path) -> MaterialStore:
        """Where `ctx.fetch_material` reads the sample dispatch's materials from and
        `ctx.store_certificate` keeps the files a department issues."""
        self.materials = LocalMaterialStore(tmp_path / "materials")
        self.materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
        return self.materials

    def _service(self) -> str:
        return self.service or sorted(self.adapter_class.services)[0]

    def _dispatch(self) -> ItemDispatch:
        return dispatch_for(self._service(), department=self.adapter_class.department)

    def _withdrawal(self, dispatch: ItemDispatch, receipt_no: str | None) -> ItemCancel:
        """The router's withdrawal of `dispatch`, naming its receipt if one is known."""
        return ItemCancel(
            **dispatch.filing(),
            receipt_no=receipt_no,
            reason="申请人撤回（测试）",
        )

    def _supplement(
        self, dispatch: ItemDispatch, receipt_no: str | None, purpose: SupplementPurpose
    ) -> ItemSupplement:
        """The router's supplement to `dispatch`: a decided prerequisite, or its materials
        resubmitted as a correction."""
        prerequisites = (PrerequisiteResult(item="prerequisite", department="other"),)
        return ItemSupplement(
            **dispatch.filing(),
            item_name_zh=dispatch.item_name_zh,
            receipt_no=receipt_no,
            purpose=purpose,
            prerequisite_results=prerequisites
            if purpose is SupplementPurpose.PREREQUISITES
            else (),
            materials=dispatch.materials if purpose is SupplementPurpose.CORRECTION else (),
        )

    def _poll(
        self, dispatch: ItemDispatch, receipt_no: str | None, filing_ref: str | None
    ) -> ItemPoll:
        """The router's poll of the filing `dispatch` made."""
        return ItemPoll(
            **dispatch.filing(),
            item_name_zh=dispatch.item_name_zh,
            receipt_no=receipt_no,
            filing_ref=filing_ref,
        )

    def _fast_adapter(self, server: SimulatorServer, **overrides: Any) -> Adapter:
        """The adapter with test-speed settings, pointed at the simulator."""
        settings = {
            "retry": FAST_RETRY,
            "timeout_seconds": 1.0,
            "breaker_threshold": 100,
            **overrides,
        }
        fast: type[Adapter] = type(
            f"Fast{self.adapter_class.__name__}", (self.adapter_class,), settings
        )
        return fast(endpoint=server.url)

    def _run(
        self,
        server: SimulatorServer,
        dispatch: DepartmentRequest | None = None,
        *,
        delivery: int = 1,
        cancel_after: float | None = None,
        **overrides: Any,
    ) -> tuple[OutcomeResult | None, list[OutcomeResult]]:
        """Run one dispatch or supplement; returns the outcome (None if cancelled) and
        interim reports."""
        reports: list[OutcomeResult] = []

        async def report(result: OutcomeResult) -> None:
            reports.append(result)

        async def run() -> OutcomeResult | None:
            runner = AdapterRunner(self._fast_adapter(server, **overrides), self.materials)
            try:
                call = asyncio.ensure_future(
                    runner.run(dispatch or self._dispatch(), delivery, report)
                )
                if cancel_after is None:
                    return await call
                await asyncio.sleep(cancel_after)
                call.cancel()
                return None
            finally:
                await runner.aclose()

        return asyncio.run(run()), reports

    def _cancel(self, server: SimulatorServer, cancel: ItemCancel, **overrides: Any) -> bool:
        """Run one withdrawal as the worker does; True if the department withdrew it."""

        async def run() -> bool:
            runner = AdapterRunner(self._fast_adapter(server, **overrides), self.materials)
            try:
                return await runner.cancel(cancel, 1)
            finally:
                await runner.aclose()

        return asyncio.run(run())

    def _pending_filing(self, state: DepartmentState, dispatch: ItemDispatch) -> str:
        """File `dispatch` directly, undecided for a minute; its receipt."""
        state.decision_delay = 60.0
        key, service, project_no = dispatch.idempotency_key, dispatch.service, dispatch.project_no
        return state.file(key, service, project_no, {}).receipt_no

    # -- the suite --------------------------------------------------------------------

    def test_declaration_matches_the_catalog(self) -> None:
        self.adapter_class.check_declaration(default_catalog())

    def test_an_undecided_filing_is_pending_and_polled_to_its_decision(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        if not isinstance(self.adapter_class.decisions, Polled):
            pytest.skip("the adapter does not declare decisions = Polled(...)")
        state.decision_delay = 60.0  # decided when the test says so (`decide_now`)
        # The call waits briefly for a quick decision (`decide_within_seconds` where the
        # adapter has it), then leaves the waiting to the router's polls.
        quick: dict[str, Any] = (
            {"decide_within_seconds": 0.2}
            if hasattr(self.adapter_class, "decide_within_seconds")
            else {}
        )
        dispatch = self._dispatch()
        outcome, reports = self._run(server, dispatch, **quick)
        assert isinstance(outcome, Pending), outcome
        receipt = next((r.receipt_no for r in reports if isinstance(r, Accepted)), None)
        poll = self._poll(dispatch, receipt, outcome.filing_ref)
        soon, _ = self._run(server, poll, **quick)
        assert isinstance(soon, Pending), soon
        state.decide_now()
        decided, _ = self._run(server, poll, **quick)
        assert isinstance(decided, Decided) and decided.approved, decided
        assert len(state.filings) == 1

    def test_an_approval_comes_after_a_receipt(self, server: SimulatorServer) -> None:
        outcome, reports = self._run(server)
        assert isinstance(outcome, Decided) and outcome.approved, outcome
        assert outcome.certificates, "an approval carries its certificate"
        assert any(isinstance(r, Accepted) and r.receipt_no for r in reports)

    def test_a_denial_is_a_result_with_its_reason(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        state.verdicts[self._service()] = (Verdict.DENY, "不符合办理条件（测试）")
        outcome, _ = self._run(server)
        assert isinstance(outcome, Decided) and not outcome.approved, outcome
        assert outcome.reason == "不符合办理条件（测试）"

    def test_a_business_rejection_is_a_result_with_its_reason(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        state.verdicts[self._service()] = (Verdict.REJECT, "材料不齐全（测试）")
        outcome, _ = self._run(server)
        assert isinstance(outcome, Rejected), outcome
        assert outcome.reason == "材料不齐全（测试）"

    def test_a_redelivered_dispatch_files_once(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        dispatch = self._dispatch()
        first, _ = self._run(server, dispatch)
        second, _ = self._run(server, dispatch, delivery=2)
        assert first == second
        assert len(state.filings) == 1
        assert state.duplicate_filings() == {}

    def test_a_flaky_department_is_retried_and_files_once(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        state.set_fault(FaultMode.FLAKY)
        outcome, _ = self._run(server)
        assert isinstance(outcome, Decided) and outcome.approved, outcome
        assert state.duplicate_filings() == {}

    def test_a_department_down_for_a_while_is_waited_for(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        state.set_fault(FaultMode.DOWN, seconds=0.5)
        outcome, _ = self._run(server)
        assert isinstance(outcome, Decided) and outcome.approved, outcome
        assert len(state.filings) == 1

    def test_a_department_that_never_answers_is_retried_later_never_failed(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        state.set_fault(FaultMode.TIMEOUT)
        retry = RetryPolicy(max_attempts=2, initial_backoff=0.01, max_backoff=0.05)
        for delivery in (1, 2):
            with pytest.raises(DepartmentUnavailable):
                self._run(server, delivery=delivery, timeout_seconds=0.3, retry=retry)

    def test_the_breaker_stops_calls_to_a_department_that_is_down(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        state.set_fault(FaultMode.DOWN)
        # A budget that outlasts two failed calls on a loaded machine: the breaker, not
        # the budget, must end the attempts.
        retry = RetryPolicy(max_attempts=6, initial_backoff=0.01, budget_seconds=30.0)
        with pytest.raises(DepartmentUnavailable, match="circuit"):
            self._run(server, breaker_threshold=2, breaker_reset_seconds=60, retry=retry)
        assert state.requests == 2, "calls after the breaker opened reached the department"

    @pytest.mark.parametrize("fault", [FaultMode.GARBAGE, FaultMode.MALFORMED])
    def test_an_unreadable_answer_fails_the_item(
        self, server: SimulatorServer, state: DepartmentState, fault: FaultMode
    ) -> None:
        state.set_fault(fault)
        outcome, _ = self._run(server)
        assert isinstance(outcome, Failed), outcome

    @pytest.mark.parametrize("fault", [FaultMode.BILLION_LAUGHS, FaultMode.EXTERNAL_ENTITY])
    def test_hostile_xml_is_refused_unexpanded(
        self, server: SimulatorServer, state: DepartmentState, fault: FaultMode
    ) -> None:
        state.set_fault(fault)
        outcome, _ = self._run(server)
        assert isinstance(outcome, Failed), outcome
        assert "lollol" not in outcome.error and "root:" not in outcome.error

    def test_a_dispatch_past_the_delivery_limit_is_not_filed(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        outcome, _ = self._run(server, delivery=FAST_RETRY.max_deliveries + 1)
        assert isinstance(outcome, Failed), outcome
        assert state.requests == 0

    def test_a_cancelled_call_is_redone_without_a_second_filing(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        dispatch = self._dispatch()
        state.decision_delay = 0.5
        cancelled, _ = self._run(server, dispatch, cancel_after=0.2)
        assert cancelled is None
        outcome, _ = self._run(server, dispatch, delivery=2)
        assert isinstance(outcome, Decided) and outcome.approved, outcome
        assert len(state.filings) == 1
        assert state.duplicate_filings() == {}

    def test_a_filing_withdrawn_at_the_department_fails_the_item(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        dispatch = self._dispatch()
        state.decision_delay = 60.0
        receipt_no = state.file(
            dispatch.idempotency_key, dispatch.service, dispatch.project_no, {}
        ).receipt_no
        assert state.cancel(receipt_no) is not None
        with structlog.testing.capture_logs() as logs:
            outcome, _ = self._run(server, dispatch)
        assert isinstance(outcome, Failed) and "withdrawn" in outcome.error, outcome
        assert not _errors(logs), "a withdrawal is an ordinary end, not an error"

    @pytest.mark.parametrize("by_receipt", [True, False], ids=["by_receipt", "by_key"])
    def test_a_pending_filing_is_withdrawn(
        self, server: SimulatorServer, state: DepartmentState, by_receipt: bool
    ) -> None:
        dispatch = self._dispatch()
        receipt_no = self._pending_filing(state, dispatch)
        withdrawal = self._withdrawal(dispatch, receipt_no if by_receipt else None)
        assert self._cancel(server, withdrawal)
        assert state.filings[dispatch.idempotency_key].cancelled

    def test_withdrawing_what_was_never_filed_is_done(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        assert self._cancel(server, self._withdrawal(self._dispatch(), None))
        assert state.filings == {}

    def test_a_decided_filing_is_not_withdrawn(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        dispatch = self._dispatch()
        state.decision_delay = 0.0
        filed = state.file(dispatch.idempotency_key, dispatch.service, dispatch.project_no, {})
        with structlog.testing.capture_logs() as logs:
            assert not self._cancel(server, self._withdrawal(dispatch, filed.receipt_no))
        assert not _errors(logs), "a refusal to withdraw is the department's answer"
        assert not filed.cancelled
        assert state.requests == 1, "a refusal is final: it must not be retried"

    def test_a_flaky_department_still_withdraws(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        dispatch = self._dispatch()
        receipt_no = self._pending_filing(state, dispatch)
        state.set_fault(FaultMode.FLAKY)
        state.requests = state.flaky_every - 1  # so that the first call is the one that fails
        assert self._cancel(server, self._withdrawal(dispatch, receipt_no))
        assert state.filings[dispatch.idempotency_key].cancelled
        assert state.requests == state.flaky_every + 1, "the failed call was not retried"

    def test_a_pre_reviewed_filing_is_decided_only_after_its_prerequisites(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        dispatch = self._dispatch().model_copy(update={"pre_review": True})
        pre_reviewed, _ = self._run(server, dispatch)
        assert isinstance(pre_reviewed, Accepted) and pre_reviewed.receipt_no, pre_reviewed
        (filing,) = state.filings.values()
        assert filing.stage() is Stage.PRE_REVIEWED
        supplement = self._supplement(
            dispatch, pre_reviewed.receipt_no, SupplementPurpose.PREREQUISITES
        )
        decided, _ = self._run(server, supplement)
        assert isinstance(decided, Decided) and decided.approved, decided
        assert [s["prerequisites"] is not None for s in filing.supplements] == [True]
        assert len(state.filings) == 1

    def test_a_correction_is_supplied_to_the_same_filing(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        state.verdicts[self._service()] = (Verdict.CORRECT, None)
        dispatch = self._dispatch()
        asked, reports = self._run(server, dispatch)
        assert isinstance(asked, CorrectionRequested), asked
        assert asked.missing_materials == CORRECTION_MATERIALS and asked.reason
        receipt_no = next(r.receipt_no for r in reports if isinstance(r, Accepted))
        correction = self._supplement(dispatch, receipt_no, SupplementPurpose.CORRECTION)
        decided, _ = self._run(server, correction)
        assert isinstance(decided, Decided) and decided.approved, decided
        (filing,) = state.filings.values()
        assert [bool(s["materials"]) for s in filing.supplements] == [True]
        assert state.duplicate_filings() == {}


def _errors(logs: Sequence[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """Log entries that would set off an error-log alert."""
    return [entry for entry in logs if entry["log_level"] in ("error", "critical")]
