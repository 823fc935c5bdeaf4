"""The catalog's shape: departments, bundle types (一件事), their items (涉及事项) and the
services (事项) those items file, with each service's promised time limit.

Departments and services are the province's (seed 004 第九条: the items "应与河南省政务服务
事项基本目录保持同源"); bundle types are regional: the provincial list, and a city's or
district's overlay that adds its own and replaces the provincial ones where its list
differs (`Region`). A `Catalog` is one region's view of one published version: intake
picks it by the application's area code (`for_area`), and a bundle finishes under the
view it was accepted under (`version`, `region`).

The data lives in YAML beside this module (`data/`); `loader.py` reads it into these
models and checks the references between them.
"""

from __future__ import annotations

import re
from datetime import date
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, model_validator

CODE_PATTERN = r"^[a-z][a-z0-9_]*$"


class Level(StrEnum):
    """办理层级."""

    PROVINCE = "province"  # 省级
    CITY = "city"  # 市级
    COUNTY = "county"  # 县级
    TOWNSHIP = "township"  # 乡级


class Category(StrEnum):
    PERSONAL = "personal"  # 个人
    ENTERPRISE = "enterprise"  # 企业
    OPERATING = "operating"  # 企业准营: opening a business that already has its licence


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Department(_Frozen):
    """A department (联办部门) or public utility that handles items."""

    code: str = Field(pattern=CODE_PATTERN)
    name_zh: str


class Prerequisite(_Frozen):
    """An edge of the item DAG: this item is decided only after one of `any_of` is approved.

    `any_of` lists alternatives (mutually exclusive variants of the same step); the
    dependent waits for whichever of them the applicant selected.
    """

    any_of: tuple[str, ...] = Field(min_length=1)
    reason: str = Field(min_length=1, description="Why the dependency exists, in Chinese.")


class Source(_Frozen):
    """Where a bundle type is listed: which seed list and its sequence number there."""

    list: str = Field(description="e.g. henan-2023-enterprise, zhengzhou-2023-personal")
    number: int = Field(ge=1)


class Item(_Frozen):
    """One 涉及事项 of a bundle type."""

    code: str = Field(pattern=CODE_PATTERN, description="Unique within its bundle type.")
    service: str = Field(
        pattern=CODE_PATTERN,
        description="The department's service (事项) code, shared by every bundle that uses it; "
        "adapters declare the services they handle.",
    )
    name_zh: str
    department: str
    levels: tuple[Level, ...] = Field(min_length=1)
    prerequisites: tuple[Prerequisite, ...] = ()
    pre_review: bool = Field(
        default=False,
        description="May be accepted and pre-reviewed before its prerequisites are decided "
        "(容缺预审).",
    )
    parallel_group: str | None = Field(
        default=None, description="Items sharing it must be chosen together (并行办理)."
    )
    exclusive_group: str | None = Field(
        default=None, description="At most one item sharing it may be chosen (variants)."
    )
    note: str | None = None
    form_fields: tuple[str, ...] = Field(
        default=(),
        description="The form (一表) fields its service's department receives: a dispatch "
        "carries only these. Filled by the loader from data/forms.yaml.",
    )


class HandlingClass(StrEnum):
    """How a service is decided (seed 003's 办件分类)."""

    ON_THE_SPOT = "on_the_spot"  # 即办件: decided at the window the day it is accepted
    PROMISED = "promised"  # 承诺件: decided within the promised number of working days


MEDIA_TYPES = ("application/pdf", "application/ofd", "image/jpeg", "image/png", "image/tiff")
"""Every file type an electronic material may have (PDF, OFD, JPEG, PNG, TIFF)."""


class LicenceType(_Frozen):
    """A kind of electronic licence (电子证照) a department issues, e.g. 居民身份证: the
    vocabulary an application cites a licence by, and what a material names as able to
    stand in for it (免提交)."""

    code: str = Field(pattern=CODE_PATTERN)
    name_zh: str
    issuing_department: str = Field(description="Department code of the issuer (发证部门)")


class Material(_Frozen):
    """A document (申请材料) of the catalog's one list: asked once per bundle however many
    items need it (一套材料)."""

    code: str = Field(pattern=CODE_PATTERN)
    name_zh: str
    media_types: tuple[str, ...] = Field(
        default=MEDIA_TYPES, min_length=1, description="File types accepted for it"
    )
    licence_types: tuple[str, ...] = Field(
        default=(),
        description="Electronic licence types that stand in for it: a verified licence of "
        "one of them means it need not be uploaded (免于提交)",
    )

    @model_validator(mode="after")
    def _known_media_types(self) -> Material:
        unknown = sorted(set(self.media_types) - set(MEDIA_TYPES))
        if unknown:
            raise ValueError(f"media type(s) {unknown} are not among {list(MEDIA_TYPES)}")
        return self


