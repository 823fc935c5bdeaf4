"""一次告知 of materials and form: what a selection asks for that the application lacks.

Both checks are pure: the catalog, the selection and what the application carries in,
problems out. A material is satisfied by an upload naming it (`material`) or by a
verified electronic licence of a type that stands in for it (免提交); the same material
is asked once for the whole bundle (一套材料), naming every item that needs it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Mapping, Sequence
from typing import Any

from contracts.api import Problem
from contracts.application import MaterialRef
from contracts.catalog import BundleType, Catalog
from contracts.catalog.checklist import checklist, form_fields


def missing_materials(
    catalog: Catalog,
    bundle_type: BundleType,
    selected: Iterable[str],
    uploaded: Sequence[MaterialRef | None],
    verified_licence_types: Collection[str] = frozenset(),
) -> list[Problem]:
    """Every required material of the selection that no upload names and no verified
    licence stands in for, once each; and every upload naming a material the catalog
    does not know or in a file type that material does not accept. `uploaded` is the
    application's materials in order, None where one is malformed (reported elsewhere)."""
    problems: list[Problem] = []
    named: set[str] = set()
    for index, ref in enumerate(uploaded):
        if ref is None or ref.material is None:
            continue
        material = catalog.materials.get(ref.material)
        if material is None:
            problems.append(
                Problem(
                    pointer=f"/materials/{index}/material",
                    code="material_unknown",
                    message_zh=f"目录中没有此材料：{ref.material}",
                    message_en=f"the catalog has no material {ref.material!r}",
                )
            )
        elif ref.media_type not in material.media_types:
            accepted = ", ".join(material.media_types)
            problems.append(
                Problem(
                    pointer=f"/materials/{index}/media_type",
                    code="material_media_type_not_accepted",
                    message_zh=f"材料“{material.name_zh}”不接受此文件类型，请使用：{accepted}",
                    message_en=f"material {material.code!r} is not accepted as "
                    f"{ref.media_type}; use one of {accepted}",
                )
            )
        else:
            named.add(ref.material)
    for entry in checklist(catalog, bundle_type, selected):
        if not entry.required or entry.material in named:
            continue
        if verified_licence_types and set(entry.licence_types) & set(verified_licence_types):
            continue
        items = [bundle_type.item(code) for code in entry.items]
        zh = f"缺少申请材料“{entry.name_zh}”（{'、'.join(item.name_zh for item in items)}需要）"
        en = (
            f"material {entry.material!r} is missing, needed by {[item.code for item in items]}: "
            f'upload it with "material": "{entry.material}"'
        )
        if entry.licence_types:
            licences = [catalog.licence_types[code] for code in entry.licence_types]
            zh += "；可提供电子证照免于提交：" + "、".join(licence.name_zh for licence in licences)
            en += f" or cite a verified electronic licence of type {list(entry.licence_types)}"
        problems.append(
            Problem(
                pointer="/materials",
                code="material_missing",
                message_zh=zh,
                message_en=en,
                items=entry.items,
            )
        )
    return problems


def form_problems(
    catalog: Catalog, bundle_type: BundleType, selected: Iterable[str], form: Any
) -> list[Problem]:
    """Every field of the selection's one form (一表) that is missing or does not fit its
    definition, each named; a form that is not an object is the contract's problem."""
    if not isinstance(form, Mapping):
        return []
    problems: list[Problem] = []
    for name, (field, items) in form_fields(catalog, bundle_type, selected).items():
        pointer = f"/form/{name}"
        if name not in form or form[name] is None:
            if field.required:
                needing = "、".join(bundle_type.item(code).name_zh for code in items)
                problems.append(
                    Problem(
                        pointer=pointer,
                        code="form_field_missing",
                        message_zh=f"申请表缺少“{field.name_zh}”（{needing}需要）",
                        message_en=f"the form lacks {name!r}, needed by {list(items)}",
                        items=items,
                    )
                )
            continue
        problem = field.value_problem(form[name])
        if problem is not None:
            code, zh, en = problem
            problems.append(
                Problem(
                    pointer=pointer,
                    code=code,
                    message_zh=f"申请表“{field.name_zh}”{zh}",
                    message_en=f"form field {name!r} {en}",
                )
            )
    return problems
