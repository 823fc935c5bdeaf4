"""The routers of router/http/ are module-level and shared by every app built in a
process: each app serves its own catalog and services, read from its `app.state`."""

from __future__ import annotations

import re
from pathlib import Path

import httpx
from harness import AUTH, TEST_API_TOKEN

from contracts.catalog import Catalog
from lianban.stack import Stack
from router.domain.intake import Intake
from router.http.app import create_app
from router.http.auth import fixed_tokens
from router.http.services import Services
from router.store import Database
from runtime.serving import ThreadedServer
from runtime.storage import LocalMaterialStore


def _services(directory: Path, catalog: Catalog) -> Services:
    database = Database(f"sqlite:///{directory / 'lianban.db'}")
    database.migrate()
    materials = LocalMaterialStore(directory / "materials")
    return Services(
        database,
        Intake(database, catalog, materials),
        materials,
        api_tokens=fixed_tokens((TEST_API_TOKEN,)),
    )


def test_two_apps_in_one_process_each_serve_their_own_catalog_and_services(
    tmp_path: Path, catalog: Catalog
) -> None:
    newborn_only = catalog.model_copy(
        update={"bundle_types": {"newborn": catalog.bundle_types["newborn"]}}
    )
    (tmp_path / "full").mkdir()
    (tmp_path / "newborn").mkdir()
    servers = [
        ThreadedServer(create_app(catalog, _services(tmp_path / "full", catalog))),
        ThreadedServer(create_app(newborn_only, _services(tmp_path / "newborn", newborn_only))),
    ]
    for server in servers:
        server.start()
    try:
        full, newborn = (
            httpx.get(f"{server.url}/v1/catalog", headers=AUTH).json() for server in servers
        )
        submitted = httpx.post(
            f"{servers[1].url}/v1/bundles",
            json={"bundle_type": "marriage_and_childbirth"},
            headers={**AUTH, "Idempotency-Key": "HTTPAPP0001"},
        )
    finally:
        for server in servers:
            server.stop()
    assert full["bundle_types"].keys() == catalog.bundle_types.keys()
    assert full["services"]["real_estate_query"]["handling_class"] == "on_the_spot"
    assert full["services"]["birth_household_registration"]["promise_days"] == 20
    assert list(newborn["bundle_types"]) == ["newborn"]
    # The second app's intake validates against its own catalog.
    assert submitted.status_code == 422
    assert "bundle_type_unknown" in {problem["code"] for problem in submitted.json()["problems"]}


def test_swagger_ui_and_redoc_load_only_from_the_app_itself(intake_only: Stack) -> None:
    """No CDN: on an offline government network /docs and /redoc still work."""
    for page in ("/docs", "/redoc"):
        html = httpx.get(intake_only.base_url + page).text
        sources = re.findall(r"""(?:src|href)\s*=\s*["']([^"']+)""", html)
        sources += re.findall(r"""url:\s*'([^']+)'""", html)  # swagger's openapi url
        assert sources, page
        assert all(s.startswith("/") for s in sources), (page, sources)
        for asset in sources:
            assert httpx.get(intake_only.base_url + asset).status_code == 200, asset
