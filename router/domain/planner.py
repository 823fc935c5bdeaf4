"""Turns a selection of catalog items into a DAG and decides what moves next.

Pure functions over item states: which waiting items may be dispatched now (in full, or
for pre-review while their prerequisites are still undecided), which pre-reviewed items
may now be given their prerequisites' results, and which must be cancelled because a
prerequisite ended without approval.
"""

from __future__ import annotations

from collections.abc import Container, Mapping

from contracts.catalog import BundleType, Item
from contracts.messages import ItemState


def selected_prerequisites(item: Item, selected: Container[str]) -> list[tuple[str, ...]]:
    """For each prerequisite of `item`, the alternatives that were actually selected."""
    return [
        tuple(code for code in prerequisite.any_of if code in selected)
        for prerequisite in item.prerequisites
    ]


def prerequisites_met(
    item: Item, states: Mapping[str, ItemState], satisfied: Container[str] = frozenset()
) -> bool:
    """Every prerequisite has an approved alternative, or one an earlier result cited at
    intake stands for (`satisfied`: the item was applied for alone, 单独申请)."""
    return all(
        any(code in satisfied for code in prerequisite.any_of)
        or any(states[code] is ItemState.APPROVED for code in alternatives)
        for prerequisite, alternatives in zip(
            item.prerequisites, selected_prerequisites(item, states), strict=True
        )
    )


def releasable(
    bundle_type: BundleType,
    states: Mapping[str, ItemState],
    satisfied: Container[str] = frozenset(),
) -> list[str]:
    """Waiting items whose every prerequisite is approved, in catalog order."""
    return [
        item.code
        for item in bundle_type.items
        if states.get(item.code) is ItemState.WAITING and prerequisites_met(item, states, satisfied)
    ]


def pre_reviewable(
    bundle_type: BundleType,
    states: Mapping[str, ItemState],
    satisfied: Container[str] = frozenset(),
) -> list[str]:
    """Waiting items the catalog lets a department pre-review (容缺预审) while their
    prerequisites are undecided, in catalog order."""
    return [
        item.code
        for item in bundle_type.items
        if item.pre_review
        and states.get(item.code) is ItemState.WAITING
        and not prerequisites_met(item, states, satisfied)
    ]


def forwardable(
    bundle_type: BundleType,
    states: Mapping[str, ItemState],
    awaiting: Container[str],
    satisfied: Container[str] = frozenset(),
) -> list[str]:
    """Pre-reviewed items still awaiting their prerequisites' results, now all approved."""
    return [
        item.code
        for item in bundle_type.items
        if item.code in awaiting
        and states.get(item.code) is ItemState.PRE_REVIEWED
        and prerequisites_met(item, states, satisfied)
    ]


def blocked(
    bundle_type: BundleType,
    states: Mapping[str, ItemState],
    awaiting: Container[str] = frozenset(),
) -> dict[str, str]:
    """Items that can never go on, with the prerequisite that stopped them: waiting ones,
    and filed ones still awaiting their prerequisites' results (in `awaiting`).

    A prerequisite is lost when every selected alternative is final and none approved.
    Cancellation cascades: a cancelled item in turn blocks its own dependents.
    """
    states = dict(states)
    cancelled: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for item in bundle_type.items:
            state = states.get(item.code)
            if state is None or state.is_final:
                continue
            if state is not ItemState.WAITING and item.code not in awaiting:
                continue
            for alternatives in selected_prerequisites(item, states):
                if alternatives and all(
                    states[code].is_final and states[code] is not ItemState.APPROVED
                    for code in alternatives
                ):
                    cancelled[item.code] = alternatives[0]
                    states[item.code] = ItemState.CANCELLED
                    changed = True
                    break
    return cancelled
