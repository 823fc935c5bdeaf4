"""The embedded demo: everything in one process on kombu's in-memory transport and SQLite.

It submits three bundles over the real HTTP API (a newborn, a citizen's after-death
matters and an enterprise opening), then a new-house deed-tax bundle that the applicant
withdraws (撤回) while the tax office is still deciding. The newborn goes through
pre-review (容缺预审): its medical insurance and social security card are filed and
pre-reviewed at once, and decided only after their prerequisites' results are forwarded.
The installed department adapters (police, hrss, medical insurance, housing fund) call
their department simulators over loopback SOAP and REST; every other department is
simulated in process.
It prints each bundle's one reply and its item timeline. Last, a 公民婚育 bundle whose
marriage registry asks the applicant for a correction (补齐补正): the bundle's clock pauses, case
time (runtime.clock) steps four working days on, the applicant corrects, and the clock
resumes with those days left out of its due date.
"""

from __future__ import annotations

import hashlib
import tempfile
import time
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx

from adapters.base import Adapter
from adapters.registry import simulate_every_department
from adapters.simulated import Rule, Scenario, Verdict
from adapters.simulators.systems import simulated_department_systems
from contracts.catalog import Catalog, default_catalog
from contracts.samples import SAMPLE_PDF, sample_application, sample_material_ref
from lianban.settings import Settings
from lianban.stack import Role, Stack
from router.domain.workdays import CHINA_TZ, china_date, working_calendar
from router.http.auth import ApiToken, Scope, mint
from runtime import clock
from runtime.logs import configure_logging

DEMO_BUNDLES = ("newborn", "citizen_after_death", "enterprise_establishment")
WITHDRAWN_BUNDLE = "new_house_deed_tax"
PAUSED_BUNDLE = "marriage_and_childbirth"
CORRECTED_ITEM = "marriage_registration"
CORRECTION_WORKING_DAYS = 4
# The simulated tax office takes its time over the declaration, so there is something
# to withdraw; the marriage registry wants a correction first.
DEMO_SCENARIO = Scenario(
    rules={
        "deed_tax_declaration": Rule(delay_seconds=2.0),
        CORRECTED_ITEM: Rule(Verdict.CORRECT, reason="缺少户口簿"),
    }
)


def embedded_stack(
    workdir: Path,
    catalog: Catalog,
    adapters: Sequence[Adapter] = (),
    scenario: Scenario | None = None,
    api_tokens: tuple[ApiToken, ...] = (),
) -> Stack:
    """Every role, the given adapters and a simulator for every other department, in this
    process, with no server."""
    settings = Settings(
        database_url=f"sqlite:///{workdir / 'lianban.db'}",
        broker_url="memory://",
        materials_dir=workdir / "materials",
        port=0,
        api_tokens=api_tokens,
    )
    simulators = simulate_every_department(
        catalog, scenario, except_for=[adapter.department for adapter in adapters]
    )
    return Stack(settings, catalog, set(Role), [*adapters, *simulators])


def run_demo() -> int:
    configure_logging("warning", "console")  # the demo is read by people
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
        # The demo plays the platform: it mints its own token, valid for this run only.
        token, entry = mint("demo platform", Scope, lifetime=timedelta(hours=1))
        stack = embedded_stack(Path(workdir), catalog, real, DEMO_SCENARIO, (entry,))
        stack.start()
        auth = {"Authorization": f"Bearer {token.get_secret_value()}"}
        try:
            with httpx.Client(base_url=stack.base_url, headers=auth, timeout=10) as client:
                upload = client.put(
                    f"/v1/materials/{hashlib.sha256(SAMPLE_PDF).hexdigest()}",
                    content=SAMPLE_PDF,
                    headers={"Content-Type": "application/pdf"},
                )
                upload.raise_for_status()
                for number, code in enumerate(DEMO_BUNDLES, start=1):
                    receipt = _submit(client, catalog, code, number)
                    _print(client, receipt, _wait_for_reply(client, receipt["reply_url"]))
                receipt = _submit(client, catalog, WITHDRAWN_BUNDLE, len(DEMO_BUNDLES) + 1)
                _wait_for_item_state(client, receipt, "deed_tax_declaration", "accepted")
                print("申请人撤回 the applicant withdraws while the tax office is deciding")
                withdrawn = client.post(
                    f"/v1/bundles/{receipt['bundle_id']}/withdraw", json={"reason": "申请人撤回"}
                )
                withdrawn.raise_for_status()
                _print(client, receipt, withdrawn.json())
                _pause_and_resume(client, catalog, len(DEMO_BUNDLES) + 2)
        finally:
            stack.stop()
            clock.reset()
    return 0


