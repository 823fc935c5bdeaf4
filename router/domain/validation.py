"""The one-time notice (一次告知): every problem with an application, found in one pass.

The door's problems come first (router.domain.admission): a document over its limits or
with unclean text is refused on them alone. Contract problems (shape, identity checksums)
come from pydantic; catalog problems (unknown type or item, parallel items chosen apart,
exclusive variants, a missing prerequisite), the selection's missing materials and form
fields (router.domain.checklist) and uploads not yet stored are checked on the raw document
alongside, so the applicant hears about all of them at once, not one per attempt.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection, Iterable
from typing import Any

from pydantic import ValidationError
from pydantic_core import ErrorDetails

from contracts.api import Problem
from contracts.application import Application, MaterialRef
from contracts.catalog import BundleType, Catalog
from router.domain.admission import door_problems
from router.domain.applicant_rules import applicant_problems
from router.domain.checklist import form_problems, missing_materials

AREA_CODE = re.compile(r"^\d{6}$")  # the contract's pattern for area_code (GB/T 2260)

# error type → (Chinese, English) message; {placeholders} come from the error context.
_MESSAGES: dict[str, tuple[str, str]] = {
    "missing": ("缺少必填项", "this field is required"),
    "extra_forbidden": ("不允许的字段", "unknown field"),
    "string_pattern_mismatch": ("格式不正确", "does not have the expected format"),
    "string_too_short": ("内容过短", "too short"),
    "string_too_long": ("内容过长", "too long"),
    "too_short": ("至少需要一项", "must not be empty"),
    "resident_id_length": ("居民身份证号码应为18位", "a resident ID number has 18 characters"),
    "resident_id_format": (
        "居民身份证号码格式不正确（前17位为数字，末位为数字或大写X）",
        "a resident ID number is 17 digits and a digit or capital X",
    ),
    "resident_id_region": ("居民身份证号码的地址码无效", "the region code of the ID is invalid"),
    "resident_id_birth_date": (
        "居民身份证号码中的出生日期无效",
        "the birth date in the ID number is not a real past date",
    ),
    "resident_id_checksum": (
        "居民身份证号码校验码错误，请核对号码",
        "the ID number's check digit is wrong: check the number",
    ),
    "uscc_length": ("统一社会信用代码应为18位", "a credit code has 18 characters"),
    "uscc_charset": (
        "统一社会信用代码含有不允许的字符（不使用I、O、Z、S、V）",
        "the credit code has characters outside its alphabet (no I, O, Z, S, V)",
    ),
    "uscc_registration_authority": (
        "统一社会信用代码的登记管理部门码无效",
        "the credit code's registration authority code is invalid",
    ),
    "uscc_org_type": (
        "统一社会信用代码的机构类别码无效",
        "the credit code's organisation type code is invalid",
    ),
    "uscc_region": ("统一社会信用代码的行政区划码无效", "the credit code's region is invalid"),
    "uscc_checksum": (
        "统一社会信用代码校验码错误，请核对代码",
        "the credit code's check character is wrong: check the code",
    ),
    "media_type_unsupported": (
        "材料文件类型不受支持，请上传PDF、OFD、JPEG、PNG或TIFF",
        "unsupported file type: use PDF, OFD, JPEG, PNG or TIFF",
    ),
    "file_name_reserved": (
        "文件名为系统保留名称（如 ..、CON、NUL），请改名",
        "a reserved file name (such as .., CON or NUL): rename the file",
    ),
    "handover_address_required": (
        "选择邮寄送达的，须填写收件地址（收件人、手机号码、行政区划、详细地址、邮政编码）",
        "a post delivery needs a postal address (recipient, mobile, area code, address, postcode)",
    ),
    "handover_address_unexpected": (
        "仅邮寄送达需填写收件地址",
        "only a post delivery takes a postal address",
    ),
    "area_code_not_a_district": (
        "收件地行政区划代码应为区县级代码：{value}",
        "the area code must name a district: {value}",
    ),
    "items_duplicated": ("事项重复选择：{codes}", "items selected more than once: {codes}"),
}


def find_problems(
    raw: Any,
    catalog: Catalog,
    material_exists: Callable[[str, int], bool],
    citations: Callable[[dict[str, Any]], tuple[Collection[str], Iterable[Problem]]] = (
        lambda raw: (frozenset(), ())
    ),
) -> tuple[Application | None, list[Problem]]:
    """Validate a posted application; return it when valid, else every problem found.
    `citations` checks what it cites (router.domain.citations), past the door only, and
    gives the types of the electronic licences the certificate library verified, each
    standing in for the materials it may."""
    problems = door_problems(raw)
    if problems:
        return None, problems
    application: Application | None = None
    try:
        application = Application.model_validate(raw)
    except ValidationError as error:
        problems.extend(_contract_problem(detail) for detail in error.errors())
    if isinstance(raw, dict):
        verified_licence_types, citation_problems = citations(raw)
        problems.extend(_catalog_problems(raw, catalog, verified_licence_types))
        problems.extend(material_problems(raw.get("materials"), material_exists))
        agent = raw.get("agent")
        if isinstance(agent, dict):
            authorisation = [agent.get("authorisation")]
            problems.extend(
                material_problems(authorisation, material_exists, "/agent/authorisation")
            )
        problems.extend(citation_problems)
    return (application if not problems else None), problems


def _contract_problem(detail: ErrorDetails) -> Problem:
    location = list(detail["loc"])
    # A discriminated union puts its tag (applicant_type) into the path; the applicant
    # does not see it in the document, so leave it out of the pointer.
    if len(location) > 1 and location[0] == "applicant" and str(location[1]).isdigit():
        del location[1]
    context = detail.get("ctx") or {}
    if "field" in context:
        location.append(context["field"])
    template = _MESSAGES.get(detail["type"])
    if template is None:
        # pydantic's own message, already complete: it may hold braces ("Input tag '{}'"),
        # so it is not a template (a 500 found by tests/test_fuzz_intake.py).
        zh, en = f"填写有误：{detail['msg']}", detail["msg"]
    else:
        zh, en = (part.format(**context) if context else part for part in template)
    return Problem(pointer=_pointer(location), code=detail["type"], message_zh=zh, message_en=en)


def _catalog_problems(
    raw: dict[str, Any], catalog: Catalog, verified_licence_types: Collection[str]
) -> Iterable[Problem]:
    """Problems against the catalog of the application's area (district → city →
    province); an area code the contract refuses is checked against the province's."""
    area = raw.get("area_code")
    view = catalog.for_area(area) if isinstance(area, str) and AREA_CODE.match(area) else catalog
    if view is None:
        province = catalog.province.name_zh if catalog.province else ""
        yield Problem(
            pointer="/area_code",
            code="area_outside_catalog",
            message_zh=f"行政区划 {area} 不在本平台（{province}）的一件事目录范围内",
            message_en=f"area {area} lies outside this platform's catalog ({province})",
        )
        return
    code = raw.get("bundle_type")
    if not isinstance(code, str):
        return
    bundle_type = view.bundle_types.get(code)
    if bundle_type is None:
        yield Problem(
            pointer="/bundle_type",
            code="bundle_type_unknown",
            message_zh=f"未知的一件事类型：{code}（{_region_name(view)}目录）",
            message_en=f"unknown bundle type {code!r} (catalog of region {view.region!r})",
        )
        return
    items = raw.get("items")
    if isinstance(items, list) and all(isinstance(item, str) for item in items):
        yield from selection_problems(bundle_type, items, _cited_items(raw.get("prior_results")))
        selected = [code for code in items if code in bundle_type.item_codes]
        uploaded = raw.get("materials")
        if isinstance(uploaded, list):
            yield from missing_materials(
                view,
                bundle_type,
                selected,
                [_material_ref(entry) for entry in uploaded],
                verified_licence_types,
            )
        yield from form_problems(view, bundle_type, selected, raw.get("form", {}))
    yield from applicant_problems(view, bundle_type, raw)


