"""The police adapter against its simulator: the conformance suite, the SOAP simulator's
own checks, and the mapping of every catalog service to a police business code."""

from __future__ import annotations

from adapters.police import OPERATIONS, PoliceAdapter
from adapters.police.simulator import SERVICE, create_app
from adapters.testing.soap_checks import SoapSimulatorChecks
from contracts.catalog import default_catalog


class TestPoliceAdapter(SoapSimulatorChecks):
    adapter_class = PoliceAdapter
    create_simulator = staticmethod(create_app)
    filing_service = SERVICE
    enterprise_service = "seal_engraving_filing"
    service = "birth_household_registration"


def test_every_police_service_has_its_own_business_code() -> None:
    assert set(OPERATIONS) == default_catalog().services_of("police")
    assert len(set(OPERATIONS.values())) == len(OPERATIONS)
    assert set(SERVICE.certificate_names) <= set(OPERATIONS.values())
