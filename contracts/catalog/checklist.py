"""A bundle's one set of materials (一套材料) and its one form (一表申请), from its items.

Each material is asked once for the whole selection, naming every item that needs it;
one a selected prerequisite issues (the newborn's 出生医学证明 for the 出生登记 waiting
for it) is not asked of the applicant at all. Each form field appears once however many
departments receive it.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from contracts.catalog.loader import dependency_order, prerequisite_codes
from contracts.catalog.model import BundleType, Catalog, FieldType, FormField, Item


class ChecklistEntry(BaseModel):
    """One material of a bundle's checklist."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    material: str = Field(description="Material code: what an upload names in `material`")
    name_zh: str
    required: bool = Field(description="Some item in `items` cannot go without it")
    items: tuple[str, ...] = Field(description="Selected items that ask the applicant for it")
    produced_by: tuple[str, ...] = Field(
        default=(),
        description="Selected items whose decision issues it to the items waiting for them; "
        "those items do not ask the applicant for it",
    )
    media_types: tuple[str, ...]
    licence_types: tuple[str, ...] = Field(
        description="Electronic licence types whose verified copy stands in for the upload"
    )
    bases: tuple[str, ...] = Field(default=(), description="Legal basis or seed wording, if known")
    sources: tuple[str, ...] = Field(description="Where the lists asking for it come from")


def checklist(
    catalog: Catalog, bundle_type: BundleType, selected: Iterable[str] | None = None
) -> list[ChecklistEntry]:
    """The materials `selected` (default: every item) asks for, each once, in the order
    the items are handled."""
    order = dependency_order(bundle_type, selected)
    chosen = frozenset(order)
    producers: dict[str, list[str]] = {}
    for code in order:
        for material in catalog.service_of(bundle_type.item(code)).produces:
            producers.setdefault(material, []).append(code)
    asked: dict[str, dict[str, Any]] = {}
    for code in order:
        item = bundle_type.item(code)
        service = catalog.service_of(item)
        upstream = _upstream(bundle_type, item, chosen)
        for requirement in service.materials:
            entry = asked.setdefault(
                requirement.material,
                {"required": False, "items": [], "bases": [], "sources": []},
            )
            if upstream.intersection(producers.get(requirement.material, ())):
                continue  # a prerequisite it waits for issues the material
            entry["items"].append(code)
            entry["required"] |= requirement.required
            if requirement.basis and requirement.basis not in entry["bases"]:
                entry["bases"].append(requirement.basis)
            if service.materials_source not in entry["sources"]:
                entry["sources"].append(service.materials_source)
    return [
        ChecklistEntry(
            material=code,
            name_zh=catalog.materials[code].name_zh,
            required=entry["required"],
            items=tuple(entry["items"]),
            produced_by=tuple(producers.get(code, ())),
            media_types=catalog.materials[code].media_types,
            licence_types=catalog.materials[code].licence_types,
            bases=tuple(entry["bases"]),
            sources=tuple(source for source in entry["sources"] if source),
        )
        for code, entry in asked.items()
    ]


def _upstream(bundle_type: BundleType, item: Item, chosen: frozenset[str]) -> set[str]:
    """The selected items `item` waits for, directly or through others."""
    found: set[str] = set()
    frontier = [code for code in prerequisite_codes(item) if code in chosen]
    while frontier:
        code = frontier.pop()
        if code not in found:
            found.add(code)
            frontier.extend(c for c in prerequisite_codes(bundle_type.item(code)) if c in chosen)
    return found


def form_fields(
    catalog: Catalog, bundle_type: BundleType, selected: Iterable[str] | None = None
) -> dict[str, tuple[FormField, tuple[str, ...]]]:
    """Each field the selection's departments receive, once, with the items that need it."""
    fields: dict[str, tuple[FormField, tuple[str, ...]]] = {}
    for code in dependency_order(bundle_type, selected):
        for name in bundle_type.item(code).form_fields:
            field, items = fields.get(name, (catalog.form_fields[name], ()))
            fields[name] = (field, (*items, code))
    return fields


_JSON_TYPES = {
    FieldType.STRING: {"type": "string"},
    FieldType.DATE: {"type": "string", "format": "date", "pattern": r"^\d{4}-\d{2}-\d{2}$"},
    FieldType.INTEGER: {"type": "integer"},
    FieldType.BOOLEAN: {"type": "boolean"},
}


def form_schema(
    catalog: Catalog, bundle_type: BundleType, selected: Iterable[str] | None = None
) -> dict[str, Any]:
    """The one form of `bundle_type` as JSON Schema (draft 2020-12): the fields of the
    selected items, each once, required where a selected item needs it (what intake
    checks). Without a selection, every item's fields, required only where every item
    needs them; `x-lianban-items` names the items needing each. Other keys are allowed: a
    form may serve items not selected this time."""
    chosen = None if selected is None else list(selected)
    fields = form_fields(catalog, bundle_type, chosen)
    properties: dict[str, Any] = {}
    for name, (field, items) in fields.items():
        prop: dict[str, Any] = {"title": field.name_zh, **_JSON_TYPES[field.type]}
        if field.enum:
            prop["enum"] = list(field.enum)
        if field.pattern is not None:
            prop["pattern"] = field.pattern
        if field.max_length is not None:
            prop["maxLength"] = field.max_length
        prop["examples"] = [field.example]
        prop["description"] = "需要此项的事项：" + "、".join(
            bundle_type.item(code).name_zh for code in items
        )
        prop["x-lianban-items"] = list(items)
        properties[name] = prop
    scope = (
        "every item; a field is required only where every item needs it, the selection's "
        "own schema adds the rest (?items=…)"
        if chosen is None
        else "items " + ", ".join(chosen)
    )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": f"urn:lianban:form:{bundle_type.code}",
        "title": f"{bundle_type.name_zh}（一表申请）",
        "description": f"The one form of bundle type {bundle_type.code} ({scope}); "
        "each department receives only its own fields.",
        "type": "object",
        "properties": properties,
        "required": [
            name
            for name, (field, items) in fields.items()
            if field.required and (chosen is not None or len(items) == len(bundle_type.items))
        ],
    }
