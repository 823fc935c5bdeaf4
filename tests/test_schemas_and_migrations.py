"""Checked-in contract documents are current, and migrations build exactly the models' schema."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory

from contracts.catalog import Catalog
from lianban.schemas import SCHEMA_DIR, stale_documents
from router.store import Base, Database
from router.store.engine import MIGRATIONS, SCHEMA_REVISION


def test_checked_in_schemas_are_current(catalog: Catalog) -> None:
    stale = stale_documents(catalog)
    assert not stale, f"regenerate with `make schemas`: {stale}"


def test_the_asyncapi_document_names_every_department_queue_and_message(catalog: Catalog) -> None:
    document = json.loads((SCHEMA_DIR / "asyncapi.json").read_text(encoding="utf-8"))
    assert document["asyncapi"].startswith("3.")
    assert set(document["components"]["messages"]) == {
        "ItemDispatch",
        "ItemSupplement",
        "ItemPoll",
        "ItemCancel",
        "ItemOutcome",
        "ItemTrouble",
        "BundleReply",
        "AcceptanceNotice",
    }
    for department in catalog.departments:
        assert department in document["info"]["description"]


def test_the_openapi_document_describes_the_application_body() -> None:
    document = json.loads((SCHEMA_DIR / "openapi.json").read_text(encoding="utf-8"))
    body = document["paths"]["/v1/bundles"]["post"]["requestBody"]["content"]["application/json"]
    assert body["schema"]["$ref"] == "#/components/schemas/Application"
    assert "Application" in document["components"]["schemas"]


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.connected)])
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'migrated.db'}"
    url: str = request.getfixturevalue("postgres_url")
    return url


def test_migrations_match_the_models(database_url: str) -> None:
    database = Database(database_url)
    database.migrate()
    database.migrate()  # a second run is a no-op
    with database.engine.connect() as connection:
        differences = compare_metadata(MigrationContext.configure(connection), Base.metadata)
    assert database.revision() == SCHEMA_REVISION
    database.dispose()
    assert differences == []


def test_the_schema_revision_a_process_checks_is_the_newest_migration() -> None:
    # A process whose database is at SCHEMA_REVISION skips Alembic: a new migration
    # must move it, or no running process would ever apply that migration.
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    assert ScriptDirectory.from_config(config).get_heads() == [SCHEMA_REVISION]
