"""The catalog the router was started with: which bundle types and items it accepts, and
for one bundle type its one set of materials (一套材料) and its one form (一表申请)."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.responses import JSONResponse

from contracts.catalog import BundleType, Catalog
from contracts.catalog.checklist import ChecklistEntry, checklist, form_schema
from router.http.auth import Scope, require_scope
from router.http.problems import Cause, Refused
from router.http.services import AppCatalog

catalog_routes = APIRouter()
READERS = [Depends(require_scope(Scope.BUNDLES_READ))]
Selection = Annotated[
    list[str] | None,
    Query(description="Selected item codes (repeat the parameter); default: every item"),
]


@catalog_routes.get("/v1/catalog", response_model=Catalog, dependencies=READERS)
def get_catalog(catalog: AppCatalog) -> Catalog:
    return catalog


@catalog_routes.get(
    "/v1/catalog/bundle-types/{code}/checklist",
    response_model=list[ChecklistEntry],
    dependencies=READERS,
)
def get_checklist(code: str, catalog: AppCatalog, items: Selection = None) -> list[ChecklistEntry]:
    """一次告知: every material the selection asks for, once each, naming the items that
    need it, the file types accepted and the electronic licences that stand in for it."""
    return checklist(catalog, _bundle_type(catalog, code, items), items)


@catalog_routes.get(
    "/v1/catalog/bundle-types/{code}/form-schema",
    dependencies=READERS,
    responses={200: {"content": {"application/schema+json": {}}}},
)
def get_form_schema(code: str, catalog: AppCatalog, items: Selection = None) -> JSONResponse:
    """一表申请: the JSON Schema of the bundle type's one form (the selection's fields,
    each once), the schema intake checks `form` against."""
    schema: dict[str, Any] = form_schema(catalog, _bundle_type(catalog, code, items), items)
    return JSONResponse(schema, media_type="application/schema+json")


def _bundle_type(catalog: Catalog, code: str, items: list[str] | None) -> BundleType:
    bundle_type = catalog.bundle_types.get(code)
    if bundle_type is None:
        raise Refused(Cause.BUNDLE_TYPE_NOT_FOUND, f"no bundle type {code!r}")
    unknown = sorted(set(items or ()) - bundle_type.item_codes)
    if unknown:
        raise Refused(Cause.INVALID_REQUEST, f"bundle type {code!r} has no item(s) {unknown}")
    return bundle_type
