"""Prometheus metrics move as real bundles flow, embedded and against RabbitMQ + PostgreSQL.

Figures are deltas: the connected database is shared by the session's tests.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import time_machine
from harness import (
    AUTH,
    TEST_API_TOKEN,
    eventually,
    free_port,
    new_project_no,
    put_material,
    running_stack,
)
from prometheus_client.parser import text_string_to_metric_families

from adapters.simulated import Rule, Scenario, Verdict
from adapters.simulators.base import FaultMode
from adapters.simulators.systems import simulated_department_systems
from contracts.catalog import BundleType, Catalog
from contracts.samples import SAMPLE_PDF, full_selection, sample_application
from lianban.settings import Settings
from lianban.stack import Role, Stack
from router.domain.deadlines import DeadlineWatcher
from router.http.auth import Scope, mint

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


def scrape(text: str) -> Samples:
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of `name` over the samples carrying at least `labels`."""
    wanted = set(labels.items())
    return sum(v for (n, have), v in samples.items() if n == name and wanted <= have)


def metrics(client: httpx.Client) -> Samples:
    response = client.get("/metrics")
    response.raise_for_status()
    return scrape(response.text)


def lone_item(bundle_type: BundleType) -> tuple[str, str]:
    """A selected item nothing depends on and that depends on nothing: (code, department)."""
    selected = full_selection(bundle_type)
    needed = {
        code
        for item in selected
        for prerequisite in bundle_type.item(item).prerequisites
        for code in prerequisite.any_of
    }
    for code in selected:
        item = bundle_type.item(code)
        if not item.prerequisites and code not in needed:
            return code, item.department
    raise AssertionError(f"{bundle_type.code} has no independent item")


def test_metrics_move_as_a_bundle_flows(settings: Settings, catalog: Catalog) -> None:
    newborn = catalog.bundle_types["newborn"]
    rejected, rejecting_department = lone_item(newborn)
    scenario = Scenario(rules={rejected: Rule(verdict=Verdict.REJECT)})
    settings = settings.model_copy(update={"outbound_hosts": ("127.0.0.1",)})  # the callback
    with running_stack(settings, catalog, scenario) as running:
        before = metrics(running.client)
        application = sample_application(newborn, new_project_no())
        application["callback_url"] = f"http://127.0.0.1:{free_port()}/nobody-listens"
        receipt = running.submit(application).json()
        reply = running.wait_for_reply(receipt["reply_url"])
        after = eventually(
            lambda: metrics(running.client),
            lambda now: (
                value(now, "lianban_callback_failures_total")
                > value(before, "lianban_callback_failures_total")
            ),
            timeout=60,
            every=0.1,
            message="no callback failure was counted",
        )

    def delta(name: str, **labels: str) -> float:
        return value(after, name, **labels) - value(before, name, **labels)

    approved = [item for item in reply["items"] if item["state"] == "approved"]
    assert [item["item"] for item in reply["items"] if item["state"] == "rejected"] == [rejected]
    assert len(approved) == len(reply["items"]) - 1
    assert delta("lianban_bundles_received_total", bundle_type="newborn") == 1
    assert delta("lianban_bundles_replied_total", bundle_type="newborn") == 1
    assert delta("lianban_items_rejected_total", department=rejecting_department) == 1
    assert delta("lianban_items_rejected_total") == 1
    assert delta("lianban_items_accepted_total") == len(approved)
    assert delta("lianban_items_decided_total", decision="approved") == len(approved)
    assert delta("lianban_items_decided_total", decision="denied") == 0
    assert delta("lianban_items_failed_total") == 0
    assert delta("lianban_item_intake_duration_seconds_count") == len(reply["items"])
    assert delta("lianban_item_decision_duration_seconds_count") == len(approved)
    assert delta("lianban_item_decision_duration_seconds_bucket", le="+Inf") == len(approved)
    department = newborn.item(approved[0]["item"]).department
    assert value(after, "lianban_items_on_time_ratio", department=department) > 0
    assert delta("lianban_callback_failures_total") >= 1
    assert value(after, "lianban_callbacks_undelivered") >= 1
    assert ("lianban_outbox_backlog", frozenset()) in after
    assert ("lianban_dead_letters", frozenset({("queue", "lianban.dept.police.parking")})) in after


