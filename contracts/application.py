"""The unified application (一表申请) the platform posts for one bundle (一件事).

Identity numbers are checked here, by their checksums, so every consumer of the model
can trust them. Materials travel by reference (claim check): the router stores the
bytes, messages carry only the SHA-256, size and type.
"""

from __future__ import annotations

import re
from collections import Counter
from enum import IntEnum, StrEnum
from typing import Annotated, Any, Literal

from pydantic import AnyHttpUrl, BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic_core import PydanticCustomError

from contracts import SCHEMA_VERSION, SchemaVersion
from contracts.catalog.model import CODE_PATTERN, MEDIA_TYPES
from contracts.identity import resident_id_problem, uscc_problem
from contracts.licences import LicenceCitation, PriorResult
from contracts.regions import PROVINCES

MAX_MATERIAL_BYTES = 50 * 1024 * 1024
# The largest request body (an application, a correction) the API reads unless
# LIANBAN_MAX_BODY_BYTES says otherwise; materials stream under MAX_MATERIAL_BYTES instead.
DEFAULT_MAX_BODY_BYTES = 1024 * 1024
MATERIAL_MEDIA_TYPES = frozenset(MEDIA_TYPES)


class IdType(StrEnum):
    """证件类型 (GA/T-style codes)."""

    RESIDENT_ID = "111"  # 居民身份证
    HOUSEHOLD_BOOKLET = "113"  # 户口簿
    PASSPORT = "414"  # 普通护照
    HK_MACAO_PERMIT = "513"  # 港澳居民来往内地通行证
    OTHER = "990"


class ApplicantType(IntEnum):
    """申请人类型."""

    NATURAL_PERSON = 1
    ENTERPRISE = 2
    INSTITUTION = 3
    SOCIAL_ORGANISATION = 4
    UNINCORPORATED_ENTERPRISE = 5
    GOVERNMENT_AGENCY = 6
    OTHER_ORGANISATION = 9


class Delivery(StrEnum):
    """When results are collected (领取时机): all at once or item by item. How they
    reach the applicant (窗口, 电子, 邮寄) is the separate `HandoverMethod`."""

    UNIFIED = "unified"  # 统一领取: one reply when every item is final
    PER_ITEM = "per_item"  # 分别领取: a notice as each item becomes final, then the reply


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, str_strip_whitespace=True)


Mobile = Annotated[str, Field(pattern=r"^1[3-9]\d{9}$", description="Mainland mobile number")]


class NaturalPerson(_Strict):
    # No default: it is the union's discriminator, so every applicant must state it.
    applicant_type: Literal[ApplicantType.NATURAL_PERSON]
    name: str = Field(min_length=1, max_length=50)
    id_type: IdType = IdType.RESIDENT_ID
    id_number: str = Field(min_length=1, max_length=32)
    mobile: Mobile | None = None

    @model_validator(mode="after")
    def _check_resident_id(self) -> NaturalPerson:
        _check_resident_id(self.id_type, self.id_number)
        return self


def _check_resident_id(id_type: IdType, id_number: str) -> None:
    if id_type is IdType.RESIDENT_ID:
        problem = resident_id_problem(id_number)
        if problem is not None:
            raise PydanticCustomError(
                f"resident_id_{problem}",
                "resident ID number is invalid ({problem})",
                {"problem": problem, "field": "id_number"},
            )


class LegalEntity(_Strict):
    applicant_type: Literal[
        ApplicantType.ENTERPRISE,
        ApplicantType.INSTITUTION,
        ApplicantType.SOCIAL_ORGANISATION,
        ApplicantType.UNINCORPORATED_ENTERPRISE,
        ApplicantType.GOVERNMENT_AGENCY,
        ApplicantType.OTHER_ORGANISATION,
    ]
    name: str = Field(min_length=1, max_length=200)
    uscc: str = Field(description="统一社会信用代码 (GB 32100)")
    legal_representative: str = Field(min_length=1, max_length=50)
    mobile: Mobile | None = None

    @field_validator("uscc")
    @classmethod
    def _check_uscc(cls, value: str) -> str:
        problem = uscc_problem(value)
        if problem is not None:
            raise PydanticCustomError(
                f"uscc_{problem}",
                "unified social credit code is invalid ({problem})",
                {"problem": problem},
            )
        return value


Applicant = Annotated[NaturalPerson | LegalEntity, Field(discriminator="applicant_type")]


# Names a file system gives a meaning of its own: the directory links, and the Windows
# devices (with any extension) a department's front-end machine may store materials on.
_RESERVED_FILE_NAMES = re.compile(
    r"\.{1,2}|(?:CON|PRN|AUX|NUL|COM[0-9¹²³]|LPT[0-9¹²³])(?:\..*)?|.*[. ]", re.IGNORECASE
)


class MaterialRef(_Strict):
    """An electronic material (电子材料) by reference; the bytes are uploaded separately."""

    name: str = Field(min_length=1, max_length=200, description="材料名称")
    material: str | None = Field(
        default=None,
        pattern=CODE_PATTERN,
        description="The catalog material (申请材料) it is, e.g. birth_medical_certificate: "
        "what the one-time notice counts it as (see GET /v1/catalog/bundle-types/{code}/"
        "checklist); None for a supporting document the catalog does not ask for",
    )
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$")
    size: int = Field(gt=0, le=MAX_MATERIAL_BYTES)
    media_type: str
    file_name: str = Field(min_length=1, max_length=255, pattern=r"^[^/\\\x00]+$")

    @field_validator("file_name")
    @classmethod
    def _check_file_name(cls, value: str) -> str:
        if _RESERVED_FILE_NAMES.fullmatch(value):
            raise PydanticCustomError(
                "file_name_reserved", "{value} is a reserved file name", {"value": value}
            )
        return value

    @field_validator("media_type")
    @classmethod
    def _check_media_type(cls, value: str) -> str:
        if value not in MATERIAL_MEDIA_TYPES:
            raise PydanticCustomError(
                "media_type_unsupported",
                "media type {value} is not accepted; use one of {allowed}",
                {"value": value, "allowed": ", ".join(sorted(MATERIAL_MEDIA_TYPES))},
            )
        return value