class MaterialRequirement(_Frozen):
    """One material a service asks for."""

    material: str = Field(pattern=CODE_PATTERN, description="Code of a catalog Material")
    required: bool = True
    basis: str | None = Field(
        default=None, description="The legal basis that asks for it, where one is known"
    )


class FieldType(StrEnum):
    STRING = "string"
    DATE = "date"
    INTEGER = "integer"
    BOOLEAN = "boolean"


class FormField(_Frozen):
    """A field of the one form (一表): defined once, shared by every service that needs it."""

    code: str = Field(pattern=CODE_PATTERN)
    name_zh: str
    type: FieldType = FieldType.STRING
    required: bool = True
    enum: tuple[str, ...] = ()
    pattern: str | None = None
    max_length: int | None = Field(default=None, ge=1)
    example: str | int | bool = Field(description="A valid value (samples and the schema)")

    @model_validator(mode="after")
    def _example_fits(self) -> FormField:
        if self.value_problem(self.example) is not None:
            raise ValueError(f"example {self.example!r} breaks the field's own rules")
        return self

    def value_problem(self, value: Any) -> tuple[str, str, str] | None:
        """Why `value` does not fit: (code, Chinese, English), or None when it does."""
        expected = {FieldType.INTEGER: int, FieldType.BOOLEAN: bool}.get(self.type, str)
        if type(value) is not expected or (self.type is FieldType.DATE and not _is_date(value)):
            return ("form_field_type", *_TYPE_NAMES[self.type])  # exact: bool is an int
        if not isinstance(value, str):
            return None
        if self.enum and value not in self.enum:
            allowed = "、".join(self.enum)
            return ("form_field_invalid", f"应为以下之一：{allowed}", f"must be one of {allowed}")
        if self.pattern is not None and re.fullmatch(self.pattern, value) is None:
            return ("form_field_invalid", "格式不正确", f"does not match {self.pattern}")
        if self.max_length is not None and len(value) > self.max_length:
            return (
                "form_field_invalid",
                f"超过{self.max_length}个字",
                f"is longer than {self.max_length} characters",
            )
        return None


_TYPE_NAMES = {
    FieldType.STRING: ("应为文本", "must be a string"),
    FieldType.DATE: ("应为日期（YYYY-MM-DD）", "must be a date (YYYY-MM-DD)"),
    FieldType.INTEGER: ("应为整数", "must be an integer"),
    FieldType.BOOLEAN: ("应为是或否（true/false）", "must be true or false"),
}
_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


def _is_date(value: Any) -> bool:
    if not isinstance(value, str) or _DATE.fullmatch(value) is None:
        return False
    try:
        date.fromisoformat(value)
    except ValueError:
        return False
    return True


class Service(_Frozen):
    """A department's service (事项) and its promised time limit, shared by every item that
    files it (data/time_limits.yaml)."""

    code: str = Field(pattern=CODE_PATTERN)
    handling_class: HandlingClass
    promise_days: int = Field(
        ge=0,
        description="承诺办结时限 in working days counted from 受理; 0 for 即办件 (decided by the "
        "end of the 受理 working day).",
    )
    extension_days: int = Field(
        ge=0, description="Working days one approved 延期 may add (行政许可法 第四十二条: 10)."
    )
    promise_source: str = Field(
        min_length=1,
        description="Where the numbers come from: a seed's wording, a public "
        "办事指南, or the statutory default.",
    )
    materials: tuple[MaterialRequirement, ...] = Field(
        default=(), description="Its materials list (data/materials.yaml)"
    )
    materials_source: str | None = Field(
        default=None, description="Where the materials list comes from"
    )
    produces: tuple[str, ...] = Field(
        default=(),
        description="Materials its decision issues (e.g. 出生医学证明): an item waiting for "
        "it is not asked for them",
    )

    @model_validator(mode="after")
    def _class_matches_days(self) -> Service:
        on_the_spot = self.handling_class is HandlingClass.ON_THE_SPOT
        if on_the_spot != (self.promise_days == 0):
            raise ValueError("a 即办件 promises 0 working days and a 承诺件 at least 1")
        if on_the_spot and self.extension_days:
            raise ValueError("a 即办件 is decided on the spot and cannot be extended")
        return self


class BundleType(_Frozen):
    """One 一件事 of the catalog."""

    code: str = Field(pattern=CODE_PATTERN)
    name_zh: str
    category: Category
    lead_department: str
    sources: tuple[Source, ...] = Field(min_length=1)
    items: tuple[Item, ...] = Field(min_length=1)

    def item(self, code: str) -> Item:
        for item in self.items:
            if item.code == code:
                return item
        raise KeyError(code)

    @property
    def item_codes(self) -> frozenset[str]:
        return frozenset(item.code for item in self.items)


