"""A bundle's promised time limit (the 一件事's 承诺办结时限), from its items' services.

Seeds 001 and 004: every department decides on acceptance (受理) within 1 working day of
receiving an item, and the item's own promised limit runs from that 受理. An item waits
for its prerequisites' decisions before it is dispatched, so the bundle is done when the
longest chain through the prerequisite graph is.
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
    costing its 受理 day plus its service's promise_days.

    A pre-reviewed (容缺预审) item is counted after its prerequisites too: it may be
    accepted early, but it is decided only once their results arrive.
    """
    chosen = frozenset(selected_items)
    finished_after: dict[str, int] = {}
    for code in dependency_order(bundle_type, chosen):
        item = bundle_type.item(code)
        start = max((finished_after[c] for c in prerequisite_codes(item) if c in chosen), default=0)
        finished_after[code] = (
            start + ACCEPTANCE_WORKING_DAYS + catalog.service_of(item).promise_days
        )
    return max(finished_after.values(), default=0)
