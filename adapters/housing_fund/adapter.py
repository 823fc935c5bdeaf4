"""The housing provident fund (住房公积金) adapter: files an item with the fund centre's
SOAP service, reports its receipt, and polls until the centre has decided.

The service is described by `housing_fund.wsdl`, shipped beside this module.
"""

from __future__ import annotations

from pathlib import Path

from adapters import SoapFilingAdapter

WSDL = Path(__file__).with_name("housing_fund.wsdl")
NAMESPACE = "http://gov.lianban.example/housing-fund/v1"
BINDING = f"{{{NAMESPACE}}}HousingFundServiceSoapBinding"

# Catalog service → housing-fund business code, sent as ServiceCode. The fund centre
# routes its workflow on these codes, so a published code never changes. Prefixes:
# JC 缴存 (deposits), TQ 提取 (withdrawals), DK 个人住房贷款 (loans).
OPERATIONS: dict[str, str] = {
    "personal_housing_fund_account_opening": "JC-GRKH",
    "housing_fund_unit_deposit_registration": "JC-DWDJ",
    "housing_fund_withdrawal_retirement": "TQ-LTX",
    "housing_fund_withdrawal_death": "TQ-SW",
    "housing_fund_loan_second_hand_house": "DK-ESZF",
    "housing_fund_loan_build_or_repair": "DK-JFDX",
}


class HousingFundAdapter(SoapFilingAdapter):
    department = "housing_fund"
    services = OPERATIONS
    wsdl = WSDL
    binding = BINDING
    issuer_name = "住房公积金管理中心"
