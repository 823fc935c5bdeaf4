"""A bundle's promised time limit (the 一件事's 承诺办结时限), from its items' services.

Seeds 001 and 004: every department decides on acceptance (受理) within 1 working day of
receiving an item, and the item's own promised limit runs from that 受理. An item waits
for its prerequisites' decisions before it is dispatched, so the bundle is done when the
longest chain through the prerequisite graph is. A pre-reviewed item (容缺预审) does not
wait: seed 001 has its department accept and review it at once and, once the
prerequisites' results arrive, "即时作出审批决定", so it adds no days after them.
"""

from __future__ import annotations

from collections.abc import Iterable

from contracts.catalog.loader import dependency_order, prerequisite_codes
from contracts.catalog.model import BundleType, Catalog

ACCEPTANCE_WORKING_DAYS = 1


def promised_working_days(
    catalog: Catalog, bundle_type: BundleType, selected_items: Iterable[str]
) -> int:
    """Working days from receipt to the last decision when every department uses its whole
    time: the longest chain of `selected_items` through the prerequisite graph, each item
    costing its 受理 day plus its service's promise_days, a pre-reviewed item running
    beside its prerequisites instead of after them.
    """
    chosen = frozenset(selected_items)
    finished_after: dict[str, int] = {}
    for code in dependency_order(bundle_type, chosen):
        item = bundle_type.item(code)
        own = ACCEPTANCE_WORKING_DAYS + catalog.service_of(item).promise_days
        prerequisites = max(
            (finished_after[c] for c in prerequisite_codes(item) if c in chosen), default=0
        )
        finished_after[code] = max(own, prerequisites) if item.pre_review else prerequisites + own
    return max(finished_after.values(), default=0)