def _material_ref(entry: Any) -> MaterialRef | None:
    """One posted material, or None when malformed (the contract check names why)."""
    try:
        return MaterialRef.model_validate(entry)
    except ValidationError:
        return None


def _cited_items(prior_results: Any) -> frozenset[str]:
    """Items a cited earlier result stands for (verified in router.domain.evidence)."""
    if not isinstance(prior_results, list):
        return frozenset()
    return frozenset(
        entry["item"]
        for entry in prior_results
        if isinstance(entry, dict) and isinstance(entry.get("item"), str)
    )


def _region_name(view: Catalog) -> str:
    region = view.regions.get(view.region) or view.province
    return region.name_zh if region else view.region


def selection_problems(
    bundle_type: BundleType, items: list[str], cited: frozenset[str] = frozenset()
) -> Iterable[Problem]:
    """Problems of a selection against the catalog's rules for its bundle type; a
    prerequisite in `cited` is met by an earlier result instead (单独申请某一事项)."""
    known = bundle_type.item_codes
    for index, code in enumerate(items):
        if code not in known:
            yield Problem(
                pointer=f"/items/{index}",
                code="item_unknown",
                message_zh=f"“{bundle_type.name_zh}”不包含事项：{code}",
                message_en=f"bundle type {bundle_type.code!r} has no item {code!r}",
            )
    chosen = {code for code in items if code in known}
    yield from _group_problems(bundle_type, chosen)
    for index, code in enumerate(items):
        if code not in known:
            continue
        for prerequisite in bundle_type.item(code).prerequisites:
            if not (chosen | cited).intersection(prerequisite.any_of):
                names = "或".join(bundle_type.item(c).name_zh for c in prerequisite.any_of)
                yield Problem(
                    pointer=f"/items/{index}",
                    code="prerequisite_missing",
                    message_zh=f"申请“{bundle_type.item(code).name_zh}”须一并申请前置事项"
                    f"“{names}”，或在prior_results中引用其已办结的结果（原办件编号或电子证照）："
                    f"{prerequisite.reason}",
                    message_en=f"item {code!r} needs one of {list(prerequisite.any_of)} "
                    "selected as well, or its earlier result cited in prior_results "
                    "(item and project_no, or item and certificate)",
                )


