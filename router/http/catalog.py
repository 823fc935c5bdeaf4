"""The catalog the router was started with: which bundle types and items it accepts."""

from __future__ import annotations

from fastapi import APIRouter, Depends

from contracts.catalog import Catalog
from router.http.auth import Scope, require_scope
from router.http.services import AppCatalog

catalog_routes = APIRouter()


@catalog_routes.get(
    "/v1/catalog",
    response_model=Catalog,
    dependencies=[Depends(require_scope(Scope.BUNDLES_READ))],
)
def get_catalog(catalog: AppCatalog) -> Catalog:
    return catalog
