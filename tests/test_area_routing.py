"""An item goes to its department's adapter for the level and area that decide it, and an
application with an item no adapter serves is refused at intake.

Embedded (memory://, SQLite) and connected (RabbitMQ, PostgreSQL): the relay publishes
through the declared topology, and the test reads the area queues themselves.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from harness import eventually, new_project_no
from kombu import Message

from contracts.catalog import Catalog
from contracts.errors import ConfigurationError
from contracts.samples import SAMPLE_PDF, sample_application
from lianban.settings import Settings
from lianban.stack import Role, Stack
from router.domain.intake import Intake, ProblemsFound, Received
from router.domain.routing import AdapterAreas
from router.operations.broker_definitions import definitions
from router.store import Database
from runtime.messaging import Broker
from runtime.messaging.declaration import department_queue
from runtime.storage import LocalMaterialStore

ZHENGZHOU_AREA = "410102"  # 郑州市中原区
WEIBIN_AREA = "410703"  # 新乡市卫滨区
# Agriculture runs one adapter for Zhengzhou's offices and one for the rest of Henan.
AREAS = {"agriculture_rural": ["41", "4101"]}


def _application(catalog: Catalog, area: str) -> dict[str, Any]:
    view = catalog.for_area(area)
    assert view is not None
    application = sample_application(view.bundle_types["open_feed_mill"], new_project_no())
    application["area_code"] = area
    return application


@pytest.fixture
def relaying(settings: Settings, catalog: Catalog) -> Iterator[Stack]:
    """Intake and the outbox relay, agriculture routed by area; nothing consumes."""
    stack = Stack(settings.model_copy(update={"adapter_areas": AREAS}), catalog, {Role.RELAY})
    stack.start()
    stack.materials.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    try:
        yield stack
    finally:
        stack.stop()


def _drain(broker: Broker, department: str, area: str | None) -> list[Message]:
    with broker.connect() as connection:
        queue = department_queue(department, area=area, declare=False)(connection.default_channel)
        messages = []
        while (message := queue.get(no_ack=True)) is not None:
            messages.append(message)
        return messages


def _routed(broker: Broker, department: str, area: str | None, count: int) -> list[tuple[str, str]]:
    """(item, routing key) of the first `count` messages to reach that queue."""
    got: list[Message] = []
    eventually(
        lambda: got.extend(_drain(broker, department, area)) or got,
        lambda messages: len(messages) >= count,
        timeout=30,
        message=f"{department} {area}: fewer than {count} messages",
    )
    return sorted((json.loads(m.body)["item"], m.delivery_info["routing_key"]) for m in got)


def test_the_same_bundle_type_reaches_each_areas_adapter_at_its_level(
    relaying: Stack, catalog: Catalog
) -> None:
    for area in (ZHENGZHOU_AREA, WEIBIN_AREA):
        application = _application(catalog, area)
        assert isinstance(relaying.intake.submit(application, application["project_no"]), Received)

    # Zhengzhou decides the feed-mill approval at 市级 (seed 001), so Zhengzhou's adapter
    # gets it, with the medicated-feed recognition it pre-reviews (容缺预审).
    zhengzhou = dict(_routed(relaying.broker, "agriculture_rural", "4101", 2))
    assert zhengzhou == {
        "feed_production_approval": "dept.agriculture_rural.4101.city."
        "feed_production_enterprise_approval",
        "medicated_feed_recognition": "dept.agriculture_rural.4101.city."
        "medicated_feed_enterprise_recognition",
    }
    # 卫滨区 has the provincial definition: 省级, so the province's adapter.
    province = dict(_routed(relaying.broker, "agriculture_rural", "41", 2))
    assert province["feed_production_approval"] == (
        "dept.agriculture_rural.41.province.feed_production_enterprise_approval"
    )
    # A department without areas: one province-wide queue, the route still in the key.
    environment = _routed(relaying.broker, "ecology_environment", None, 2)
    assert environment == [
        ("eia_approval", "dept.ecology_environment.410102.county.eia_approval_report_form"),
        ("eia_approval", "dept.ecology_environment.410703.county.eia_approval_report_form"),
    ]


@pytest.fixture
def materials(tmp_path: Path) -> LocalMaterialStore:
    store = LocalMaterialStore(tmp_path / "materials")
    store.put(hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf")
    return store


def test_an_item_no_adapter_serves_is_refused_at_intake(
    database: Database, catalog: Catalog, materials: LocalMaterialStore
) -> None:
    """Only Zhengzhou's agriculture adapter is deployed: 卫滨区's feed mill, decided by the
    province, has nowhere to go."""
    intake = Intake(
        database, catalog, materials, adapter_areas=AdapterAreas({"agriculture_rural": ["4101"]})
    )
    application = _application(catalog, WEIBIN_AREA)
    refused = intake.submit(application, application["project_no"])
    assert isinstance(refused, ProblemsFound)
    problems = {(p.pointer, p.code) for p in refused.notice.problems}
    assert problems == {(f"/items/{i}", "area_not_served") for i in range(3)}
    assert "省级农业农村部门（行政区划 41）" in refused.notice.problems[0].message_zh

    # In Zhengzhou only the 委托生产备案 is 省级: without it, everything is served there.
    served = _application(catalog, ZHENGZHOU_AREA)
    served["items"].remove("entrusted_production_filing")
    assert isinstance(intake.submit(served, served["project_no"]), Received)


def test_a_department_user_reads_its_area_queues_and_no_other() -> None:
    document = definitions(["agriculture_rural", "police"], areas=AREAS)
    reads = {p["user"]: p["read"] for p in document["permissions"]}
    assert reads["lianban-agriculture_rural"] == (
        r"^(lianban\.dept\.agriculture_rural\.41|lianban\.dept\.agriculture_rural\.4101)$"
    )
    assert reads["lianban-police"] == r"^(lianban\.dept\.police)$"
    bound = {b["destination"]: b["routing_key"] for b in document["bindings"]}
    assert bound["lianban.dept.agriculture_rural.4101"] == "dept.agriculture_rural.4101.#"


def test_an_adapter_must_serve_an_area_the_router_routes_by(
    settings: Settings, catalog: Catalog
) -> None:
    from adapters.simulated import simulated_adapter

    adapter = simulated_adapter("agriculture_rural", catalog)
    stack = Stack(settings.model_copy(update={"adapter_areas": AREAS}), catalog, (), [adapter])
    with pytest.raises(ConfigurationError, match="--area"):
        stack.start()
