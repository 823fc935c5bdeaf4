"""What the routes work with, and the FastAPI dependencies that hand it to them.

`create_app` keeps the catalog and the `Services` on `app.state`; a route names what it
needs as a parameter (`services: AppServices`) instead of closing over it, so routes are
plain module-level functions. An app built only to render its OpenAPI document has no
services: its routes answer 503.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, HTTPException, Request

from contracts.application import DEFAULT_MAX_BODY_BYTES
from contracts.catalog import Catalog
from router.domain.catalogs import CatalogShelf
from router.domain.intake import Intake
from router.domain.rectifications import DEFAULT_WORKING_DAYS as DEFAULT_RECTIFICATION_DAYS
from router.http.auth import Tokens
from router.http.guessing import CredentialGuesses
from router.operations.overview import OpsServices
from router.store import Database
from runtime.storage import MaterialStore

DOCUMENTATION_ONLY = "this app was built for documentation only"


@dataclass(frozen=True)
class Services:
    """What the routes work with; absent only when the app is built to render its OpenAPI."""

    database: Database
    intake: Intake
    materials: MaterialStore
    api_tokens: Tokens = lambda: ()
    ops: OpsServices | None = None
    guesses: CredentialGuesses | None = None
    readiness: Callable[[], str | None] = lambda: None
    """What keeps the API from serving (the database, the broker), or None: `/readyz`."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    rectification_working_days: int = DEFAULT_RECTIFICATION_DAYS
    """整改: working days a department has to answer a 差评."""


# The dependencies are coroutines so FastAPI calls them on the event loop: a plain
# function would cost each request a hop to the thread pool for one attribute read.
async def app_services(request: Request) -> Services:
    services: Services | None = request.app.state.services
    if services is None:
        raise HTTPException(status_code=503, detail=DOCUMENTATION_ONLY)
    return services


AppServices = Annotated[Services, Depends(app_services)]


async def app_catalogs(request: Request) -> CatalogShelf:
    catalogs: CatalogShelf = request.app.state.catalogs
    return catalogs


async def app_catalog(request: Request) -> Catalog:
    """The current catalog version, which new applications are accepted under."""
    return (await app_catalogs(request)).current()


AppCatalogs = Annotated[CatalogShelf, Depends(app_catalogs)]
AppCatalog = Annotated[Catalog, Depends(app_catalog)]


async def ops_services(services: AppServices) -> OpsServices:
    if services.ops is None:
        raise HTTPException(status_code=503, detail=DOCUMENTATION_ONLY)
    return services.ops


AppOps = Annotated[OpsServices, Depends(ops_services)]
