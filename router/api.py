"""The HTTP API the unified acceptance platform calls."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import FastAPI, Header, HTTPException, Request, Response, status
from fastapi.responses import JSONResponse

from contracts.api import (
    BundleStatus,
    IntakeReceipt,
    OneTimeNotice,
    Problem,
    TimelineEntry,
    Withdrawal,
)
from contracts.application import Application
from contracts.catalog import Catalog
from contracts.messages import BundleReply
from router.db import BundleRow, Database
from router.intake import Accepted, Conflict, Intake, Refused
from router.manual import manual_routes
from router.materials import MaterialRejected, MaterialStore, MaterialTooLarge
from router.status import bundle_reply, bundle_status, bundle_timeline
from router.withdrawal import Withdrawn, withdraw

IDEMPOTENCY_KEY = "Idempotency-Key"


@dataclass(frozen=True)
class Services:
    """What the routes work with; absent only when the app is built to render its OpenAPI."""

    database: Database
    intake: Intake
    materials: MaterialStore
    manual_tokens: Mapping[str, str] = field(default_factory=dict)
    on_commit: Callable[[], None] = lambda: None


def openapi_document(catalog: Catalog) -> dict[str, Any]:
    return create_app(catalog).openapi()


def create_app(catalog: Catalog, services: Services | None = None) -> FastAPI:
    app = FastAPI(
        title="Lianban intake API",
        version="1.0",
        description="Bundles (一件事) in, one reply out. Problems are reported all at once "
        "(一次告知) as a 422 OneTimeNotice.",
    )

    @app.post(
        "/v1/bundles",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=IntakeReceipt,
        responses={
            200: {"model": IntakeReceipt, "description": "Repeat of an accepted case number"},
            409: {"description": "The case number was used for a different application"},
            422: {"model": OneTimeNotice, "description": "Every problem, at once"},
        },
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "application/json": {"schema": {"$ref": "#/components/schemas/Application"}}
                },
            }
        },
    )
    async def submit_bundle(
        request: Request,
        idempotency_key: Annotated[
            str | None, Header(alias=IDEMPOTENCY_KEY, description="The case number (办件编号)")
        ] = None,
    ) -> Response:
        try:
            raw: Any = json.loads(await request.body())
        except ValueError:
            return _notice(
                Problem(
                    pointer="",
                    code="json_invalid",
                    message_zh="请求体不是合法的JSON",
                    message_en="the body is not valid JSON",
                )
            )
        result = _services(request).intake.submit(raw, idempotency_key)
        match result:
            case Accepted(receipt=receipt, replayed=replayed):
                return JSONResponse(
                    receipt.model_dump(mode="json"),
                    status_code=status.HTTP_200_OK if replayed else status.HTTP_202_ACCEPTED,
                )
            case Refused(notice=notice):
                return _notice(*notice.problems)
            case Conflict(message=message):
                return JSONResponse({"detail": message}, status_code=status.HTTP_409_CONFLICT)
        raise AssertionError(result)

    @app.put(
        "/v1/materials/{sha256}",
        status_code=status.HTTP_201_CREATED,
        responses={
            413: {"description": "The file is larger than the cap"},
            422: {"description": "The file is not what it claims to be"},
        },
    )
    async def upload_material(
        sha256: str, request: Request, content_type: Annotated[str, Header()]
    ) -> dict[str, Any]:
        """Stream a material in; it is stored under its SHA-256 only if every check passes."""
        try:
            upload = _services(request).materials.upload(sha256, content_type)
            try:
                async for chunk in request.stream():
                    upload.write(chunk)
            except BaseException:
                upload.abort()  # the client went away mid-upload: keep nothing
                raise
            size = upload.commit()
        except MaterialTooLarge as error:
            raise HTTPException(status_code=413, detail=str(error)) from None
        except MaterialRejected as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        return {"sha256": sha256, "size": size}

    @app.get("/v1/bundles/{bundle_id}", response_model=BundleStatus)
    def get_bundle(bundle_id: uuid.UUID, request: Request) -> BundleStatus:
        with _services(request).database.transaction() as session:
            found = bundle_status(session, bundle_id)
        if found is None:
            raise HTTPException(status_code=404, detail="no such bundle")
        return found

    @app.get("/v1/bundles/{bundle_id}/timeline", response_model=list[TimelineEntry])
    def get_timeline(bundle_id: uuid.UUID, request: Request) -> list[TimelineEntry]:
        with _services(request).database.transaction() as session:
            if session.get(BundleRow, bundle_id) is None:
                raise HTTPException(status_code=404, detail="no such bundle")
            return bundle_timeline(session, bundle_id)

    @app.get("/v1/bundles/{bundle_id}/reply", response_model=BundleReply)
    def get_reply(bundle_id: uuid.UUID, request: Request) -> BundleReply:
        with _services(request).database.transaction() as session:
            reply = bundle_reply(session, bundle_id)
            known = session.get(BundleRow, bundle_id) is not None
        if reply is None:
            detail = "the bundle is still in progress" if known else "no such bundle"
            raise HTTPException(status_code=404, detail=detail)
        return reply

    @app.post(
        "/v1/bundles/{bundle_id}/withdraw",
        response_model=BundleReply,
        responses={409: {"description": "The bundle was already answered"}},
    )
    def withdraw_bundle(
        bundle_id: uuid.UUID, request: Request, body: Withdrawal | None = None
    ) -> BundleReply:
        services = _services(request)
        result = withdraw(services.database, bundle_id, (body or Withdrawal()).reason)
        if result is Withdrawn.UNKNOWN:
            raise HTTPException(status_code=404, detail="no such bundle")
        if result is Withdrawn.ALREADY_REPLIED:
            raise HTTPException(
                status_code=409, detail="every item is decided: nothing to withdraw"
            )
        services.on_commit()
        with services.database.transaction() as session:
            reply = bundle_reply(session, bundle_id)
        assert reply is not None  # withdrawal commits the reply with it
        return reply

    @app.get("/v1/catalog", response_model=Catalog)
    def get_catalog() -> Catalog:
        return catalog

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # The body is read raw (to report every problem at once), so register its schema
    # for the OpenAPI document explicitly.
    app.include_router(
        manual_routes(
            services.database if services else None,
            services.manual_tokens if services else {},
            services.on_commit if services else lambda: None,
        )
    )
    _register_schema(app, Application)
    app.state.services = services
    return app


def _services(request: Request) -> Services:
    services: Services | None = request.app.state.services
    if services is None:
        raise HTTPException(status_code=503, detail="this app was built for documentation only")
    return services


def _notice(*problems: Problem) -> JSONResponse:
    notice = OneTimeNotice(problems=problems)
    return JSONResponse(notice.model_dump(mode="json"), status_code=422)


def _register_schema(app: FastAPI, model: type[Application]) -> None:
    build = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            document = build()
            schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
            components = document.setdefault("components", {}).setdefault("schemas", {})
            components.update(schema.pop("$defs", {}))
            components[model.__name__] = schema
            app.openapi_schema = document
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
