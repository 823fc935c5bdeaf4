"""The certificate library's plugin seam: what a connector implements, and what every
connector shares.

A connector answers three questions, one call each (`lookup`, `held_by`, `download`);
the base class asks many at once on a bounded pool of its own, so one application
citing ten licences waits about one call's time, and all applications together never
hold more than `concurrency` calls to the library. Every call is bounded by the
connector's timeout: a library that does not answer costs an application seconds, never
the API's threads. Any failure is `CertificateLibraryUnavailable`.

The router uses a connector through its own port (`router.domain.evidence.LicenceSource`);
it never imports this package.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from importlib.metadata import entry_points
from typing import TypeVar

from contracts.errors import CertificateLibraryUnavailable, ConfigurationError
from contracts.licences import LicenceRecord

ENTRY_POINT_GROUP = "lianban.certificate_libraries"
_T = TypeVar("_T")
_R = TypeVar("_R")


class CertificateLibrary(ABC):
    """A certificate library (电子证照库) as Lianban asks it."""

    def __init__(self, url: str, *, timeout: float = 3.0, concurrency: int = 8) -> None:
        self.url = url
        self.timeout = timeout
        self.concurrency = concurrency
        self._pool = ThreadPoolExecutor(concurrency, thread_name_prefix="certificate-library")

    @abstractmethod
    def lookup(self, type_code: str, number: str) -> LicenceRecord | None:
        """The licence of this type and number, or None when the library has none."""

    @abstractmethod
    def held_by(self, holder_id: str, type_code: str) -> list[LicenceRecord]:
        """Every licence of this type the holder has (共享数据: asked by holder)."""

    @abstractmethod
    def download(self, record: LicenceRecord) -> bytes:
        """The licence's file."""

    def lookup_all(self, keys: Sequence[tuple[str, str]]) -> list[LicenceRecord | None]:
        return self._all(lambda key: self.lookup(*key), keys)

    def download_all(self, records: Sequence[LicenceRecord]) -> list[bytes]:
        return self._all(self.download, records)

    def _all(self, call: Callable[[_T], _R], arguments: Sequence[_T]) -> list[_R]:
        futures = [self._pool.submit(call, argument) for argument in arguments]
        try:
            # Each call is bounded by the timeout; the margin covers waiting for the pool.
            return [future.result(timeout=self.timeout * 2 + 1) for future in futures]
        except TimeoutError as error:
            raise CertificateLibraryUnavailable(f"{self.url} did not answer in time") from error

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


def certificate_library(
    plugin: str, url: str, *, timeout: float, concurrency: int
) -> CertificateLibrary:
    """The installed connector named `plugin`, pointed at `url`."""
    found = {entry.name: entry for entry in entry_points(group=ENTRY_POINT_GROUP)}
    if plugin not in found:
        known = ", ".join(sorted(found)) or "none"
        raise ConfigurationError(
            f"no certificate-library connector {plugin!r} is installed (installed: {known})"
        )
    cls = found[plugin].load()
    if not (isinstance(cls, type) and issubclass(cls, CertificateLibrary)):
        raise ConfigurationError(f"{found[plugin].value} is not a CertificateLibrary subclass")
    library: CertificateLibrary = cls(url, timeout=timeout, concurrency=concurrency)
    return library