class ApplicantRule(_Frozen):
    """Who may apply for the bundle types of a category (data/applicant_rules.yaml)."""

    applicant_types: tuple[int, ...] = Field(
        min_length=1, description="申请人类型 codes that may apply (contracts.application)"
    )
    registration_authorities: tuple[str, ...] = Field(
        default=(),
        description="First character of the applicant's credit code (GB 32100 登记管理部门): "
        "9 is market regulation, which issues business licences; empty: any",
    )
    licence: str | None = Field(
        default=None, description="Licence type the applicant must hold, verified at intake"
    )
    waived_by_services: tuple[str, ...] = Field(
        default=(),
        description="A selected item of one of these services (企业开办 in the same "
        "application) stands for the licence",
    )
    basis: str = Field(min_length=1, description="The seed's wording, in Chinese")
    basis_en: str = Field(min_length=1)


AREA_PATTERN = r"^\d{2}(\d{2}){0,2}$"
PROVINCIAL_REGION = "henan"  # the provincial list's region code


class Region(_Frozen):
    """A region whose list the seeds give (data/regions.yaml): the province, or a city or
    district overlay with the bundle types it adds or replaces (data/regions/<code>/)."""

    code: str = Field(pattern=CODE_PATTERN)
    name_zh: str
    area: str = Field(
        pattern=AREA_PATTERN,
        description="GB/T 2260 prefix it covers: 2 digits a province, 4 a city, 6 a district.",
    )
    sources: tuple[str, ...] = Field(min_length=1, description="The seed lists it comes from.")
    bundle_types: dict[str, BundleType] = Field(
        default_factory=dict,
        description="An overlay's own bundle types and its replacements of provincial ones.",
    )
    overrides: tuple[str, ...] = Field(
        default=(), description="Provincial bundle types this overlay replaces."
    )

    def covers(self, area_code: str) -> bool:
        return area_code.startswith(self.area)


class Catalog(_Frozen):
    departments: dict[str, Department]
    bundle_types: dict[str, BundleType] = Field(
        description="The bundle types of this view's region (the province's, or the province's "
        "with a region's additions and replacements)."
    )
    services: dict[str, Service]
    licence_types: dict[str, LicenceType] = {}
    materials: dict[str, Material] = {}
    form_fields: dict[str, FormField] = {}
    applicant_rules: dict[Category, ApplicantRule] = Field(
        default_factory=dict, description="By bundle category: who may apply"
    )
    version: str = Field(
        default="builtin",
        description="The published catalog version: a bundle finishes under the version it "
        "was accepted under.",
    )
    region: str = Field(default=PROVINCIAL_REGION, description="The region this view is of.")
    province: Region | None = None
    regions: dict[str, Region] = Field(
        default_factory=dict, description="City and district overlays, by code."
    )
    # A regional view's provincial list, which its `bundle_types` replaced in part.
    _provincial: dict[str, BundleType] | None = PrivateAttr(default=None)

    def for_area(self, area_code: str) -> Catalog | None:
        """The view for an application from `area_code`: its district's, else its city's,
        else the province's; None when the area lies outside the province."""
        if self.province is not None and not self.province.covers(area_code):
            return None
        covering = [region for region in self.regions.values() if region.covers(area_code)]
        if not covering:
            return self.for_region(PROVINCIAL_REGION)
        return self.for_region(max(covering, key=lambda region: len(region.area)).code)

    def for_region(self, code: str) -> Catalog:
        """The view of region `code` (PROVINCIAL_REGION for the provincial list alone); KeyError for
        a region this version does not have."""
        if code == self.region:
            return self
        provincial = self._provincial if self._provincial is not None else self.bundle_types
        update: dict[str, object] = {"region": code, "bundle_types": provincial}
        if code != PROVINCIAL_REGION:
            update["bundle_types"] = provincial | self.regions[code].bundle_types
        view = self.model_copy(update=update)
        view._provincial = provincial
        return view

    def service_of(self, item: Item) -> Service:
        return self.services[item.service]

    def every_bundle_type(self) -> list[BundleType]:
        """Every region's bundle types: the province's and each overlay's own."""
        provincial = self._provincial if self._provincial is not None else self.bundle_types
        return [
            *provincial.values(),
            *(bt for region in self.regions.values() for bt in region.bundle_types.values()),
        ]

    def bundle_type_names(self) -> dict[str, str]:
        """Every region's bundle types by code, with their Chinese names."""
        return {bundle_type.code: bundle_type.name_zh for bundle_type in self.every_bundle_type()}

    def services_of(self, department: str) -> frozenset[str]:
        """The services `department` handles in any region: what its adapter declares."""
        return frozenset(
            item.service
            for bundle_type in self.every_bundle_type()
            for item in bundle_type.items
            if item.department == department
        )

    def serving_departments(self) -> list[str]:
        """Departments that handle at least one catalog item, in catalog order."""
        return [code for code in self.departments if self.services_of(code)]
