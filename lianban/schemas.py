"""Generates the checked-in contract documents in `contracts/schemas/`.

JSON Schema for every message and document, each bundle type's one form (一表申请,
`forms/<bundle type>.schema.json`), the intake API's OpenAPI document and an AsyncAPI 3
document of the exchanges, queues and messages. A test regenerates them and
fails when the checked-in copies are stale (`make schemas` refreshes them).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import BaseModel

import contracts
from contracts import topology
from contracts.api import BundleStatus, IntakeReceipt, OneTimeNotice
from contracts.application import Application
from contracts.catalog import Catalog
from contracts.catalog.checklist import form_schema
from contracts.messages import (
    AcceptanceNotice,
    BundleReply,
    ItemCancel,
    ItemDispatch,
    ItemOutcome,
    ItemPoll,
    ItemSupplement,
    ItemTrouble,
)

SCHEMA_DIR = Path(contracts.__file__).parent / "schemas"

DOCUMENT_MODELS: tuple[type[BaseModel], ...] = (
    Application,
    IntakeReceipt,
    OneTimeNotice,
    BundleStatus,
    ItemDispatch,
    ItemSupplement,
    ItemPoll,
    ItemCancel,
    ItemOutcome,
    ItemTrouble,
    BundleReply,
    AcceptanceNotice,
    Catalog,
)


def render_documents(catalog: Catalog) -> dict[str, str]:
    """File name → content of every generated document."""
    documents = {
        f"{model.__name__}.schema.json": _dump(model.model_json_schema())
        for model in DOCUMENT_MODELS
    }
    documents.update(
        {
            f"forms/{code}.schema.json": _dump(form_schema(catalog, bundle_type))
            for code, bundle_type in catalog.bundle_types.items()
        }
    )
    documents["openapi.json"] = _dump(_openapi(catalog))
    documents["asyncapi.json"] = _dump(asyncapi(sorted(catalog.departments)))
    return documents


def export(catalog: Catalog, directory: Path = SCHEMA_DIR) -> list[Path]:
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in render_documents(catalog).items():
        path = directory / name
        path.parent.mkdir(exist_ok=True)
        path.write_text(content, encoding="utf-8")
        written.append(path)
    return written


def stale_documents(catalog: Catalog, directory: Path = SCHEMA_DIR) -> list[str]:
    """Names of documents whose checked-in copy differs from what the code generates."""
    return [
        name
        for name, content in render_documents(catalog).items()
        if not (directory / name).is_file()
        or (directory / name).read_text(encoding="utf-8") != content
    ]


def _dump(document: dict[str, Any]) -> str:
    return json.dumps(document, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


def _openapi(catalog: Catalog) -> dict[str, Any]:
    # Build the app without a database: generating the document touches no route.
    from router.http.app import openapi_document

    return openapi_document(catalog)


def asyncapi(departments: list[str]) -> dict[str, Any]:
    """AsyncAPI 3.0: what a department team reads to plug an adapter in."""
    schemas: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    models = (ItemDispatch, ItemSupplement, ItemPoll, ItemCancel, ItemOutcome, ItemTrouble)
    for model in (*models, BundleReply, AcceptanceNotice):
        schema = model.model_json_schema(ref_template="#/components/schemas/{model}")
        schemas.update(schema.pop("$defs", {}))
        schemas[model.__name__] = schema
        messages[model.__name__] = {
            "name": model.__name__,
            "title": model.__name__,
            "summary": (model.__doc__ or "").strip().splitlines()[0],
            "contentType": "application/json",
            "correlationId": {
                "description": "The bundle id",
                "location": "$message.header#/correlation_id",
            },
            "payload": {"$ref": f"#/components/schemas/{model.__name__}"},
        }
    channels: dict[str, Any] = {
        "dispatch": {
            "address": f"{topology.DISPATCH_EXCHANGE} (topic) — routing key "
            "dept.{department}.{service}",
            "description": "Router → department adapters. One durable quorum queue per "
            "department, lianban.dept.{department}, bound with dept.{department}.#; dead "
            "letters go to lianban.dept.{department}.parking.",
            "messages": {
                "ItemDispatch": {"$ref": "#/components/messages/ItemDispatch"},
                "ItemSupplement": {"$ref": "#/components/messages/ItemSupplement"},
                "ItemPoll": {"$ref": "#/components/messages/ItemPoll"},
                "ItemCancel": {"$ref": "#/components/messages/ItemCancel"},
            },
        },
        "outcomes": {
            "address": f"{topology.OUTCOMES_EXCHANGE} (topic) — routing key outcome.{{department}}",
            "description": f"Department adapters → correlator (queue {topology.OUTCOMES_QUEUE}).",
            "messages": {
                "ItemOutcome": {"$ref": "#/components/messages/ItemOutcome"},
                "ItemTrouble": {"$ref": "#/components/messages/ItemTrouble"},
            },
        },
        "replies": {
            "address": f"{topology.REPLIES_EXCHANGE} (topic) — routing key reply.{{bundle_type}}",
            "description": f"The one reply per bundle (queue {topology.REPLIES_QUEUE}); "
            "each 受理 / 不予受理 as it happens, routing key reply.{bundle_type}.acceptance.",
            "messages": {
                "BundleReply": {"$ref": "#/components/messages/BundleReply"},
                "AcceptanceNotice": {"$ref": "#/components/messages/AcceptanceNotice"},
            },
        },
    }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "Lianban messaging",
            "version": contracts.SCHEMA_VERSION,
            "description": "Exchanges, queues and messages between the Lianban router and "
            "department adapters. Messages are persistent JSON with message_id (the "
            "deduplication key) and correlation_id (the bundle id). Departments: "
            + ", ".join(departments),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": {
            "receiveDispatch": {
                "action": "receive",
                "channel": {"$ref": "#/channels/dispatch"},
                "summary": "An adapter consumes its department's queue",
            },
            "sendOutcome": {
                "action": "send",
                "channel": {"$ref": "#/channels/outcomes"},
                "summary": "An adapter reports accepted/rejected/correction/decided/failed, "
                "and why it has no answer yet (retrying, parked)",
            },
            "receiveReply": {
                "action": "receive",
                "channel": {"$ref": "#/channels/replies"},
                "summary": "The platform may consume bundle replies over AMQP",
            },
        },
        "components": {"schemas": schemas, "messages": messages},
    }
