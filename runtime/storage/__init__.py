"""Content-addressed storage for electronic materials (claim check), for the router and
for adapter processes alike: uploads from the platform, files departments issue.

`MaterialStore` is the interface; `LocalMaterialStore` (a directory) and
`S3MaterialStore` (an S3-compatible bucket; needs the `s3` extra) implement it, and
`open_store` picks one from a URL. Errors: `runtime.storage.errors`.
"""

from __future__ import annotations

from pathlib import Path
from urllib.parse import urlsplit
from urllib.request import url2pathname

from contracts.errors import (
    ConfigurationError,
    MaterialCorrupted,
    MaterialError,
    MaterialMissing,
    MaterialRejected,
    MaterialTooLarge,
    StoreUnavailable,
)
from runtime.storage.base import MaterialStore, MaterialUpload
from runtime.storage.local import LocalMaterialStore

__all__ = [
    "LocalMaterialStore",
    "MaterialCorrupted",
    "MaterialError",
    "MaterialMissing",
    "MaterialRejected",
    "MaterialStore",
    "MaterialTooLarge",
    "MaterialUpload",
    "StoreUnavailable",
    "open_store",
]


def open_store(url: str) -> MaterialStore:
    """The store at `url`: `file:///srv/lianban/materials`, or
    `s3://bucket/prefix?endpoint_url=…` (see `runtime.storage.s3`)."""
    parts = urlsplit(url)
    if parts.scheme == "file" and parts.netloc in ("", "localhost"):
        return LocalMaterialStore(Path(url2pathname(parts.path)))
    if parts.scheme == "s3":
        try:
            from runtime.storage.s3 import S3MaterialStore  # boto3 only when S3 is chosen
        except ModuleNotFoundError as error:
            raise ConfigurationError(
                f"materials URL {url!r} needs boto3: pip install 'lianban[s3]'"
            ) from error
        return S3MaterialStore.from_url(url)
    raise ConfigurationError(
        f"materials URL {url!r}: use s3://bucket/prefix?endpoint_url=… or file:///directory"
    )