def _pause_and_resume(client: httpx.Client, catalog: Catalog, number: int) -> None:
    receipt = _submit(client, catalog, PAUSED_BUNDLE, number)
    _wait_for_item_state(client, receipt, CORRECTED_ITEM, "correction_requested")
    _print_clock(client, receipt, "the marriage registry asks for a correction (补齐补正)")
    calendar = working_calendar()
    today = china_date(clock.now())
    then = china_date(calendar.add_working_days(clock.now(), CORRECTION_WORKING_DAYS))
    later = clock.advance(timedelta(days=(then - today).days)).astimezone(CHINA_TZ)
    print(
        f"… case time steps {CORRECTION_WORKING_DAYS} working days on, "
        f"to {later:%Y-%m-%d %a %H:%M} (China)"
    )
    corrected = client.post(
        f"/v1/bundles/{receipt['bundle_id']}/items/{CORRECTED_ITEM}/corrections",
        json={"materials": [sample_material_ref()]},
    )
    corrected.raise_for_status()
    reply = _wait_for_reply(client, receipt["reply_url"])
    _print_clock(client, receipt, "the applicant corrects; the department decides")
    _print(client, receipt, reply)


def _print_clock(client: httpx.Client, receipt: Any, what: str) -> None:
    """The bundle's clock: how many of its promised working days are used, and when it is
    due; paused (no due date) while the applicant owes a correction."""
    status = client.get(receipt["status_url"]).json()
    bundle_clock = status["clock"]
    if bundle_clock["finished_at"]:
        state = "finished"
    elif bundle_clock["running"]:
        state = "running"
    else:
        state = f"paused ({bundle_clock['paused_cause']})"
    due = bundle_clock["due_at"]
    due = datetime.fromisoformat(due).astimezone(CHINA_TZ).strftime("%Y-%m-%d") if due else "—"
    print(f"{what}")
    print(
        f"  clock {state}: {bundle_clock['days_used']} of {bundle_clock['limit_days']} "
        f"working days used, due {due}"
    )
    for step in status["timeline"]:
        if step["item"] is None and step["state"].startswith("clock_"):
            print(f"  {step['state']:<14} {step['detail']}")


def _submit(client: httpx.Client, catalog: Catalog, code: str, number: int) -> Any:
    bundle_type = catalog.bundle_types[code]
    project_no = f"DEMO{time.strftime('%Y%m%d')}{number:04d}"
    application = sample_application(bundle_type, project_no, sequence=number)
    response = client.post("/v1/bundles", json=application, headers={"Idempotency-Key": project_no})
    response.raise_for_status()
    receipt = response.json()
    print(f"\n=== {bundle_type.name_zh} ({code}) — 办件编号 {project_no}")
    print(f"收件回执 receipt: bundle {receipt['bundle_id']} at {receipt['received_at']}")
    return receipt


def _print(client: httpx.Client, receipt: Any, reply: Any) -> None:
    print(f"答复 reply: {reply['outcome']}")
    for item in reply["items"]:
        shown = ", ".join(c["certificate_number"] for c in item["certificates"])
        shown = shown or item["reason"] or ""
        print(f"  {item['state']:<10} {item['name_zh']} [{item['department']}] {shown}")
    status = client.get(receipt["status_url"]).json()
    print("时间线 timeline:")
    start = status["timeline"][0]["at"]
    for event in status["timeline"]:
        offset = _offset(start, event["at"])
        where = event["item"] or "(bundle)"
        print(f"  {offset}  {event['state']:<23} {where:<36} by {event['actor']}")


def _wait_for_item_state(
    client: httpx.Client, receipt: Any, item: str, state: str, timeout: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        items = client.get(receipt["status_url"]).json()["items"]
        if any(entry["item"] == item and entry["state"] == state for entry in items):
            return
        time.sleep(0.02)
    raise TimeoutError(f"{item} did not become {state} within {timeout} s")


def _wait_for_reply(client: httpx.Client, reply_url: str, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        response = client.get(reply_url)
        if response.status_code == 200:
            return response.json()
        time.sleep(0.05)
    raise TimeoutError(f"no reply at {reply_url} within {timeout} s")


def _offset(start: str, end: str) -> str:
    """How long after the first step: milliseconds, or days once case time moved on."""
    elapsed = datetime.fromisoformat(end) - datetime.fromisoformat(start)
    if elapsed < timedelta(minutes=1):
        return f"+{elapsed.total_seconds() * 1000:>6.1f} ms"
    return f"+{elapsed.days}d {elapsed.seconds // 3600:02d}h  "
