"""The conformance suite plus the checks every SOAP department's simulator passes.

    class TestPoliceAdapter(SoapSimulatorChecks):
        adapter_class = PoliceAdapter
        create_simulator = staticmethod(create_app)
        filing_service = SERVICE
        enterprise_service = "seal_engraving_filing"

The checks run against the department's own simulator (a `filing_app` of
`adapters.simulators.soap`): it serves its WSDL, answers unknown operations and codes
and requests with a DTD as Client faults, files an enterprise under its credit code, and
withdraws by receipt or key.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar

import httpx
from lxml import etree

from adapters.simulators.base import BILLION_LAUGHS, DepartmentState, SimulatorServer
from adapters.simulators.soap import (
    SUBMIT_FIELDS,
    XML_MEDIA_TYPE,
    FilingService,
    envelope,
    safe_parser,
)
from adapters.testing.conformance import AdapterConformance
from adapters.testing.dispatches import dispatch_for
from contracts.application import LegalEntity
from contracts.messages import Decided


class SoapSimulatorChecks(AdapterConformance):
    """The conformance suite and the tests of a SOAP department's simulator; set
    `filing_service` and `enterprise_service`."""

    filing_service: ClassVar[FilingService]
    enterprise_service: ClassVar[str]
    """A catalog service enterprises apply for."""

    def _post(
        self, server: SimulatorServer, element: str, fields: Mapping[str, str | None]
    ) -> etree._Element:
        body = envelope(self.filing_service.namespace, element, fields)
        answer = httpx.post(server.url, content=body, headers={"Content-Type": XML_MEDIA_TYPE})
        return etree.fromstring(answer.content, parser=safe_parser())

    def test_the_wsdl_is_served(self, server: SimulatorServer) -> None:
        answer = httpx.get(f"{server.url}/?wsdl")
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/xml")
        assert answer.content == self.filing_service.wsdl.read_bytes()

    def test_unknown_operations_and_codes_are_client_faults(self, server: SimulatorServer) -> None:
        unknown = self._post(server, "Teleport", {})
        fields = dict.fromkeys(SUBMIT_FIELDS, "[]") | {"ServiceCode": "NO-SUCH-CODE"}
        wrong_code = self._post(server, "SubmitApplication", fields)
        for answer in (unknown, wrong_code):
            assert answer.findtext(".//faultcode") == "soap:Client"

    def test_an_enterprise_is_filed_under_its_credit_code(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        dispatch = dispatch_for(self.enterprise_service, department=self.adapter_class.department)
        outcome, _ = self._run(server, dispatch)
        assert isinstance(outcome, Decided) and outcome.approved, outcome
        assert isinstance(dispatch.applicant, LegalEntity)
        (filing,) = state.filings.values()
        code = self.filing_service.operations[self.enterprise_service]
        assert filing.payload["ServiceCode"] == code
        assert filing.payload["ApplicantIdType"] == "001"  # 统一社会信用代码
        assert filing.payload["ApplicantIdNumber"] == dispatch.applicant.uscc

    def test_a_request_with_a_dtd_is_refused_unexpanded(self, server: SimulatorServer) -> None:
        answer = httpx.post(server.url, content=BILLION_LAUGHS.encode())
        assert answer.status_code == 500 and b"soap:Client" in answer.content
        assert b"lollol" not in answer.content

    def test_cancel_application_withdraws_a_pending_filing(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        state.decision_delay = 60.0
        receipt_no = state.file("bundle:item", self._service(), "P-1", {}).receipt_no
        withdrawn = self._post(server, "CancelApplication", {"ReceiptNo": receipt_no})
        assert withdrawn.findtext(f".//{{{self.filing_service.namespace}}}Status") == "CANCELLED"
        assert state.filings["bundle:item"].cancelled

    def test_cancel_application_takes_either_receipt_or_key(self, server: SimulatorServer) -> None:
        both = self._post(server, "CancelApplication", {"ReceiptNo": "X-1", "IdempotencyKey": "k"})
        neither = self._post(server, "CancelApplication", {})
        for answer in (both, neither):
            assert answer.findtext(".//faultcode") == "soap:Client"
