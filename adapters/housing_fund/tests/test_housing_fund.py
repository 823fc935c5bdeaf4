"""The housing fund adapter against its simulator: the conformance suite, the SOAP
simulator's own checks, and the mapping of every catalog service to a fund business code."""

from __future__ import annotations

from adapters.housing_fund import OPERATIONS, HousingFundAdapter
from adapters.housing_fund.simulator import SERVICE, create_app
from adapters.testing.soap_checks import SoapSimulatorChecks
from contracts.catalog import default_catalog


class TestHousingFundAdapter(SoapSimulatorChecks):
    adapter_class = HousingFundAdapter
    create_simulator = staticmethod(create_app)
    filing_service = SERVICE
    enterprise_service = "housing_fund_unit_deposit_registration"
    service = "housing_fund_loan_second_hand_house"


def test_every_housing_fund_service_has_its_own_business_code() -> None:
    assert set(OPERATIONS) == default_catalog().services_of("housing_fund")
    assert len(set(OPERATIONS.values())) == len(OPERATIONS)
    assert set(SERVICE.certificate_names) == set(OPERATIONS.values())