class HandoverMethod(StrEnum):
    """送达方式: how the results reach the applicant (seeds 001/002 "窗口发放、物流快递送达";
    004 第十七条)."""

    WINDOW = "window"  # 窗口领取: collected in person at the issuing window (出证窗口)
    ELECTRONIC = "electronic"  # 电子送达: downloaded from the platform (一端出件)
    POST = "post"  # 邮寄送达: sent by courier to a postal address, once every item is final


class PostalAddress(_Strict):
    """Where a post delivery (邮寄送达) goes; the courier resolves city and district names
    from `area_code`."""

    recipient: str = Field(min_length=1, max_length=50, description="收件人")
    mobile: Mobile = Field(description="收件人手机号码")
    area_code: str = Field(
        pattern=r"^\d{6}$", description="收件地行政区划 (GB/T 2260): province, city, district"
    )
    address_line: str = Field(min_length=4, max_length=200, description="详细地址 (street, no.)")
    postcode: str = Field(pattern=r"^\d{6}$", description="邮政编码")

    @field_validator("area_code")
    @classmethod
    def _known_province(cls, value: str) -> str:
        if value[:2] not in PROVINCES or value.endswith("0000"):
            raise PydanticCustomError(
                "area_code_not_a_district",
                "{value} is not a district-level division code",
                {"value": value},
            )
        return value


class Handover(_Strict):
    """送达方式 and, for post, the address: how the results reach the applicant."""

    method: HandoverMethod = HandoverMethod.WINDOW
    address: PostalAddress | None = None

    @model_validator(mode="after")
    def _address_for_post_only(self) -> Handover:
        if self.method is HandoverMethod.POST and self.address is None:
            raise PydanticCustomError(
                "handover_address_required",
                "a post delivery needs a postal address",
                {"field": "address"},
            )
        if self.method is not HandoverMethod.POST and self.address is not None:
            raise PydanticCustomError(
                "handover_address_unexpected",
                "only a post delivery takes a postal address",
                {"field": "address"},
            )
        return self


class AgentRelation(StrEnum):
    """How an agent (代办人) stands to the applicant."""

    FAMILY = "family"  # 近亲属
    EMPLOYEE = "employee"  # 单位经办人
    ASSISTANT = "assistant"  # 帮办代办员 (seeds 003, 004: free 帮代办 service)
    LAWYER = "lawyer"  # 律师等受托人
    OTHER = "other"


class Agent(_Strict):
    """帮办代办: a person who applies on the applicant's behalf, with the applicant's
    authorisation (授权委托书) among the uploaded materials."""

    name: str = Field(min_length=1, max_length=50)
    id_type: IdType = IdType.RESIDENT_ID
    id_number: str = Field(min_length=1, max_length=32)
    relation: AgentRelation
    mobile: Mobile | None = None
    authorisation: MaterialRef = Field(description="授权委托书, uploaded like any material")

    @model_validator(mode="after")
    def _check_resident_id(self) -> Agent:
        _check_resident_id(self.id_type, self.id_number)
        return self


class Application(_Strict):
    """What the unified acceptance system posts to `POST /v1/bundles`."""

    schema_version: SchemaVersion = SCHEMA_VERSION
    project_no: str = Field(
        pattern=r"^[0-9A-Za-z-]{1,50}$",
        description="办件编号: the platform's case number, also the Idempotency-Key",
    )
    bundle_type: str = Field(description="Catalog code of the 一件事, e.g. newborn")
    items: list[str] = Field(min_length=1, description="Selected item codes of the bundle type")
    applicant: Applicant
    area_code: str = Field(pattern=r"^\d{6}$", description="行政区划 (GB/T 2260)")
    form: dict[str, Any] = Field(default_factory=dict, description="The one merged form (一表)")
    materials: list[MaterialRef] = Field(default_factory=list)
    licences: list[LicenceCitation] = Field(
        default_factory=list,
        max_length=32,
        description="电子证照 cited instead of uploaded: verified and fetched at intake",
    )
    prior_results: list[PriorResult] = Field(
        default_factory=list,
        max_length=16,
        description="Earlier results standing for prerequisites not selected (单独申请)",
    )
    agent: Agent | None = Field(default=None, description="帮办代办: who applies for the applicant")
    delivery: Delivery = Delivery.UNIFIED
    handover: Handover = Field(
        default_factory=Handover,
        description="送达方式: window (窗口领取), electronic (电子送达) or post (邮寄送达) with "
        "an address; not `delivery`, which says when results are collected",
    )
    callback_url: AnyHttpUrl | None = None

    @field_validator("items")
    @classmethod
    def _unique_items(cls, value: list[str]) -> list[str]:
        duplicates = sorted(code for code, times in Counter(value).items() if times > 1)
        if duplicates:
            raise PydanticCustomError(
                "items_duplicated", "items listed more than once: {codes}", {"codes": duplicates}
            )
        return value
