"""Reads the catalog data (`data/`) and checks what the models alone cannot.

Every problem names its file and entry: unknown departments, dangling prerequisites,
cycles, a service claimed by two departments, groups that cannot be satisfied, a service
without a time limit or a time limit without a service, a key listed twice, a service
without a materials list, an unknown material, licence type or form field.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import ValidationError

from contracts.catalog.model import (
    PROVINCIAL_REGION,
    ApplicantRule,
    BundleType,
    Catalog,
    Category,
    Department,
    FormField,
    Item,
    LicenceType,
    Material,
    MaterialRequirement,
    Region,
    Service,
)
from contracts.errors import CatalogError

DATA_DIR = Path(__file__).parent / "data"
_M = TypeVar("_M", Department, BundleType, Service, LicenceType, Material, FormField, Region)


def load_catalog(data_dir: Path = DATA_DIR, *, version: str | None = None) -> Catalog:
    """Load and check the catalog under `data_dir` (departments.yaml, bundles/*.yaml,
    time_limits.yaml, regions.yaml with each overlay's regions/<code>/ directory and, where
    present, forms.yaml, licence_types.yaml, materials.yaml and applicant_rules.yaml).

    `version` names it (a published version's directory name); by default it is named
    after a digest of its files, so two different data sets never share a name."""
    departments = _load_departments(data_dir / "departments.yaml")
    provincial = _load_bundle_types(data_dir / "bundles", departments)
    if not provincial:
        raise CatalogError(f"{data_dir / 'bundles'}: no bundle types found")
    province, overlays = _load_regions(data_dir / "regions.yaml")
    regions = {
        overlay.code: _load_overlay(
            overlay, data_dir / "regions" / overlay.code, provincial, departments
        )
        for overlay in overlays
    }
    views = {PROVINCIAL_REGION: provincial} | {
        code: provincial | region.bundle_types for code, region in regions.items()
    }
    for code, bundle_types in views.items():
        _check_services(code, bundle_types)
    every = [
        *provincial.values(),
        *(bt for r in regions.values() for bt in r.bundle_types.values()),
    ]
    services = _load_time_limits(
        data_dir / "time_limits.yaml", {item.service for bt in every for item in bt.items}
    )
    licence_types = _load_licence_types(data_dir / "licence_types.yaml", departments)
    materials_path = data_dir / "materials.yaml"
    materials: dict[str, Material] = {}
    if materials_path.exists():
        materials, services = _load_materials(materials_path, licence_types, services)
    form_fields, fields = _form_fields(data_dir / "forms.yaml", every)

    def with_fields(bundle_types: Mapping[str, BundleType]) -> dict[str, BundleType]:
        return {
            code: bundle_type.model_copy(
                update={
                    "items": tuple(
                        item.model_copy(update={"form_fields": fields(item.service)})
                        for item in bundle_type.items
                    )
                }
            )
            for code, bundle_type in bundle_types.items()
        }

    return Catalog(
        departments=departments,
        bundle_types=with_fields(provincial),
        services=services,
        licence_types=licence_types,
        materials=materials,
        form_fields=form_fields,
        applicant_rules=_applicant_rules(data_dir / "applicant_rules.yaml"),
        version=version or _digest(data_dir),
        province=province,
        regions={
            code: region.model_copy(update={"bundle_types": with_fields(region.bundle_types)})
            for code, region in regions.items()
        },
    )


def _load_bundle_types(
    directory: Path, departments: Mapping[str, Department]
) -> dict[str, BundleType]:
    bundle_types: dict[str, BundleType] = {}
    origin: dict[str, Path] = {}
    for path in sorted(directory.glob("*.yaml")):
        bundle_type = _parse(BundleType, _read_yaml(path), path)
        if bundle_type.code in bundle_types:
            raise CatalogError(
                f"{path.name}: bundle type {bundle_type.code!r} is already defined in "
                f"{origin[bundle_type.code].name}"
            )
        _check_bundle_type(bundle_type, departments, path)
        bundle_types[bundle_type.code] = bundle_type
        origin[bundle_type.code] = path
    return bundle_types


def _load_regions(path: Path) -> tuple[Region | None, list[Region]]:
    """regions.yaml: the province and its overlays. Without the file, one provincial list."""
    if not path.exists():
        return None, []
    raw = _read_yaml(path)
    if not isinstance(raw, dict) or set(raw) != {"province", "regions"}:
        raise CatalogError(f"{path.name}: expected exactly `province` and `regions`")
    province = _parse(Region, raw["province"], path)
    if province.code != PROVINCIAL_REGION:
        raise CatalogError(f"{path.name}: the province's code must be {PROVINCIAL_REGION!r}")
    overlays = [_parse(Region, entry, path) for entry in raw["regions"] or ()]
    codes = [province.code, *(overlay.code for overlay in overlays)]
    for overlay in overlays:
        if codes.count(overlay.code) > 1:
            raise CatalogError(f"{path.name}: region {overlay.code!r} is listed twice")
        if not province.covers(overlay.area) or overlay.area == province.area:
            raise CatalogError(
                f"{path.name}: region {overlay.code!r} (area {overlay.area}) is not a city or "
                f"district of {province.name_zh} ({province.area})"
            )
    return province, overlays


def _load_overlay(
    overlay: Region,
    directory: Path,
    provincial: Mapping[str, BundleType],
    departments: Mapping[str, Department],
) -> Region:
    """An overlay's `bundles/` (new bundle types) and `overrides/` (replacements of
    provincial ones): a new type may not reuse a provincial code, nor a replacement invent
    one, so a region's difference from the province is always said on purpose."""
    added = _load_bundle_types(directory / "bundles", departments)
    replaced = _load_bundle_types(directory / "overrides", departments)
    where = f"regions/{overlay.code}"
    if clash := sorted(added.keys() & provincial.keys()):
        raise CatalogError(
            f"{where}/bundles: {clash} are provincial bundle types; to replace one for "
            f"{overlay.name_zh}, put it in {where}/overrides"
        )
    if unknown := sorted(replaced.keys() - provincial.keys()):
        raise CatalogError(
            f"{where}/overrides: {unknown} are not provincial bundle types; a bundle type of "
            f"{overlay.name_zh} alone belongs in {where}/bundles"
        )
    if both := sorted(added.keys() & replaced.keys()):
        raise CatalogError(f"{where}: {both} are both in bundles/ and overrides/")
    return overlay.model_copy(
        update={"bundle_types": added | replaced, "overrides": tuple(sorted(replaced))}
    )


def _digest(data_dir: Path) -> str:
    """`builtin-` and the first 12 hex digits of SHA-256 over every data file."""
    digest = hashlib.sha256()
    for path in sorted(data_dir.rglob("*.yaml")):
        digest.update(path.relative_to(data_dir).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return f"builtin-{digest.hexdigest()[:12]}"


def _applicant_rules(path: Path) -> dict[Category, ApplicantRule]:
    """Who may apply, by bundle category; a catalog without the file has no rules."""
    if not path.exists():
        return {}
    raw = _read_yaml(path)
    if not isinstance(raw, dict):
        raise CatalogError(f"{path.name}: expected a mapping of category to rule")
    rules: dict[Category, ApplicantRule] = {}
    for category, rule in raw.items():
        if category not in Category.__members__.values():
            raise CatalogError(f"{path.name}: unknown category {category!r}")
        try:
            rules[Category(category)] = ApplicantRule.model_validate(rule)
        except ValidationError as error:
            raise CatalogError(f"{path.name}: {category}: {error}") from None
    return rules


@cache
def default_catalog() -> Catalog:
    """The catalog shipped with Lianban, loaded once per process."""
    return load_catalog()


def dependency_order(bundle_type: BundleType, selected: Iterable[str] | None = None) -> list[str]:
    """Item codes in an order where every prerequisite comes before its dependents.

    Ties keep catalog order, so the result is stable for display and dispatch.
    """
    chosen = bundle_type.item_codes if selected is None else frozenset(selected)
    ordered: list[str] = []
    placed: set[str] = set()
    remaining = [item for item in bundle_type.items if item.code in chosen]
    while remaining:
        ready = [
            item
            for item in remaining
            if all(code in placed for code in prerequisite_codes(item) if code in chosen)
        ]
        if not ready:
            raise CatalogError(
                f"bundle type {bundle_type.code!r}: prerequisites form a cycle among "
                + ", ".join(sorted(item.code for item in remaining))
            )
        for item in ready:
            ordered.append(item.code)
            placed.add(item.code)
        remaining = [item for item in remaining if item.code not in placed]
    return ordered


def prerequisite_codes(item: Item) -> set[str]:
    return {code for prerequisite in item.prerequisites for code in prerequisite.any_of}


def _load_departments(path: Path) -> dict[str, Department]:
    raw = _read_yaml(path)
    if not isinstance(raw, list):
        raise CatalogError(f"{path.name}: expected a list of departments")
    departments: dict[str, Department] = {}
    for entry in raw:
        department = _parse(Department, entry, path)
        if department.code in departments:
            raise CatalogError(f"{path.name}: department {department.code!r} is listed twice")
        departments[department.code] = department
    return departments


def _check_bundle_type(bundle_type: BundleType, departments: Mapping[str, Any], path: Path) -> None:
    where = f"{path.name}: bundle type {bundle_type.code!r}"
    if bundle_type.lead_department not in departments:
        raise CatalogError(
            f"{where}: unknown lead department {bundle_type.lead_department!r}; "
            "add it to departments.yaml"
        )
    seen: set[str] = set()
    for item in bundle_type.items:
        if item.code in seen:
            raise CatalogError(f"{where}: item {item.code!r} is listed twice")
        seen.add(item.code)
        if item.department not in departments:
            raise CatalogError(
                f"{where}, item {item.code!r}: unknown department {item.department!r}; "
                "add it to departments.yaml"
            )
        for code in prerequisite_codes(item):
            if code not in bundle_type.item_codes:
                raise CatalogError(
                    f"{where}, item {item.code!r}: prerequisite {code!r} is not an item "
                    "of this bundle type"
                )
            if code == item.code:
                raise CatalogError(f"{where}, item {item.code!r}: an item cannot require itself")
    for group, members in _groups(bundle_type.items, "parallel_group").items():
        if len(members) < 2:
            raise CatalogError(f"{where}: parallel group {group!r} has only one item")
        exclusive = {m.exclusive_group for m in members if m.exclusive_group}
        if exclusive:
            raise CatalogError(
                f"{where}: parallel group {group!r} overlaps exclusive group(s) "
                f"{sorted(exclusive)}, so it could never be chosen together"
            )
    for group, members in _groups(bundle_type.items, "exclusive_group").items():
        if len(members) < 2:
            raise CatalogError(f"{where}: exclusive group {group!r} has only one item")
    try:
        dependency_order(bundle_type)
    except CatalogError as error:
        raise CatalogError(f"{path.name}: {error}") from None


def _groups(items: Iterable[Item], attribute: str) -> dict[str, list[Item]]:
    groups: dict[str, list[Item]] = {}
    for item in items:
        group = getattr(item, attribute)
        if group is not None:
            groups.setdefault(group, []).append(item)
    return groups


def _check_services(region: str, bundle_types: Mapping[str, BundleType]) -> None:
    """Within one region a service belongs to one department (another region may give it
    to another: seed 004's 卫滨区 files 水表更名、过户 with 住建局)."""
    owner: dict[str, tuple[str, str]] = {}
    for bundle_type in bundle_types.values():
        for item in bundle_type.items:
            department, first_bundle = owner.setdefault(
                item.service, (item.department, bundle_type.code)
            )
            if department != item.department:
                raise CatalogError(
                    f"region {region!r}, bundle type {bundle_type.code!r}: item {item.code!r} "
                    f"gives service {item.service!r} to {item.department!r}, but bundle type "
                    f"{first_bundle!r} gives it to {department!r}"
                )


def _load_time_limits(path: Path, filed: set[str]) -> dict[str, Service]:
    """Every filed service's time limit, its `source` key replaced by that source's text."""
    raw = _read_yaml(path)
    if (
        not isinstance(raw, dict)
        or set(raw) != {"sources", "services"}
        or not all(isinstance(part, dict) for part in raw.values())
    ):
        raise CatalogError(f"{path.name}: expected exactly the mappings 'sources' and 'services'")
    sources: dict[str, str] = raw["sources"]
    services: dict[str, Service] = {}
    cited: set[str] = set()
    for code, entry in raw["services"].items():
        source = entry.pop("source", None) if isinstance(entry, dict) else None
        if not isinstance(source, str) or source not in sources:
            raise CatalogError(
                f"{path.name}: service {code!r} cites source {source!r}, which is not one of "
                f"{sorted(sources)}"
            )
        cited.add(source)
        services[code] = _parse(
            Service, {"code": code, **entry, "promise_source": sources[source]}, path
        )
    problems = {
        "no time limit for service(s)": filed - services.keys(),
        "time limit for service(s) no item files": services.keys() - filed,
        "source(s) no service cites": sources.keys() - cited,
    }
    for problem, codes in problems.items():
        if codes:
            raise CatalogError(f"{path.name}: {problem}: {', '.join(sorted(codes))}")
    return services


def _form_fields(
    path: Path, bundle_types: Iterable[BundleType]
) -> tuple[dict[str, FormField], Callable[[str], tuple[str, ...]]]:
    """forms.yaml: each field's definition (`fields`), the `common` fields every service
    receives, and each service's own. Without the file, a dispatch carries no form at all."""
    raw = _read_yaml(path) if path.exists() else {}
    if not isinstance(raw, dict) or raw.keys() - {"fields", "common", "services"}:
        raise CatalogError(f"{path.name}: expected `fields`, `common` and `services`")
    definitions: dict[str, FormField] = {
        code: _parse(FormField, {"code": code, **entry}, path)
        for code, entry in (raw.get("fields") or {}).items()
    }
    common = tuple(raw.get("common") or ())
    services: dict[str, list[str]] = raw.get("services") or {}
    known = {item.service for bundle_type in bundle_types for item in bundle_type.items}
    unknown = sorted(services.keys() - known)
    if unknown:
        raise CatalogError(f"{path.name}: no catalog item uses service(s) {unknown}")
    named = {*common, *(field for names in services.values() for field in names)}
    undefined = sorted(named - definitions.keys())
    if undefined:
        raise CatalogError(f"{path.name}: field(s) {undefined} have no entry under `fields`")
    unused = sorted(definitions.keys() - named)
    if unused:
        raise CatalogError(f"{path.name}: no service receives field(s) {unused}")
    return definitions, lambda service: (*common, *services.get(service, ()))


def _load_licence_types(path: Path, departments: Mapping[str, Any]) -> dict[str, LicenceType]:
    """licence_types.yaml, when present: the electronic licence (电子证照) vocabulary."""
    if not path.exists():
        return {}
    raw = _read_yaml(path)
    if not isinstance(raw, list):
        raise CatalogError(f"{path.name}: expected a list of licence types")
    licence_types: dict[str, LicenceType] = {}
    for entry in raw:
        licence_type = _parse(LicenceType, entry, path)
        if licence_type.code in licence_types:
            raise CatalogError(f"{path.name}: licence type {licence_type.code!r} is listed twice")
        if licence_type.issuing_department not in departments:
            raise CatalogError(
                f"{path.name}: licence type {licence_type.code!r}: unknown issuing department "
                f"{licence_type.issuing_department!r}"
            )
        licence_types[licence_type.code] = licence_type
    return licence_types


_MATERIALS_SECTIONS = {"sources", "bases", "materials", "services"}
_SERVICE_LIST_KEYS = {"source", "required", "optional", "basis", "produces"}


def _load_materials(
    path: Path, licence_types: Mapping[str, LicenceType], services: Mapping[str, Service]
) -> tuple[dict[str, Material], dict[str, Service]]:
    """materials.yaml: the material vocabulary, and every service's list of them."""
    raw = _read_yaml(path)
    if not (
        isinstance(raw, dict)
        and set(raw) == _MATERIALS_SECTIONS
        and all(isinstance(part, dict) for part in raw.values())
    ):
        raise CatalogError(
            f"{path.name}: expected exactly the mappings {sorted(_MATERIALS_SECTIONS)}"
        )
    sources: dict[str, str] = raw["sources"]
    bases: dict[str, str] = raw["bases"]
    materials = {
        code: _parse(Material, {"code": code, **(entry or {})}, path)
        for code, entry in raw["materials"].items()
    }
    for material in materials.values():
        unknown = sorted(set(material.licence_types) - licence_types.keys())
        if unknown:
            raise CatalogError(
                f"{path.name}: material {material.code!r} names unknown licence type(s) "
                f"{unknown}; add them to licence_types.yaml"
            )
    listed: dict[str, Service] = {}
    asked: set[str] = set()
    cited: set[str] = set()
    grounded: set[str] = set()
    for code, entry in raw["services"].items():
        where = f"{path.name}: service {code!r}"
        if code not in services:
            raise CatalogError(f"{where}: no catalog item files this service")
        if not isinstance(entry, dict) or entry.keys() - _SERVICE_LIST_KEYS:
            raise CatalogError(f"{where}: expected only {sorted(_SERVICE_LIST_KEYS)}")
        source = entry.get("source")
        if source not in sources:
            raise CatalogError(f"{where}: source {source!r} is not one of {sorted(sources)}")
        cited.add(source)
        required, optional = entry.get("required") or [], entry.get("optional") or []
        basis: dict[str, str] = entry.get("basis") or {}
        produces: list[str] = entry.get("produces") or []
        names = [*required, *optional]
        problems = {
            "unknown material(s)": set(names) - materials.keys(),
            "produces unknown material(s)": set(produces) - materials.keys(),
            "material(s) listed twice": {name for name in names if names.count(name) > 1},
            "a basis for material(s) it does not list": basis.keys() - set(names),
            "unknown basis key(s)": set(basis.values()) - bases.keys(),
        }
        for problem, found in problems.items():
            if found:
                raise CatalogError(f"{where}: {problem}: {', '.join(sorted(found))}")
        if not required:
            raise CatalogError(f"{where}: a list needs at least one required material")
        asked.update(names, produces)
        grounded.update(basis.values())
        requirements = tuple(
            MaterialRequirement(
                material=name,
                required=name in required,
                basis=bases[basis[name]] if name in basis else None,
            )
            for name in names
        )
        listed[code] = services[code].model_copy(
            update={
                "materials": requirements,
                "materials_source": sources[source],
                "produces": tuple(produces),
            }
        )
    problems = {
        "no materials list for service(s)": services.keys() - listed.keys(),
        "material(s) no service asks for or produces": materials.keys() - asked,
        "source(s) no list cites": sources.keys() - cited,
        "basis key(s) no list cites": bases.keys() - grounded,
    }
    for problem, codes in problems.items():
        if codes:
            raise CatalogError(f"{path.name}: {problem}: {', '.join(sorted(codes))}")
    return materials, {code: listed[code] for code in services}


def _read_yaml(path: Path) -> Any:
    try:
        return yaml.load(path.read_text(encoding="utf-8"), Loader=_UniqueKeyLoader)
    except FileNotFoundError:
        raise CatalogError(f"{path}: file not found") from None
    except yaml.YAMLError as error:
        raise CatalogError(f"{path.name}: not valid YAML: {error}") from None


class _UniqueKeyLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key listed twice in one mapping, which plain YAML loading
    would silently resolve to the last value."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        keys = [self.construct_object(key, deep=deep) for key, _ in node.value]
        duplicates = sorted({str(key) for key in keys if keys.count(key) > 1})
        if duplicates:
            raise yaml.constructor.ConstructorError(
                None, None, f"key(s) listed twice: {', '.join(duplicates)}", node.start_mark
            )
        return super().construct_mapping(node, deep=deep)


def _parse(model: type[_M], raw: Any, path: Path) -> _M:
    try:
        return model.model_validate(raw)
    except ValidationError as error:
        code = raw.get("code") if isinstance(raw, dict) else None
        raise CatalogError(f"{path.name}: entry {code!r} is invalid: {error}") from None
