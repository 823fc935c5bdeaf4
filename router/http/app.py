"""The HTTP API the unified acceptance platform calls, with the manual work queue and the
operators' page: `create_app` assembles the routers of `router/http/` around the app's
services, and documents what the routes cannot declare themselves."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from fastapi_offline import FastAPIOffline

from contracts.application import DEFAULT_MAX_BODY_BYTES, Application
from contracts.catalog import Catalog
from router.domain.catalogs import CatalogShelf, shelf_of
from router.http.auth import fixed_tokens
from router.http.bundles import bundle_routes
from router.http.catalog import catalog_routes
from router.http.edge import Edge
from router.http.manual import manual_routes
from router.http.materials import material_routes
from router.http.ops import ops_routes
from router.http.outages import answer_outages_with_retry_after
from router.http.problems import answer_refusals_as_notices, document_refusals
from router.http.ratings import rating_routes
from router.http.services import AppServices, Services


def openapi_document(catalog: Catalog) -> dict[str, Any]:
    return create_app(catalog).openapi()


def create_app(catalog: Catalog | CatalogShelf, services: Services | None = None) -> FastAPI:
    """The app serving `catalog` (its current version, and each bundle's own) with
    `services`; without them, an app that only renders its OpenAPI document (every route
    that needs them answers 503)."""
    # Swagger UI (/docs) and ReDoc (/redoc) from the package's files, not a CDN: they
    # must work on a government network with no way out.
    app = FastAPIOffline(
        title="Lianban intake API",
        version="1.0",
        description="Bundles (一件事) in, one reply out. Every refusal is RFC 9457 problem "
        "details; an application's problems are reported all at once (一次告知) in a 422.",
        static_url="/docs-assets",
        # One span per request, the server's, which the bundle's trace continues from
        # (runtime.tracing); FastAPI's own spans of its dependencies, endpoint and
        # serialisation would cost the serve process more CPU per POST than they tell.
        telemetry={"operation_spans": False},
    )
    for routes in (
        bundle_routes,
        rating_routes,
        material_routes,
        catalog_routes,
        manual_routes,
        ops_routes,
    ):
        app.include_router(routes)
    app.add_api_route("/healthz", health, methods=["GET"])
    app.add_api_route("/readyz", readiness, methods=["GET"], include_in_schema=False)
    _register_schema(app, Application)
    answer_refusals_as_notices(app)
    answer_outages_with_retry_after(app)
    app.add_middleware(
        Edge, max_body_bytes=services.max_body_bytes if services else DEFAULT_MAX_BODY_BYTES
    )
    app.state.services = services
    app.state.catalogs = shelf_of(catalog)
    app.state.api_tokens = services.api_tokens if services else fixed_tokens(())
    app.state.guesses = services.guesses if services else None
    return app


# No docstring: it would become the operation's description in the OpenAPI document.
def health() -> dict[str, str]:
    return {"status": "ok"}


def readiness(services: AppServices) -> JSONResponse:
    """200 while the database and the broker answer: a load balancer sends no requests
    to a replica that could only fail them (liveness stays `/healthz`)."""
    problem = services.readiness()
    if problem is None:
        return JSONResponse({"status": "ok"})
    return JSONResponse({"problem": problem}, status_code=503)


def _drop_integer_discriminators(schemas: dict[str, Any]) -> None:
    """An OpenAPI discriminator maps string values, but applicant_type is an integer code:
    clients (and the fuzzer) read it as a conflict. The branches' own const and enum of
    applicant_type tell them apart without it."""

    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if node.get("discriminator", {}).get("propertyName") == "applicant_type":
                del node["discriminator"]
            for child in node.values():
                walk(child)
        elif isinstance(node, list):
            for child in node:
                walk(child)

    walk(schemas)


def _register_schema(app: FastAPI, model: type[Application]) -> None:
    """Add `model` to the document's components: POST /v1/bundles reads its body raw (to
    report every problem at once), so FastAPI does not know the schema it refers to."""
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
            _drop_integer_discriminators(components)
            document_refusals(document)
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
