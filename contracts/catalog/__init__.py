"""The 一件事 catalog: bundle types, their items, departments and prerequisite edges."""

from contracts.catalog.loader import default_catalog, dependency_order, load_catalog
from contracts.catalog.model import BundleType, Catalog, Category, Department, Item, Level

__all__ = [
    "BundleType",
    "Catalog",
    "Category",
    "Department",
    "Item",
    "Level",
    "default_catalog",
    "dependency_order",
    "load_catalog",
]
