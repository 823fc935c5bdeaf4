"""The medical insurance adapter against its simulator over loopback HTTP: the
conformance suite, the REST simulator's checks, the national envelope's own rules, and
files both ways (materials streamed before the filing that names them, once, and the
certificate's file kept)."""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from adapters.medical_insurance import OPERATIONS, MedicalInsuranceAdapter
from adapters.medical_insurance.adapter import (
    QUERY_INFNO,
    UPLOAD_PATH,
    FilingMaterial,
    QueryInput,
)
from adapters.medical_insurance.received import ReceivedFiles
from adapters.medical_insurance.simulator import certificate_pdf, create_app
from adapters.simulators.base import DepartmentState, SimulatorServer, Verdict
from adapters.testing.dispatches import dispatch_for
from adapters.testing.rest_checks import FILING_KEY, RestSimulatorChecks
from contracts.application import MaterialRef
from contracts.messages import Decided, Failed, ItemDispatch, Rejected
from contracts.samples import SAMPLE_PDF

DEPARTMENT = "medical_insurance"
SERVICE = "resident_medical_insurance_enrolment"


class TestMedicalInsuranceAdapter(RestSimulatorChecks):
    adapter_class = MedicalInsuranceAdapter
    create_simulator = staticmethod(create_app)
    service = SERVICE
    api_paths = frozenset({"/fsi/api/{infno}", UPLOAD_PATH})

    @pytest.fixture
    def received(self, tmp_path: Path) -> ReceivedFiles:
        return ReceivedFiles(tmp_path / "received")

    @pytest.fixture
    def server(self, state: DepartmentState, received: ReceivedFiles) -> Iterator[SimulatorServer]:
        with SimulatorServer(create_app(state, received), state) as server:
            yield server

    def filing_call(self, dispatch: ItemDispatch, key: str) -> tuple[str, dict[str, Any]]:
        adapter = MedicalInsuranceAdapter()
        infno = adapter.services[dispatch.service]
        data = adapter.filing(dispatch, key, [])
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

    def test_materials_are_uploaded_before_the_filing_and_the_certificate_file_is_kept(
        self, server: SimulatorServer, state: DepartmentState, received: ReceivedFiles
    ) -> None:
        outcome, _ = self._run(server)
        assert isinstance(outcome, Decided) and outcome.approved, outcome
        (filing,) = state.filings.values()
        (material,) = filing.payload["materials"]
        assert material["sha256"] == hashlib.sha256(SAMPLE_PDF).hexdigest()
        assert material["size"] == len(SAMPLE_PDF)
        assert received.path(material["sha256"]).read_bytes() == SAMPLE_PDF
        (certificate,) = outcome.certificates
        issued = certificate_pdf(filing)
        assert certificate.file is not None
        assert certificate.file.sha256 == hashlib.sha256(issued).hexdigest()
        assert certificate.file.media_type == "application/pdf"
        assert certificate.file.name == certificate.certificate_name
        assert self.materials.fetch(certificate.file) == issued

    def test_a_material_missing_from_the_store_fails_the_item_before_filing(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        missing = MaterialRef(
            name="户口簿",
            sha256="0" * 64,
            size=10,
            media_type="application/pdf",
            file_name="hukou.pdf",
        )
        dispatch = self._dispatch().model_copy(update={"materials": (missing,)})
        outcome, _ = self._run(server, dispatch)
        assert isinstance(outcome, Failed), outcome
        assert f"MaterialMissing: nothing is stored under {'0' * 64}" in outcome.error
        assert state.requests == 0, "a material that cannot be read must not be retried"

    def test_a_retry_uploads_no_material_twice(
        self, server: SimulatorServer, state: DepartmentState, received: ReceivedFiles
    ) -> None:
        dispatch = self._dispatch()
        first, _ = self._run(server, dispatch)
        again, _ = self._run(server, dispatch, delivery=2)
        assert isinstance(first, Decided) and again == first
        assert received.uploads == 1
        assert len(state.filings) == 1

    def test_a_material_corrupted_in_the_store_fails_mid_upload_and_nothing_is_kept(
        self,
        server: SimulatorServer,
        state: DepartmentState,
        received: ReceivedFiles,
        tmp_path: Path,
    ) -> None:
        (ref,) = self._dispatch().materials
        (stored,) = (tmp_path / "materials").rglob(ref.sha256)
        stored.write_bytes(SAMPLE_PDF.replace(b"Lianban", b"Forged!"))  # same size
        outcome, _ = self._run(server)
        assert isinstance(outcome, Failed) and "MaterialCorrupted" in outcome.error, outcome
        assert list(received.root.iterdir()) == []
        assert state.filings == {}

    def test_the_platform_refuses_bytes_that_do_not_match_their_digest(
        self, server: SimulatorServer, received: ReceivedFiles
    ) -> None:
        answer = httpx.put(f"{server.url}/fsi/files/{'0' * 64}", content=SAMPLE_PDF)
        assert answer.status_code == 422
        assert list(received.root.iterdir()) == []

    def test_the_platform_refuses_a_filing_naming_a_material_it_does_not_hold(
        self, server: SimulatorServer, state: DepartmentState
    ) -> None:
        dispatch = self._dispatch()
        adapter = MedicalInsuranceAdapter()
        infno = adapter.services[dispatch.service]
        unsent = FilingMaterial(
            name="申请表", filename="a.pdf", sha256=hashlib.sha256(SAMPLE_PDF).hexdigest(), size=9
        )
        data = adapter.filing(dispatch, FILING_KEY, [unsent])
        body = adapter.envelope(dispatch, infno, data).model_dump(mode="json")
        answer = httpx.post(
            f"{server.url}/fsi/api/{infno}", json=body, headers={"Idempotency-Key": FILING_KEY}
        ).json()
        assert (answer["infcode"], answer["err_msg"]) == (-1, "材料“申请表”未上传或与其校验值不符")
        assert state.filings == {}