def test_overdue_items_are_counted_and_listed(intake_only: Stack, catalog: Catalog) -> None:
    """Nothing answers (intake only), so a watcher ten days ahead finds every dispatched
    item past its acceptance deadline."""
    newborn = catalog.bundle_types["newborn"]
    put_material(
        intake_only, hashlib.sha256(SAMPLE_PDF).hexdigest(), SAMPLE_PDF, "application/pdf"
    ).raise_for_status()
    with httpx.Client(base_url=intake_only.base_url, headers=AUTH) as client:
        application = sample_application(newborn, new_project_no())
        client.post(
            "/v1/bundles", json=application, headers={"Idempotency-Key": application["project_no"]}
        ).raise_for_status()
        before = metrics(client)
        later = datetime.now(UTC) + timedelta(days=10)
        with time_machine.travel(later):
            marked = len(DeadlineWatcher(intake_only.database).run_once(later))
            after = metrics(client)
            listed = client.get("/v1/ops/deadlines").json()

    assert marked > 0
    assert value(before, "lianban_items_overdue_open") == 0
    assert value(after, "lianban_items_overdue_open") == marked
    assert (
        value(after, "lianban_deadline_alerts_total", kind="acceptance", level="missed") == marked
    )
    assert value(after, "lianban_items", state="dispatched") >= marked
    assert value(after, "lianban_items_on_time_ratio") == 0  # nothing decided: no sample
    assert {entry["project_no"] for entry in listed} == {application["project_no"]}
    assert {entry["level"] for entry in listed} == {"missed"}
    assert len(listed) == marked


@pytest.fixture
def two_tokens(tmp_path: Any, catalog: Catalog) -> Iterator[tuple[Stack, str]]:
    """The intake API knowing the tests' token and a platform token without `ops`."""
    platform_token, platform_entry = mint("platform", [Scope.BUNDLES_READ, Scope.BUNDLES_WRITE])
    settings = Settings(
        database_url=f"sqlite:///{tmp_path / 'auth.db'}",
        materials_dir=tmp_path / "materials",
        port=0,
        api_tokens=(TEST_API_TOKEN, platform_entry),
    )
    stack = Stack(settings, catalog, {Role.SERVE})
    stack.start()
    yield stack, platform_token.get_secret_value()
    stack.stop()


@pytest.mark.parametrize(
    "path",
    [
        "/metrics",
        "/v1/ops/departments",
        "/v1/ops/deadlines",
        "/v1/ops/dead-letters",
        "/v1/ops/bundles",
        "/v1/ops/bundle-types",
    ],
)
def test_operator_endpoints_need_the_ops_scope(two_tokens: tuple[Stack, str], path: str) -> None:
    stack, platform_token = two_tokens
    anonymous = httpx.get(f"{stack.base_url}{path}")
    platform = httpx.get(
        f"{stack.base_url}{path}", headers={"Authorization": f"Bearer {platform_token}"}
    )
    replay = httpx.post(
        f"{stack.base_url}/v1/ops/dead-letters/lianban.dept.police.parking/replay",
        json={"message_ids": None},
        headers={"Authorization": f"Bearer {platform_token}"},
    )
    page = httpx.get(f"{stack.base_url}/ops")

    assert anonymous.status_code == 401
    assert platform.status_code == 403
    assert replay.status_code == 403
    assert page.status_code == 200  # the page holds no data; its requests carry the token


def test_a_department_going_down_and_back_shows_in_its_breaker(
    settings: Settings, catalog: Catalog
) -> None:
    """Police's real adapter against its simulator: down, the breaker opens (on the router's
    /metrics, the adapter process's own port and the ops page's JSON); back, it closes."""
    metrics_port = free_port()
    with simulated_department_systems(catalog) as systems:
        adapters = [adapter for adapter, _state in systems.values()]
        for adapter in adapters:
            adapter.breaker_reset_seconds = 0.5  # type: ignore[misc]  # probe soon in tests
        police = systems["police"][1]
        police.set_fault(FaultMode.DOWN)
        local = settings.model_copy(update={"metrics_port": metrics_port})
        with running_stack(local, catalog, adapters=adapters) as running:
            before = metrics(running.client)
            application = sample_application(catalog.bundle_types["newborn"], new_project_no())
            receipt = running.submit(application).json()
            down = eventually(
                lambda: metrics(running.client),
                lambda now: _breaker(now, "police") != "closed",
                timeout=60,
                every=0.1,
                message="police's breaker did not open",
            )
            process = scrape(httpx.get(f"http://127.0.0.1:{metrics_port}/metrics").text)
            page = running.client.get("/v1/ops/departments").json()
            police.set_fault(FaultMode.NONE)
            reply = running.wait_for_reply(receipt["reply_url"])
            back = eventually(
                lambda: metrics(running.client),
                lambda now: _breaker(now, "police") == "closed",
                timeout=60,
                every=0.1,
                message="police's breaker did not close again",
            )

    assert _breaker(before, "police") == "closed"
    assert _breaker(down, "police") in ("open", "half_open")
    assert _breaker(process, "police") in ("open", "half_open")
    assert {row["department"]: row["circuit"] for row in page}["police"] in ("open", "half_open")
    assert reply["outcome"] == "all_approved"
    assert _breaker(back, "police") == "closed"


def _breaker(samples: Samples, department: str) -> str | None:
    states = [
        dict(labels)["state"]
        for (name, labels), v in samples.items()
        if name == "lianban_circuit_breaker_state"
        and dict(labels)["department"] == department
        and v == 1
    ]
    return states[0] if len(states) == 1 else None
