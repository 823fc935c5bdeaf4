"""The ops page in headless Chromium (Debian's `chromium`, driven by Playwright): load it,
see the departments, the supervision charts and a dead letter, find a bundle by its case
number and read its timeline, replay the dead letter; a screenshot goes to var/artifacts/.

Like connected tests, it is skipped on a developer's machine without chromium and FAILS
on CI (`make test` installs chromium).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import TEST_TOKEN, Running, eventually, new_project_no, running_stack
from kombu import Connection, Exchange, Producer
from playwright.sync_api import Browser, Page, expect, sync_playwright

from contracts import topology
from contracts.catalog import Catalog
from contracts.samples import sample_application
from lianban.settings import Settings

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(__file__).resolve().parents[1] / "var" / "artifacts"
POLICE_PARKING = topology.parking_queue(topology.department_queue("police"))


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not shutil.which("chromium"):
        reason = "Debian's chromium is not installed (`make test` installs it)"
        if os.environ.get("CI"):
            pytest.fail(reason)
        pytest.skip(reason)
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield launched
        launched.close()


def _park_a_dead_letter(broker_url: str) -> None:
    """A dispatch the police adapter cannot read: it is parked, never processed."""
    with Connection(broker_url) as connection:
        Producer(connection.default_channel).publish(
            b'{"not": "a dispatch"}',
            exchange=Exchange(topology.DISPATCH_EXCHANGE, type="topic", durable=True),
            routing_key=topology.dispatch_routing_key("police", "broken"),
            content_type="application/json",
            message_id="dead-letter-test",
            correlation_id="no-bundle",
        )


def _wait_for_dead_letters(running: Running, count: int) -> None:
    def police_dead_letters() -> int:
        rows = running.client.get("/v1/ops/departments").json()
        dead_letters: int = {row["department"]: row["dead_letters"] for row in rows}["police"]
        return dead_letters

    eventually(
        police_dead_letters,
        lambda now: now == count,
        timeout=60,  # the management API refreshes its figures every 5 s
        every=0.5,
        message=f"police's parking lot never held {count} message(s)",
    )


def test_operator_finds_a_bundle_reads_figures_and_replays_a_dead_letter(
    settings: Settings, catalog: Catalog, browser: Browser, request: pytest.FixtureRequest
) -> None:
    with running_stack(settings, catalog) as running:
        application = sample_application(catalog.bundle_types["newborn"], new_project_no())
        receipt = running.submit(application).json()
        running.wait_for_reply(receipt["reply_url"])
        _park_a_dead_letter(settings.broker_url)
        _wait_for_dead_letters(running, 1)

        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            _operate(page, running, application["project_no"])
        finally:
            ARTIFACTS.mkdir(parents=True, exist_ok=True)
            mode = request.node.callspec.params["settings"]
            page.screenshot(path=ARTIFACTS / f"ops-page-{mode}.png", full_page=True)
            page.close()


def _operate(page: Page, running: Running, project_no: str) -> None:
    expect.set_options(timeout=30_000)
    page.goto(f"{running.stack.base_url}/ops")
    expect(page.locator("h1")).to_contain_text("Lianban")
    page.fill("#token", TEST_TOKEN.get_secret_value())
    page.click("#token-form button")

    police = page.locator('#departments tr[data-department="police"]')
    expect(police).to_contain_text("公安")
    expect(police.locator("td").nth(7)).to_have_text("1")  # its dead letter
    expect(police.locator(".badge")).to_have_text("closed")

    # Supervision: today's bundle shows in the figures and the charts.
    expect(page.locator("#supervision-result svg").first).to_be_visible()
    expect(page.locator("#supervision-result table.figures").last).to_contain_text("newborn")
    assert page.locator("#supervision-result svg rect").count() > 0

    # Bundle search by case number, down to the timeline.
    page.fill("#bundle-key", project_no)
    page.click("#bundle-form button")
    expect(page.locator("#bundle-summary")).to_contain_text(project_no)
    expect(page.locator("#timeline")).to_contain_text("replied")
    expect(page.locator("#timeline")).to_contain_text("received")
    assert page.locator("#error").is_hidden()

    page.select_option("#dead-letter-queue", POLICE_PARKING)
    expect(page.locator("#dead-letters")).to_have_attribute("aria-busy", "false")
    letter = page.locator('#dead-letters input.letter[value="dead-letter-test"]')
    expect(letter).to_be_visible()
    expect(page.locator("#dead-letters tbody a.bundle-link")).to_have_text("no-bundle")
    letter.check()
    page.click("#replay-selected")
    expect(page.locator("#confirm")).to_be_visible()
    page.click("#confirm-ok")
    expect(page.locator("#replay-result")).to_contain_text("Replayed 1 message(s)")
    # It went back to police's queue, was refused again and parked again, counted as replayed.
    _wait_for_replayed(running, "dead-letter-test")
    page.click("#refresh")
    expect(page.locator("#dead-letters tbody")).to_contain_text("replayed 1×")


def _wait_for_replayed(running: Running, message_id: str) -> None:
    eventually(
        lambda: running.client.get("/v1/ops/dead-letters", params={"queue": POLICE_PARKING}).json(),
        lambda parked: any(
            (letter["message_id"], letter["bundle_id"], letter["replayed"])
            == (message_id, "no-bundle", 1)
            for letter in parked
        ),
        timeout=60,
        every=0.5,
        message=f"{message_id} was not replayed",
    )
