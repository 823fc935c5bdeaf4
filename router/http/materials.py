"""Files, by reference (claim check): the platform uploads materials under their SHA-256
and pulls the files a bundle references, certificates (电子证照) included."""

from __future__ import annotations

import uuid
from typing import Annotated, Any
from urllib.parse import quote

import structlog
from fastapi import APIRouter, Depends, Header, Path, Request, status
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from contracts.application import MATERIAL_MEDIA_TYPES, MaterialRef
from contracts.errors import MaterialMissing, MaterialRejected, MaterialTooLarge, StoreUnavailable
from router.domain.views import bundle_file
from router.http.auth import ApiToken, Scope, require_scope
from router.http.problems import Cause, Refused
from router.http.services import AppServices
from router.store import audit

log = structlog.get_logger(__name__)

material_routes = APIRouter()


@material_routes.put(
    "/v1/materials/{sha256}",
    status_code=status.HTTP_201_CREATED,
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
    uploader: Annotated[ApiToken, Depends(require_scope(Scope.FILES_WRITE))],
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
        raise Refused(Cause.PAYLOAD_TOO_LARGE, str(error)) from None
    except MaterialRejected as error:
        raise Refused(Cause.MATERIAL_REJECTED, str(error)) from None
    except StoreUnavailable as error:
        raise _unavailable(error) from None
    await run_in_threadpool(
        audit.record_alone,
        services.database,
        actor=uploader.actor,
        event=audit.AuditEvent.UPLOADED,
        outcome="stored",
        message_id=sha256,
        detail=f"{size} bytes, {content_type}",
    )
    return {"sha256": sha256, "size": size}


@material_routes.get(
    "/v1/bundles/{bundle_id}/files/{sha256}",
    response_class=StreamingResponse,
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
    reader: Annotated[ApiToken, Depends(require_scope(Scope.FILES_READ))],
) -> StreamingResponse:
    """A file the bundle references: a material of its application, or the file of a
    certificate a department issued (电子证照). Any other digest is a 404."""
    with services.database.transaction() as session:
        ref = bundle_file(session, bundle_id, sha256)
        audit.record(
            session,
            actor=reader.actor,
            event=audit.AuditEvent.PULLED,
            outcome="found" if ref is not None else "not_found",
            bundle_id=bundle_id,
            message_id=sha256,
        )
    if ref is None:
        raise Refused(Cause.FILE_NOT_FOUND, "the bundle references no such file")
    try:
        chunks = services.materials.stream(sha256)
    except MaterialMissing:
        log.error("materials.referenced_file_missing", bundle_id=str(bundle_id), sha256=sha256)
        raise Refused(Cause.FILE_NOT_FOUND, "the file is no longer stored") from None
    except StoreUnavailable as error:
        raise _unavailable(error) from None
    return StreamingResponse(chunks, media_type=ref.media_type, headers=_file_headers(ref))


def _unavailable(error: StoreUnavailable) -> Refused:
    log.warning("materials.store_unavailable", error=str(error)[:500])
    return Refused(
        Cause.STORE_UNAVAILABLE, "the material store is unavailable", {"Retry-After": "5"}
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
