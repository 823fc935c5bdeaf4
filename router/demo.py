"""The embedded demo: everything in one process on kombu's in-memory transport and SQLite.

It submits three bundles over the real HTTP API (a newborn, a citizen's after-death
matters and an enterprise opening). The installed department adapters (police, hrss,
medical insurance, housing fund) call their department simulators over loopback SOAP
and REST; every other department is simulated in process. It prints each bundle's one
reply and its item timeline.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import httpx

from adapters.base import Adapter
from adapters.registry import simulate_every_department
from adapters.testing.systems import simulated_department_systems
from contracts.catalog import Catalog, default_catalog
from contracts.samples import SAMPLE_PDF, sample_application
from router.logs import configure_logging
from router.settings import Settings
from router.stack import Role, Stack

DEMO_BUNDLES = ("newborn", "citizen_after_death", "enterprise_establishment")


def embedded_stack(workdir: Path, catalog: Catalog, adapters: Sequence[Adapter] = ()) -> Stack:
    """Every role, the given adapters and a simulator for every other department, in this
    process, with no server."""
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'lianban.db'}",
        broker_url="memory://",
        materials_dir=workdir / "materials",
        port=0,
    )
    simulators = simulate_every_department(
        catalog, except_for=[adapter.department for adapter in adapters]
    )
    return Stack(settings, catalog, set(Role), [*adapters, *simulators])


def run_demo() -> int:
    configure_logging("warning")
    catalog = default_catalog()
    with (
        tempfile.TemporaryDirectory(prefix="lianban-demo-") as workdir,
        simulated_department_systems(catalog) as systems,
    ):
        real = [adapter for adapter, _state in systems.values()]
        print(
            "real adapters against their department simulators: "
            + (", ".join(sorted(systems)) or "none installed")
        )
        stack = embedded_stack(Path(workdir), catalog, real)
        stack.start()
        try:
            with httpx.Client(base_url=stack.base_url, timeout=10) as client:
                upload = client.put(
                    f"/v1/materials/{hashlib.sha256(SAMPLE_PDF).hexdigest()}",
                    content=SAMPLE_PDF,
                    headers={"Content-Type": "application/pdf"},
                )
                upload.raise_for_status()
                for number, code in enumerate(DEMO_BUNDLES, start=1):
                    _submit_and_print(client, catalog, code, number)
        finally:
            stack.stop()
    return 0


def _submit_and_print(client: httpx.Client, catalog: Catalog, code: str, number: int) -> None:
    bundle_type = catalog.bundle_types[code]
    project_no = f"DEMO{time.strftime('%Y%m%d')}{number:04d}"
    application = sample_application(bundle_type, project_no, sequence=number)
    response = client.post("/v1/bundles", json=application, headers={"Idempotency-Key": project_no})
    response.raise_for_status()
    receipt = response.json()
    print(f"\n=== {bundle_type.name_zh} ({code}) — 办件编号 {project_no}")
    print(f"收件回执 receipt: bundle {receipt['bundle_id']} at {receipt['received_at']}")
    reply = _wait_for_reply(client, receipt["reply_url"])
    print(f"答复 reply: {reply['outcome']}")
    for item in reply["items"]:
        certificates = ", ".join(c["certificate_number"] for c in item["certificates"])
        print(f"  {item['state']:<10} {item['name_zh']} [{item['department']}] {certificates}")
    status = client.get(receipt["status_url"]).json()
    print("时间线 timeline:")
    start = status["timeline"][0]["at"]
    for event in status["timeline"]:
        offset = _milliseconds_between(start, event["at"])
        print(f"  +{offset:>6.1f} ms  {event['state']:<12} {event['item'] or '(bundle)'}")


def _wait_for_reply(client: httpx.Client, reply_url: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(reply_url)
        if response.status_code == 200:
            return response.json()
        time.sleep(0.05)
    raise TimeoutError(f"no reply at {reply_url} within {timeout} s")


def _milliseconds_between(start: str, end: str) -> float:
    from datetime import datetime

    return (datetime.fromisoformat(end) - datetime.fromisoformat(start)).total_seconds() * 1000
