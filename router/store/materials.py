"""The router's side of materials: the store its settings choose, and which stored files
a bundle may hand out.

The store itself (the checks every upload passes, a local directory, an S3 bucket) is
`runtime.storage`, where adapter processes reach it too.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from contracts.application import MaterialRef
from lianban.settings import Settings
from router.domain.progress import certificates_of
from router.store import BundleRow
from runtime.storage import LocalMaterialStore, MaterialStore, open_store


def material_store(settings: Settings) -> MaterialStore:
    """LIANBAN_MATERIALS_URL when it is set (s3://… or file://…), else the local
    LIANBAN_MATERIALS_DIR."""
    if settings.materials_url:
        return open_store(settings.materials_url)
    return LocalMaterialStore(settings.materials_dir)


def bundle_file(session: Session, bundle_id: uuid.UUID, sha256: str) -> MaterialRef | None:
    """The file `sha256` as the bundle references it: a material of its application
    (corrections included) or the file of a certificate one of its items was decided
    with. None when the bundle references no such file: a digest alone opens nothing."""
    bundle = session.get(BundleRow, bundle_id)
    if bundle is None:
        return None
    materials = (MaterialRef.model_validate(raw) for raw in bundle.application["materials"])
    certificates = (
        certificate.file
        for item in bundle.items
        for certificate in certificates_of(item)
        if certificate.file is not None
    )
    return next((ref for ref in (*materials, *certificates) if ref.sha256 == sha256), None)
