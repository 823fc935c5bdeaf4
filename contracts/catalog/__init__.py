"""The 一件事 catalog: bundle types, their items, departments, prerequisite edges and the
services' promised time limits."""

from contracts.catalog.limits import ACCEPTANCE_WORKING_DAYS, promised_working_days
from contracts.catalog.loader import default_catalog, dependency_order, load_catalog
from contracts.catalog.model import (
    BundleType,
    Catalog,
    Category,
    Department,
    HandlingClass,
    Item,
    Level,
    Service,
)

__all__ = [
    "ACCEPTANCE_WORKING_DAYS",
    "BundleType",
    "Catalog",
    "Category",
    "Department",
    "HandlingClass",
    "Item",
    "Level",
    "Service",
    "default_catalog",
    "dependency_order",
    "load_catalog",
    "promised_working_days",
]
