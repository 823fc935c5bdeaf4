"""The catalog's shape: departments, bundle types (一件事), their items (涉及事项) and the
services (事项) those items file, with each service's promised time limit.

The data lives in YAML beside this module (`data/`); `loader.py` reads it into these
models and checks the references between them.
"""

from __future__ import annotations

from enum import StrEnum

from pydantic import BaseModel, ConfigDict, Field, model_validator

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


class Catalog(_Frozen):
    departments: dict[str, Department]
    bundle_types: dict[str, BundleType]
    services: dict[str, Service]
    applicant_rules: dict[Category, ApplicantRule] = Field(
        default_factory=dict, description="By bundle category: who may apply"
    )

    def service_of(self, item: Item) -> Service:
        return self.services[item.service]

    def services_of(self, department: str) -> frozenset[str]:
        return frozenset(
            item.service
            for bundle_type in self.bundle_types.values()
            for item in bundle_type.items
            if item.department == department
        )

    def serving_departments(self) -> list[str]:
        """Departments that handle at least one catalog item, in catalog order."""
        return [code for code in self.departments if self.services_of(code)]
