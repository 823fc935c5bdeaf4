"""Valid dispatches for catalog services, as the router would send them, for adapter tests."""

from __future__ import annotations

import uuid

from contracts.application import Application
from contracts.catalog import Catalog, default_catalog
from contracts.messages import ItemDispatch
from contracts.samples import sample_application


def dispatch_for(
    service: str, *, department: str, catalog: Catalog | None = None, project_no: str | None = None
) -> ItemDispatch:
    """A dispatch of the first catalog item that uses `service` at `department`."""
    catalog = catalog or default_catalog()
    for bundle_type in catalog.bundle_types.values():
        for item in bundle_type.items:
            if item.service == service and item.department == department:
                number = project_no or f"T{uuid.uuid4().hex[:16].upper()}"
                sample = sample_application(bundle_type, number, items=[item.code])
                # The sample's materials are all SAMPLE_PDF's bytes: one of them is the
                # file a department test follows (uploaded once, filed once).
                sample["materials"] = sample["materials"][:1]
                application = Application.model_validate(sample)
                return ItemDispatch.for_item(
                    application, uuid.uuid4(), item, form_fields=item.form_fields
                )
    raise LookupError(f"no catalog item uses service {service!r} at {department!r}")
