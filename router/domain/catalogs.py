"""The catalog versions a running router knows: the newest accepts new applications, and
every bundle finishes under the version it was accepted under.

An operator publishes a version by adding a directory to the catalog directory
(LIANBAN_CATALOG_DIR): `<dir>/<version>/` holds a whole data tree (departments.yaml,
time_limits.yaml, bundles/, regions.yaml, regions/), as `contracts/catalog/data/` does.
The watcher (`run`) looks every LIANBAN_CATALOG_CHECK_SECONDS; a new directory that
loads and checks becomes the current version without a restart, and the versions
before it stay loaded, so a bundle in flight still finds the items it was accepted
with (renaming an item no longer leaves a running bundle `in_progress` forever).
Versions are ordered by name: name them so that the newest sorts last
(`2026-12-04.1`). A directory that does not load is logged each round and not published;
nor is one that needs a department the broker topology was not declared with (that
needs a restart, which declares its queue).
"""

from __future__ import annotations

import re
import threading
from pathlib import Path

import structlog

from contracts.catalog import Catalog, load_catalog
from contracts.errors import CatalogError
from router.store.tables import BundleRow

log = structlog.get_logger(__name__)

VERSION_NAME = re.compile(r"^[0-9A-Za-z][0-9A-Za-z._-]{0,63}$")


class UnknownCatalogVersion(LookupError):
    """A bundle names a catalog version this process has not loaded."""


class CatalogShelf:
    def __init__(self, builtin: Catalog, directory: Path | None = None) -> None:
        self._directory = directory
        self._lock = threading.Lock()
        self._versions: dict[str, Catalog] = {builtin.version: builtin}
        self._builtin = builtin
        self._current = builtin
        self._departments = frozenset(builtin.departments)
        self.refresh()

    def current(self) -> Catalog:
        """The version new applications are accepted under."""
        return self._current

    @property
    def versions(self) -> list[str]:
        return list(self._versions)

    def version(self, name: str | None) -> Catalog:
        """A loaded version by name; None (a bundle older than versions) is the built-in."""
        if name is None:
            return self._builtin
        try:
            return self._versions[name]
        except KeyError:
            raise UnknownCatalogVersion(
                f"catalog version {name!r} is not loaded (loaded: {', '.join(self._versions)}); "
                "put its directory back into the catalog directory"
            ) from None

    def for_bundle(self, bundle: BundleRow) -> Catalog:
        """The catalog view `bundle` was accepted under, which it finishes under."""
        catalog = self.version(bundle.catalog_version)
        if bundle.catalog_region is not None:
            return catalog.for_region(bundle.catalog_region)
        return catalog.for_area(str(bundle.application.get("area_code", ""))) or catalog

    def refresh(self) -> list[str]:
        """Load version directories not loaded yet; return the names newly published."""
        if self._directory is None or not self._directory.is_dir():
            return []
        published: list[str] = []
        with self._lock:
            for path in sorted(self._directory.iterdir()):
                name = path.name
                if not path.is_dir() or name in self._versions or name.startswith("."):
                    continue
                try:
                    catalog = self._load(path)
                except CatalogError as error:
                    log.error("catalog.version_refused", version=name, error=str(error))
                    continue
                self._versions[name] = catalog
                published.append(name)
            newest = max(
                (name for name in self._versions if name != self._builtin.version),
                default=None,
            )
            if newest is not None and self._current.version != newest:
                self._current = self._versions[newest]
                log.info("catalog.published", version=newest, loaded=list(self._versions))
        return published

    def run(self, stop: threading.Event, every_seconds: float) -> None:
        while not stop.wait(every_seconds):
            try:
                self.refresh()
            except OSError as error:
                log.error("catalog.directory_unreadable", error=str(error))

    def _load(self, path: Path) -> Catalog:
        if not VERSION_NAME.match(path.name):
            raise CatalogError(
                f"{path.name!r} is not a version name: letters, digits, '.', '_' and '-' only"
            )
        catalog = load_catalog(path, version=path.name)
        undeclared = sorted(set(catalog.departments) - self._departments)
        if undeclared:
            raise CatalogError(
                f"version {path.name!r} adds department(s) {undeclared}, whose queues were not "
                "declared: restart the router to publish it"
            )
        return catalog


def shelf_of(catalog: Catalog | CatalogShelf) -> CatalogShelf:
    """A shelf as given, or one holding a single catalog (tests, tools, the demo)."""
    return catalog if isinstance(catalog, CatalogShelf) else CatalogShelf(catalog)
