"""Turns a selection of catalog items into a DAG and decides what moves next.

Pure functions over item states: which waiting items may be dispatched now, and which
must be cancelled because a prerequisite ended without approval.
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


def releasable(bundle_type: BundleType, states: Mapping[str, ItemState]) -> list[str]:
    """Waiting items whose every prerequisite has an approved alternative, in catalog order."""
    return [
        item.code
        for item in bundle_type.items
        if states.get(item.code) is ItemState.WAITING
        and all(
            any(states[code] is ItemState.APPROVED for code in alternatives)
            for alternatives in selected_prerequisites(item, states)
        )
    ]


def blocked(bundle_type: BundleType, states: Mapping[str, ItemState]) -> dict[str, str]:
    """Waiting items that can never be released, with the prerequisite that stopped them.

    A prerequisite is lost when every selected alternative is final and none approved.
    Cancellation cascades: a cancelled item in turn blocks its own dependents.
    """
    states = dict(states)
    cancelled: dict[str, str] = {}
    changed = True
    while changed:
        changed = False
        for item in bundle_type.items:
            if states.get(item.code) is not ItemState.WAITING:
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
