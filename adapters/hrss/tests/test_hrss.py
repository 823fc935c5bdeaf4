"""The hrss adapter against its simulator over loopback HTTP: the conformance suite, the
REST simulator's checks, and what is particular to the hrss API."""

from __future__ import annotations

from typing import Any

import httpx

from adapters.hrss import HrssAdapter
from adapters.hrss.simulator import create_app
from adapters.simulators.base import DepartmentState, SimulatorServer
from adapters.testing.dispatches import dispatch_for
from adapters.testing.rest_checks import FILING_KEY, RestSimulatorChecks
from contracts.messages import Decided, ItemDispatch


class TestHrssAdapter(RestSimulatorChecks):
    adapter_class = HrssAdapter
    create_simulator = staticmethod(create_app)
    service = "unemployment_registration"  # a natural person applies
    api_paths = frozenset(
        {
            "/api/v1/applications",
            "/api/v1/applications/{receipt_no}",
            "/api/v1/applications/{receipt_no}/cancel",
            "/api/v1/applications/cancel",
        }
    )

    def filing_call(self, dispatch: ItemDispatch, key: str) -> tuple[str, dict[str, Any]]:
        # hrss carries the key in the header only, so the body does not depend on it.
        return "/api/v1/applications", HrssAdapter().filing(dispatch).model_dump(mode="json")

    def test_an_enterprise_is_filed_under_its_credit_code(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        dispatch = dispatch_for("employee_social_insurance_enrolment", department="hrss")
        outcome, _ = self._run(server, dispatch)
        assert isinstance(outcome, Decided) and outcome.approved, outcome
        (filing,) = state.filings.values()
        assert filing.payload["applicant"]["id_type"] == "USCC"
        assert filing.payload["service_code"] == "SB0103"

    def test_a_pending_filing_can_be_cancelled_once_only_before_its_decision(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        state.decision_delay = 60.0
        path, body = self.filing_call(self._dispatch(), FILING_KEY)
        with httpx.Client(base_url=server.url) as client:
            filed = client.post(path, json=body, headers={"Idempotency-Key": FILING_KEY})
            receipt_no = filed.json()["receipt_no"]
            cancelled = client.post(f"{path}/{receipt_no}/cancel")
            status = client.get(f"{path}/{receipt_no}")
            unknown = client.get(f"{path}/HRSS-99999999")
            state.decision_delay = 0.0
            decided = state.file("decided", self._service(), "P-2", {}).receipt_no
            too_late = client.post(f"{path}/{decided}/cancel")
        assert filed.status_code == 201
        assert cancelled.json()["status"] == status.json()["status"] == "CANCELLED"
        assert (unknown.status_code, too_late.status_code) == (404, 409)
