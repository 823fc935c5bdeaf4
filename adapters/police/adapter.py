"""The police (公安) adapter: files an item with the police SOAP service, reports its
receipt, and polls until the department has decided.

The service is described by `police.wsdl`, shipped beside this module.
"""

from __future__ import annotations

from pathlib import Path

from adapters import SoapFilingAdapter

WSDL = Path(__file__).with_name("police.wsdl")
NAMESPACE = "http://gov.lianban.example/police/v1"
BINDING = f"{{{NAMESPACE}}}PoliceServiceSoapBinding"

# Catalog service → police business code, sent as ServiceCode. The department routes its
# workflow on these codes, so a published code never changes. Prefixes: HJ 户籍,
# SFZ 居民身份证, JZZ 居住证, SW 死亡证明, JJ 交通管理, ZA 治安管理, WA 网络安全.
OPERATIONS: dict[str, str] = {
    "birth_household_registration": "HJ-CSDJ",
    "adoption_household_registration": "HJ-SYRH",
    "deceased_household_cancellation": "HJ-SWZX",
    "ethnicity_household_record_change": "HJ-MZBG",
    "graduate_household_move_in": "HJ-BYQR",
    "household_marital_status_change": "HJ-HYBG",
    "household_migration_approval": "HJ-QYSP",
    "household_registration_query": "HJ-XXCX",
    "veteran_household_restoration": "HJ-TYHF",
    "id_card_issuance": "SFZ-HF",
    "id_card_renewal": "SFZ-HL",
    "residence_permit_query": "JZZ-XXCX",
    "death_certificate_abnormal": "SW-FZCSW",
    "driving_licence_cancellation": "JJ-JSZZX",
    "seal_engraving_filing": "ZA-GZBA",
    "hotel_special_industry_license": "ZA-LGXK",
    "internet_cafe_network_security_approval": "WA-SWCSSP",
    # seed 004's 卫滨区 list
    "household_certificate_query": "HJ-HJZM",
    "household_split_on_marriage": "HJ-FHLH",
    "seal_filing_cancellation": "ZA-GZZX",
    "security_service_cross_province_filing": "ZA-BAKS",
    "motor_vehicle_information_query": "JJ-JDCCX",
    "motor_vehicle_temporary_pass": "JJ-LSTX",
}


class PoliceAdapter(SoapFilingAdapter):
    department = "police"
    services = OPERATIONS
    wsdl = WSDL
    binding = BINDING
    issuer_name = "公安机关"
