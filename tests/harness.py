"""Runs the whole stack inside a test and talks to it over its real HTTP API."""

from __future__ import annotations

import hashlib
import socket
import time
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import httpx

from adapters.base import Adapter
from adapters.registry import simulate_every_department
from adapters.simulated import DecisionLedger, Scenario
from contracts.catalog import Catalog
from contracts.samples import SAMPLE_PDF
from router.settings import Settings
from router.stack import Role, Stack


@dataclass
class Running:
    stack: Stack
    client: httpx.Client
    ledger: DecisionLedger

    def submit(self, application: dict[str, Any]) -> httpx.Response:
        return self.client.post(
            "/v1/bundles", json=application, headers={"Idempotency-Key": application["project_no"]}
        )

    def wait_for_reply(self, reply_url: str, timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            response = self.client.get(reply_url)
            if response.status_code == 200:
                reply: dict[str, Any] = response.json()
                return reply
            time.sleep(0.02)
        raise AssertionError(f"no reply at {reply_url} within {timeout} s")

    def wait_for_item(self, status_url: str, item: str, state: str, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            items = {i["item"]: i["state"] for i in self.client.get(status_url).json()["items"]}
            if items[item] == state:
                return
            time.sleep(0.02)
        raise AssertionError(f"{item} never reached {state}")


@contextmanager
def running_stack(
    settings: Settings,
    catalog: Catalog,
    scenario: Scenario | None = None,
    adapters: Sequence[Adapter] = (),
) -> Iterator[Running]:
    """Every role, the given adapters, and a simulator for every other department."""
    ledger = DecisionLedger()
    simulators = simulate_every_department(
        catalog, scenario, ledger, except_for=[adapter.department for adapter in adapters]
    )
    stack = Stack(settings, catalog, set(Role), [*adapters, *simulators])
    stack.start()
    try:
        with httpx.Client(base_url=stack.base_url, timeout=30) as client:
            client.put(
                f"/v1/materials/{hashlib.sha256(SAMPLE_PDF).hexdigest()}",
                content=SAMPLE_PDF,
                headers={"Content-Type": "application/pdf"},
            ).raise_for_status()
            yield Running(stack, client, ledger)
    finally:
        stack.stop()


def put_material(
    stack: Stack, digest: str, content: bytes | Iterator[bytes], media_type: str
) -> httpx.Response:
    """Upload a material (or anything claiming to be one) to a running intake API."""
    return httpx.put(
        f"{stack.base_url}/v1/materials/{digest}",
        content=content,
        headers={"Content-Type": media_type},
        timeout=60,
    )


def new_project_no() -> str:
    return f"T{uuid.uuid4().hex[:20].upper()}"


def free_port() -> int:
    """A port that was free a moment ago, for a server whose URL must be known before it starts."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port
