"""Electronic licences (电子证照) an application cites instead of uploading them, and the
results of earlier decisions it cites to stand for a prerequisite (单独申请某一事项).

A citation names a licence by type and number and says whose it is; the router asks the
certificate library (电子证照库) for it, checks that it belongs to the applicant and is
still valid, and fetches its file by reference into the material store, so departments
receive it as they receive an upload (seeds 001/002: "能够提供或核验电子证照的一律免于提交
实体证照"). `LicenceRecord` is what a library answers about one licence.
"""

from __future__ import annotations

from datetime import date
from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

# The licence types an application may cite: those of the catalog's vocabulary
# (contracts/catalog/data/licence_types.yaml) the certificate library is known to hold.
# The contract checks a citation without a catalog at hand, hence this table;
# tests/test_licences.py keeps it within the vocabulary, names alike.
LICENCE_TYPES: dict[str, str] = {
    "resident_id_card": "居民身份证",
    "household_register": "居民户口簿",
    "birth_medical_certificate": "出生医学证明",
    "marriage_certificate": "结婚证",
    "business_licence": "营业执照",
    "food_business_licence": "食品经营许可证",
    "real_estate_certificate": "不动产权证书",
    "social_security_card": "社会保障卡",
    "vaccination_certificate": "预防接种证",
    "driving_licence": "机动车驾驶证",
    "vehicle_registration_certificate": "机动车登记证书",
}

# The licence a department issues as an item's result, by the item's service: such a
# licence, cited by number, stands for that item when a dependent is applied for alone.
RESULT_LICENCE_TYPES: dict[str, str] = {
    "birth_medical_certificate_issuance": "birth_medical_certificate",
    "vaccination_certificate_issuance": "vaccination_certificate",
    "marriage_registration": "marriage_certificate",
    "enterprise_registration": "business_licence",
    "individual_business_registration": "business_licence",
    "food_business_license": "food_business_licence",
}


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


class LicenceCitation(_Strict):
    """An electronic licence by reference: its type, its number and its holder."""

    type_code: str = Field(description="证照类型, e.g. business_licence")
    number: str = Field(min_length=1, max_length=64, pattern=r"^[^/\\\s]+$", description="证照编号")
    holder_id: str = Field(
        min_length=1,
        max_length=32,
        description="持证主体代码: the holder's ID number, or its unified social credit code",
    )

    @field_validator("type_code")
    @classmethod
    def _known_type(cls, value: str) -> str:
        if value not in LICENCE_TYPES:
            raise PydanticCustomError(
                "licence_type_unknown",
                "unknown licence type {value}; one of {known}",
                {"value": value, "known": ", ".join(LICENCE_TYPES)},
            )
        return value

    @property
    def key(self) -> tuple[str, str]:
        return self.type_code, self.number


class PriorResult(_Strict):
    """The result of an earlier decision, standing for prerequisite `item` of the selected
    bundle type: an approval Lianban recorded (the earlier case number), or the licence the
    department issued (a certificate)."""

    item: str = Field(
        max_length=64,
        pattern=r"^[a-z][a-z0-9_]*$",
        description="The prerequisite item of this bundle type it stands for",
    )
    project_no: str | None = Field(
        default=None,
        pattern=r"^[0-9A-Za-z-]{1,50}$",
        description="办件编号 of the earlier application in which the item was approved",
    )
    certificate: LicenceCitation | None = Field(
        default=None, description="The licence the item's department issued"
    )

    @model_validator(mode="after")
    def _one_source(self) -> PriorResult:
        if (self.project_no is None) == (self.certificate is None):
            raise PydanticCustomError(
                "prior_result_source", "give either project_no or certificate, not both"
            )
        return self


class LicenceStatus(StrEnum):
    VALID = "valid"  # 有效
    REVOKED = "revoked"  # 吊销、注销或作废


class LicenceRecord(BaseModel):
    """What the certificate library holds of one licence (GB/T 36902-style fields)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    type_code: str
    number: str
    name_zh: str = Field(description="证照名称")
    holder_id: str
    holder_name: str
    issuer_name: str
    issue_date: date
    valid_until: date | None = None
    status: LicenceStatus
    media_type: str = Field(description="Of the licence's file (OFD or PDF in practice)")
    file_name: str

    def lapsed(self, today: date) -> bool:
        """Revoked, or past its validity."""
        return self.status is not LicenceStatus.VALID or (
            self.valid_until is not None and self.valid_until < today
        )
