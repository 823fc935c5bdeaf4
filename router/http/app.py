"""The HTTP API the unified acceptance platform calls."""

from __future__ import annotations

import json
import uuid
from typing import Annotated, Any
from urllib.parse import quote

import structlog
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Request, Response, status
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.concurrency import run_in_threadpool

from contracts.api import (
    BundleStatus,
    Correction,
    IntakeReceipt,
    OneTimeNotice,
    Problem,
    TimelineEntry,
    Withdrawal,
)
from contracts.application import MATERIAL_MEDIA_TYPES, Application, MaterialRef
from contracts.catalog import Catalog
from contracts.errors import MaterialMissing, MaterialRejected, MaterialTooLarge, StoreUnavailable
from contracts.messages import BundleReply
from router.domain.corrections import Resubmitted, resubmit
from router.domain.intake import Accepted, Conflict, Refused
from router.domain.validation import material_problems
from router.domain.views import bundle_reply, bundle_status, bundle_timeline
from router.domain.withdrawal import Withdrawn, withdraw
from router.http.auth import Scope, require_scope
from router.http.manual import manual_routes
from router.http.ops import ops_routes
from router.http.problems import answer_refusals_as_notices, document_refusals
from router.http.services import AppCatalog, AppServices, Services
from router.store import BundleRow
from router.store.materials import bundle_file

