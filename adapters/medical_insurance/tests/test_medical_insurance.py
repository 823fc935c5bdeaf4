"""The medical insurance adapter against its simulator over loopback HTTP: the
conformance suite, the REST simulator's checks, and the national envelope's own rules."""

from __future__ import annotations

import re
from typing import Any

from adapters.medical_insurance import OPERATIONS, MedicalInsuranceAdapter
from adapters.medical_insurance.adapter import QUERY_INFNO, QueryInput
from adapters.medical_insurance.simulator import create_app
from adapters.testing.conformance import AdapterConformance
from adapters.testing.dispatches import dispatch_for
from adapters.testing.rest import RestSimulatorChecks
from adapters.testing.simulator import DepartmentState, SimulatorServer, Verdict
from contracts.messages import Decided, Failed, ItemDispatch, Rejected

DEPARTMENT = "medical_insurance"
SERVICE = "resident_medical_insurance_enrolment"


class TestMedicalInsuranceAdapter(RestSimulatorChecks, AdapterConformance):
    adapter_class = MedicalInsuranceAdapter
    create_simulator = staticmethod(create_app)
    service = SERVICE
    api_paths = frozenset({"/fsi/api/{infno}"})

    def filing_call(self, dispatch: ItemDispatch, key: str) -> tuple[str, dict[str, Any]]:
        adapter = MedicalInsuranceAdapter()
        infno = adapter.services[dispatch.service]
        data = adapter.filing(dispatch, key)
        return f"/fsi/api/{infno}", adapter.envelope(dispatch, infno, data).model_dump()

    def test_the_envelope_carries_the_key_and_a_fresh_national_msgid(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        dispatch = dispatch_for("unit_medical_insurance_registration", department=DEPARTMENT)
        outcome, _ = self._run(server, dispatch)
        assert isinstance(outcome, Decided) and outcome.approved, outcome
        (filing,) = state.filings.values()
        assert filing.payload["idempotency_key"] == dispatch.idempotency_key
        assert filing.payload["psn_cert_type"] == "USCC"
        adapter = MedicalInsuranceAdapter()
        query = QueryInput(rcpt_no=filing.receipt_no)
        envelopes = [adapter.envelope(dispatch, QUERY_INFNO, query) for _ in range(3)]
        msgids = {envelope.msgid for envelope in envelopes}
        assert len(msgids) == 3
        assert all(re.fullmatch(r"\d{12}\d{14}\d{4}", msgid) for msgid in msgids)
        assert {(e.recer_sys_code, e.infver, e.opter_type) for e in envelopes} == {
            ("LIANBAN", "V1.0", "1")
        }

    def test_a_rejection_is_answered_while_filing_without_acceptance(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        state.verdicts[SERVICE] = (Verdict.REJECT, "已在外地参保，不予受理")
        outcome, reports = self._run(server)
        assert outcome == Rejected(reason="已在外地参保，不予受理")
        assert reports == []

    def test_an_error_code_without_a_rejection_fails_the_item(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        unknown_transaction = {**OPERATIONS, SERVICE: "2999"}
        outcome, _ = self._run(server, services=unknown_transaction)
        assert isinstance(outcome, Failed) and "infcode -1" in outcome.error, outcome
        assert state.filings == {}
