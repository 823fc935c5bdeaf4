"""The conformance suite plus the checks every REST department's simulator passes.

    class TestHrssAdapter(RestSimulatorChecks):
        adapter_class = HrssAdapter
        create_simulator = staticmethod(create_app)
        api_paths = frozenset({"/api/v1/applications"})

        def filing_call(self, dispatch, key):
            return "/api/v1/applications", HrssAdapter().filing(dispatch).model_dump(mode="json")

The checks run against the department's own simulator (built on `adapters.simulators.rest`):
it describes its API, refuses a filing without an Idempotency-Key, answers a repeated
filing with the first, and its adapter waits out a second-long outage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import httpx

from adapters.resilience import RetryPolicy
from adapters.simulators.base import DepartmentState, FaultMode, SimulatorServer
from adapters.testing.conformance import AdapterConformance
from contracts.catalog import default_catalog
from contracts.messages import Decided, ItemDispatch

FILING_KEY = "bundle:item"
# Enough attempts for a second-long outage: backoffs of 0.05, 0.1, 0.2, then 0.3 s.
OUTAGE_RETRY = RetryPolicy(max_attempts=8, initial_backoff=0.05, max_backoff=0.3, budget_seconds=10)


class RestSimulatorChecks(AdapterConformance):
    """The conformance suite and the tests of a REST department's simulator and adapter
    beyond it; set `api_paths` and implement `filing_call`."""

    api_paths: ClassVar[frozenset[str]]
    """Paths the simulator's OpenAPI document must describe."""

    def filing_call(self, dispatch: ItemDispatch, key: str) -> tuple[str, dict[str, Any]]:
        """The path and JSON body the adapter posts to file `dispatch` under `key`."""
        raise NotImplementedError

    def test_every_catalog_service_has_its_own_operation(self) -> None:
        operations = self.adapter_class.services
        assert isinstance(operations, Mapping)
        assert set(operations) == default_catalog().services_of(self.adapter_class.department)
        assert len(set(operations.values())) == len(operations)

    def test_the_api_describes_itself(self, server: SimulatorServer) -> None:
        document = httpx.get(f"{server.url}/openapi.json").json()
        assert self.api_paths <= set(document["paths"])

    def test_a_filing_without_idempotency_key_is_refused(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        path, body = self.filing_call(self._dispatch(), FILING_KEY)
        with httpx.Client(base_url=server.url) as client:
            missing = client.post(path, json=body)
            blank = client.post(path, json=body, headers={"Idempotency-Key": ""})
        assert (missing.status_code, blank.status_code) == (400, 400)
        assert state.filings == {}

    def test_a_repeated_filing_answers_the_first(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        state.decision_delay = 60.0  # both answers describe the same undecided filing
        path, body = self.filing_call(self._dispatch(), FILING_KEY)
        with httpx.Client(base_url=server.url) as client:
            answers = [
                client.post(path, json=body, headers={"Idempotency-Key": FILING_KEY})
                for _ in range(2)
            ]
        assert [answer.status_code // 100 for answer in answers] == [2, 2]
        assert answers[0].json() == answers[1].json()
        assert len(state.filings) == 1

    def test_a_department_down_for_a_second_is_waited_for(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        state.set_fault(FaultMode.DOWN, seconds=1.0)
        outcome, _ = self._run(server, retry=OUTAGE_RETRY)
        assert isinstance(outcome, Decided) and outcome.approved, outcome
        assert len(state.filings) == 1
        assert state.duplicate_filings() == {}