IDEMPOTENCY_KEY = "Idempotency-Key"
log = structlog.get_logger(__name__)
BUNDLES_WRITE = [Depends(require_scope(Scope.BUNDLES_WRITE))]
BUNDLES_READ = [Depends(require_scope(Scope.BUNDLES_READ))]
FILES_WRITE = [Depends(require_scope(Scope.FILES_WRITE))]
FILES_READ = [Depends(require_scope(Scope.FILES_READ))]


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
        dependencies=BUNDLES_WRITE,
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
        services: AppServices,
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
        result = services.intake.submit(raw, idempotency_key)
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
        dependencies=FILES_WRITE,
        responses={
            413: {"description": "The file is larger than the cap"},
            422: {"description": "The file is not what it claims to be"},
            503: {"description": "The material store is unavailable; try again later"},
        },
    )
    async def upload_material(
        sha256: str,
        request: Request,
        services: AppServices,
        content_type: Annotated[str, Header()],
    ) -> dict[str, Any]:
        """Stream a material in; it is stored under its SHA-256 only if every check passes."""
        try:
            upload = services.materials.upload(sha256, content_type)
            try:
                async for chunk in request.stream():
                    upload.write(chunk)
            except BaseException:
                upload.abort()  # the client went away mid-upload: keep nothing
                raise
            # Off the event loop: the store may put the file to S3, or fsync it.
            size = await run_in_threadpool(upload.commit)
        except MaterialTooLarge as error:
            raise HTTPException(status_code=413, detail=str(error)) from None
        except MaterialRejected as error:
            raise HTTPException(status_code=422, detail=str(error)) from None
        except StoreUnavailable as error:
            raise _unavailable(error) from None
        return {"sha256": sha256, "size": size}

    @app.get("/v1/bundles/{bundle_id}", response_model=BundleStatus, dependencies=BUNDLES_READ)
    def get_bundle(bundle_id: uuid.UUID, services: AppServices) -> BundleStatus:
        with services.database.transaction() as session:
            found = bundle_status(session, bundle_id)
        if found is None:
            raise HTTPException(status_code=404, detail="no such bundle")
        return found

    @app.get(
        "/v1/bundles/{bundle_id}/timeline",
        response_model=list[TimelineEntry],
        dependencies=BUNDLES_READ,
    )
    def get_timeline(bundle_id: uuid.UUID, services: AppServices) -> list[TimelineEntry]:
        with services.database.transaction() as session:
            if session.get(BundleRow, bundle_id) is None:
                raise HTTPException(status_code=404, detail="no such bundle")
            return bundle_timeline(session, bundle_id)

    @app.get("/v1/bundles/{bundle_id}/reply", response_model=BundleReply, dependencies=BUNDLES_READ)
    def get_reply(bundle_id: uuid.UUID, services: AppServices) -> BundleReply:
        with services.database.transaction() as session:
            reply = bundle_reply(session, bundle_id)
            known = session.get(BundleRow, bundle_id) is not None
        if reply is None:
            detail = "the bundle is still in progress" if known else "no such bundle"
            raise HTTPException(status_code=404, detail=detail)
        return reply

    @app.get(
        "/v1/bundles/{bundle_id}/files/{sha256}",
        response_class=StreamingResponse,
        dependencies=FILES_READ,
        responses={
            200: {
                "description": "The file, as its own media type",
                "content": {
                    media_type: {"schema": {"type": "string", "format": "binary"}}
                    for media_type in sorted(MATERIAL_MEDIA_TYPES)
                },
            },
            404: {"description": "No such bundle, or the bundle references no such file"},
            503: {"description": "The material store is unavailable; try again later"},
        },
    )
    def get_file(
        bundle_id: uuid.UUID,
        sha256: Annotated[str, Path(pattern=r"^[0-9a-f]{64}$")],
        services: AppServices,
    ) -> StreamingResponse:
        """A file the bundle references: a material of its application, or the file of a
        certificate a department issued (电子证照). Any other digest is a 404."""
        with services.database.transaction() as session:
            ref = bundle_file(session, bundle_id, sha256)
        if ref is None:
            raise HTTPException(status_code=404, detail="the bundle references no such file")
        try:
            chunks = services.materials.stream(sha256)
        except MaterialMissing:
            log.error("materials.referenced_file_missing", bundle_id=str(bundle_id), sha256=sha256)
            raise HTTPException(status_code=404, detail="the file is no longer stored") from None
        except StoreUnavailable as error:
            raise _unavailable(error) from None
        return StreamingResponse(chunks, media_type=ref.media_type, headers=_file_headers(ref))

    @app.post(
        "/v1/bundles/{bundle_id}/withdraw",
        response_model=BundleReply,
        dependencies=BUNDLES_WRITE,
        responses={409: {"description": "The bundle was already answered"}},
    )
    def withdraw_bundle(
        bundle_id: uuid.UUID, services: AppServices, body: Withdrawal | None = None
    ) -> BundleReply:
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

    @app.post(
        "/v1/bundles/{bundle_id}/items/{item}/corrections",
        response_model=BundleStatus,
        dependencies=BUNDLES_WRITE,
        status_code=status.HTTP_202_ACCEPTED,
        responses={
            404: {"description": "No such bundle or item"},
            409: {"description": "The item's department has not asked for a correction"},
            422: {"model": OneTimeNotice, "description": "A material was not uploaded"},
        },
    )
    def submit_correction(
        bundle_id: uuid.UUID, item: str, body: Correction, services: AppServices
    ) -> BundleStatus | JSONResponse:
        """补齐补正: resubmit what the department asked for; the item resumes at the same
        department without a second filing."""
        problems = list(
            material_problems(
                [material.model_dump() for material in body.materials], services.materials.exists
            )
        )
        if problems:
            return _notice(*problems)
        result = resubmit(services.database, bundle_id, item, body.materials)
        if result is Resubmitted.UNKNOWN:
            raise HTTPException(status_code=404, detail="no such bundle or item")
        if result is Resubmitted.NOT_REQUESTED:
            raise HTTPException(status_code=409, detail=f"no correction of {item} is awaited")
        services.on_commit()
        return get_bundle(bundle_id, services)

    @app.get("/v1/catalog", response_model=Catalog, dependencies=BUNDLES_READ)
    def get_catalog(catalog: AppCatalog) -> Catalog:
        return catalog

    @app.get("/healthz")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    # The body is read raw (to report every problem at once), so register its schema
    # for the OpenAPI document explicitly.
    app.include_router(manual_routes)
    app.include_router(ops_routes)
    _register_schema(app, Application)
    answer_refusals_as_notices(app)
    app.state.services = services
    app.state.catalog = catalog
    app.state.api_tokens = services.api_tokens if services else ()
    return app


def _unavailable(error: StoreUnavailable) -> HTTPException:
    log.warning("materials.store_unavailable", error=str(error)[:500])
    return HTTPException(
        status_code=503, detail="the material store is unavailable", headers={"Retry-After": "5"}
    )


def _file_headers(ref: MaterialRef) -> dict[str, str]:
    # RFC 6266: an ASCII stand-in and the real (often Chinese) name percent-encoded, so no
    # file name can break out of the header or pass for another media type.
    fallback = "".join(
        c if c.isascii() and c.isprintable() and c not in '"\\' else "_" for c in ref.file_name
    )
    return {
        "Content-Length": str(ref.size),
        "Content-Disposition": f'attachment; filename="{fallback}"; '
        f"filename*=UTF-8''{quote(ref.file_name, safe='')}",
        "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store",  # personal documents: no shared cache keeps a copy
    }


def _notice(*problems: Problem) -> JSONResponse:
    notice = OneTimeNotice(problems=problems)
    return JSONResponse(notice.model_dump(mode="json"), status_code=422)


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
