"""Materials in an S3-compatible bucket: `s3://bucket/prefix` → `<prefix>/<2 hex>/<sha256>`.

An upload is spooled to a local temporary file while it is hashed and checked
(`runtime.storage.base`), and put to its final key only after every check passed
(multipart above 8 MiB): a refused upload never reaches the bucket, and a reader never
sees part of an object. Credentials come from boto3's usual chain (AWS_ACCESS_KEY_ID,
AWS_SECRET_ACCESS_KEY, AWS_SESSION_TOKEN, …), never from the URL, which says where:

    s3://bucket/prefix?endpoint_url=http://127.0.0.1:9000&region=cn-north-1&addressing_style=path
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Literal
from urllib.parse import parse_qsl, urlsplit

import boto3
from boto3.exceptions import S3UploadFailedError
from botocore.config import Config
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError
from botocore.response import StreamingBody

from contracts.errors import ConfigurationError, MaterialMissing, StoreUnavailable
from runtime.storage.base import CHUNK_BYTES, MaterialStore, MaterialUpload, check_digest

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

URL_OPTIONS = {
    "endpoint_url": "the S3 API of a store other than AWS (MinIO, Ceph RGW, OSS, OBS, …)",
    "region": "the region requests are signed for",
    "addressing_style": "path, virtual or auto (the default)",
}
AddressingStyle = Literal["auto", "virtual", "path"]
ADDRESSING_STYLES: tuple[AddressingStyle, ...] = ("auto", "virtual", "path")


class S3MaterialStore(MaterialStore):
    def __init__(
        self, client: S3Client, bucket: str, prefix: str = "", spool_dir: Path | None = None
    ) -> None:
        self._client = client
        self._bucket = bucket
        self._prefix = f"{prefix.strip('/')}/" if prefix.strip("/") else ""
        self._spool_dir = spool_dir or Path(tempfile.gettempdir())

    @classmethod
    def from_url(cls, url: str, spool_dir: Path | None = None) -> S3MaterialStore:
        parts = urlsplit(url)
        options = dict(parse_qsl(parts.query))
        style = options.get("addressing_style", "auto")
        if (
            parts.scheme != "s3"
            or not parts.netloc
            or "@" in parts.netloc
            or set(options) - set(URL_OPTIONS)
            or style not in ADDRESSING_STYLES
        ):
            usage = "; ".join(f"{name}: {meaning}" for name, meaning in URL_OPTIONS.items())
            raise ConfigurationError(
                f"materials URL {url!r}: write s3://bucket/prefix?option=value ({usage}); "
                "credentials come from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY"
            )
        client = boto3.client(
            "s3",
            endpoint_url=options.get("endpoint_url"),
            region_name=options.get("region"),
            config=Config(
                connect_timeout=5,
                read_timeout=60,
                retries={"mode": "standard", "max_attempts": 3},
                s3={"addressing_style": next(s for s in ADDRESSING_STYLES if s == style)},
            ),
        )
        return cls(client, parts.netloc, parts.path, spool_dir)

    def upload(self, sha256: str, media_type: str) -> MaterialUpload:
        key = self._key(sha256)

        def put_to_final_key(spooled: str) -> None:
            with _translated():
                self._client.upload_file(
                    spooled, self._bucket, key, ExtraArgs={"ContentType": media_type}
                )

        return MaterialUpload(sha256, media_type, str(self._spool_dir), put_to_final_key)

    def exists(self, sha256: str, size: int) -> bool:
        with _translated():
            try:
                head = self._client.head_object(Bucket=self._bucket, Key=self._key(sha256))
            except ClientError as error:
                if _status(error) == 404:
                    return False
                raise
        return head["ContentLength"] == size

    def stream(self, sha256: str) -> Iterator[bytes]:
        with _translated():
            try:
                answer = self._client.get_object(Bucket=self._bucket, Key=self._key(sha256))
            except ClientError as error:
                if _status(error) == 404:
                    raise MaterialMissing(
                        f"nothing is stored under {sha256} in s3://{self._bucket}/{self._prefix}"
                    ) from None
                raise
        return _chunks(answer["Body"])

    def stored_files(self) -> list[PurePosixPath]:
        """Objects under the prefix, and multipart uploads begun there but never finished."""
        bucket, prefix = self._bucket, self._prefix
        with _translated():
            objects = [
                entry["Key"]
                for page in self._client.get_paginator("list_objects_v2").paginate(
                    Bucket=bucket, Prefix=prefix
                )
                for entry in page.get("Contents", ())
            ]
            unfinished = [
                entry["Key"]
                for page in self._client.get_paginator("list_multipart_uploads").paginate(
                    Bucket=bucket, Prefix=prefix
                )
                for entry in page.get("Uploads", ())
            ]
        return sorted(PurePosixPath(key.removeprefix(self._prefix)) for key in objects + unfinished)

    def _key(self, sha256: str) -> str:
        return f"{self._prefix}{check_digest(sha256)[:2]}/{sha256}"


def _chunks(body: StreamingBody) -> Iterator[bytes]:
    with closing(body):
        yield from body.iter_chunks(CHUNK_BYTES)


def _status(error: ClientError) -> int:
    return int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0))


@contextmanager
def _translated() -> Iterator[None]:
    """Trouble reaching the store, or on its side (5xx), becomes StoreUnavailable, which
    is retried; the rest (no such bucket, no permission) is wrong configuration and stays
    as it is."""
    try:
        yield
    except (BotoConnectionError, HTTPClientError) as error:
        raise StoreUnavailable(f"the S3 store cannot be reached: {error}") from error
    except (ClientError, S3UploadFailedError) as error:
        # upload_file wraps the ClientError it met (as the context, not the cause).
        answer = error if isinstance(error, ClientError) else error.__context__
        if isinstance(answer, ClientError) and _status(answer) < 500:
            raise
        raise StoreUnavailable(f"the S3 store failed: {error}") from error