def _group_problems(bundle_type: BundleType, chosen: set[str]) -> Iterable[Problem]:
    parallel: dict[str, list[str]] = {}
    exclusive: dict[str, list[str]] = {}
    for item in bundle_type.items:
        if item.parallel_group:
            parallel.setdefault(item.parallel_group, []).append(item.code)
        if item.exclusive_group and item.code in chosen:
            exclusive.setdefault(item.exclusive_group, []).append(item.code)
    for members in parallel.values():
        missing = [code for code in members if code not in chosen]
        if missing and len(missing) < len(members):
            names = "、".join(bundle_type.item(code).name_zh for code in members)
            yield Problem(
                pointer="/items",
                code="parallel_items_apart",
                message_zh=f"依法须并行办理的事项应一并选择：{names}",
                message_en=f"legally parallel items must be chosen together; missing {missing}",
            )
    for members in exclusive.values():
        if len(members) > 1:
            names = "、".join(bundle_type.item(code).name_zh for code in members)
            yield Problem(
                pointer="/items",
                code="exclusive_items_together",
                message_zh=f"以下事项只能选择其一：{names}",
                message_en=f"only one of these variants may be chosen: {members}",
            )


_SHA256 = re.compile(r"[0-9a-f]{64}")


def material_problems(
    materials: Any, material_exists: Callable[[str, int], bool], at: str | None = None
) -> Iterable[Problem]:
    """Materials not uploaded; pointers under /materials, or `at` for a single one."""
    if not isinstance(materials, list):
        return
    for index, material in enumerate(materials):
        if not isinstance(material, dict):
            continue
        digest, size = material.get("sha256"), material.get("size")
        # A malformed digest is the shape check's problem; the store would refuse to look.
        if not (isinstance(digest, str) and _SHA256.fullmatch(digest) and isinstance(size, int)):
            continue
        if not material_exists(digest, size):
            yield Problem(
                pointer=at or f"/materials/{index}",
                code="material_not_uploaded",
                message_zh=f"材料“{material.get('name', '')}”尚未上传或文件不完整",
                message_en="the material was not uploaded (or its size differs); "
                "PUT it to /v1/materials/{sha256} first",
            )


def _pointer(location: list[int | str]) -> str:
    escaped = (str(part).replace("~", "~0").replace("/", "~1") for part in location)
    return "/" + "/".join(escaped) if location else ""
