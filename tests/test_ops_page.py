"""The ops page in headless Chromium (Debian's `chromium`, driven by Playwright): load it in
Chinese, see the departments (trouble first), the bundle list with its filters and
pages, the supervision charts and a dead letter, find a bundle by its case number and read
its timeline, replay the dead letter, switch to English; and for a bundle stuck because
police's system is down, read why (attempts, next retry or parked, last error, circuit)
and replay it once police is back. Screenshots go to var/artifacts/.

Like connected tests, it is skipped on a developer's machine without chromium and FAILS
on CI (`make test` installs chromium).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path

import pytest
from harness import (
    TEST_TOKEN,
    PoliceBehindAPort,
    Running,
    eventually,
    free_port,
    item_status,
    new_project_no,
    police_system,
    running_stack,
)
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
        settlement = sample_application(
            catalog.bundle_types["graduate_household_settlement"], new_project_no()
        )
        running.wait_for_reply(running.submit(settlement).json()["reply_url"])
        _park_a_dead_letter(settings.broker_url)
        _wait_for_dead_letters(running, 1)

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        mode = request.node.callspec.params["settings"]
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        try:
            _operate(page, running, application["project_no"], settlement["project_no"], mode)
        finally:
            page.screenshot(path=ARTIFACTS / f"ops-page-{mode}.png", full_page=True)
            page.close()


def _operate(page: Page, running: Running, newborn_no: str, settlement_no: str, mode: str) -> None:
    expect.set_options(timeout=30_000)
    page.goto(f"{running.stack.base_url}/ops")
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    expect(page.locator("h1")).to_contain_text("运维")
    expect(page.locator('link[rel="icon"]')).to_have_attribute("href", "/ops/static/favicon.svg")
    page.fill("#token", TEST_TOKEN.get_secret_value())
    page.click("#token-form button[type=submit]")

    # Police has a dead letter: it comes first, its circuit labelled in Chinese.
    first = page.locator("#departments tbody tr").first
    expect(first).to_have_attribute("data-department", "police")
    expect(first).to_contain_text("公安")
    expect(first.locator("td").nth(7)).to_have_text("1")
    expect(first.locator(".badge")).to_have_text("正常")

    # The bundle list (the connected database is shared: other tests' bundles are there too):
    # the newest first, bundles counted apart from their items, each filter applied.
    counts = page.locator("#bundle-counts")
    everything = running.client.get("/v1/ops/bundles").json()
    assert everything["items_total"] > everything["bundles_total"] >= 2
    expect(counts).to_have_text(
        f"一件事 {everything['bundles_total']} 件 · 事项 {everything['items_total']} 项"
    )
    # Other tests' bundles may have been received later in simulated time (time-machine),
    # so this one is found by its case number, not expected first.
    ours = page.locator(f'#bundles tbody tr[data-bundle="{settlement_no}"]')
    expect(ours).to_contain_text("已答复")
    page.select_option("#filter-type", "newborn")
    page.click("#bundle-filter button")
    newborn_row = page.locator(f'#bundles tbody tr[data-bundle="{newborn_no}"]')
    expect(ours).to_have_count(0)
    expect(newborn_row).to_contain_text("新生儿出生")
    page.select_option("#filter-overdue", "true")  # replied: never overdue
    page.click("#bundle-filter button")
    expect(newborn_row).to_have_count(0)
    page.select_option("#filter-type", "")
    page.select_option("#filter-overdue", "")
    page.click("#bundle-filter button")
    expect(page.locator("#page-number")).to_contain_text("第 1 /")

    # Supervision: bundles by type in bundles (件), items in their own tables.
    expect(page.locator("#supervision-result svg").first).to_be_visible()
    expect(page.locator("#bundles-by-type")).to_contain_text("新生儿出生")
    expect(page.locator("#items-by-bundle-type")).to_contain_text("高校毕业生落户")
    assert page.locator("#supervision-result svg rect").count() > 0
    expect(page.locator("#ratings-by-department")).to_contain_text("满意率")

    # The month's 通报, downloaded through the link with the operator's token.
    with page.expect_download() as download:
        page.click("#report-csv")
    report = Path(download.value.path()).read_text(encoding="utf-8-sig")
    assert report.startswith("排名,类别,代码,名称,办件量,")
    assert download.value.suggested_filename.startswith("lianban-report-")

    # Bundle search by case number, down to the timeline.
    page.fill("#bundle-key", newborn_no)
    page.click("#bundle-form button")
    expect(page.locator("#bundle-summary")).to_contain_text(newborn_no)
    expect(page.locator('#timeline tr[data-step="replied"]')).to_contain_text("已答复")
    expect(page.locator('#timeline tr[data-step="received"]')).to_contain_text("收件")
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
    expect(page.locator("#replay-result")).to_contain_text("重放 1 条消息")
    # It went back to police's queue, was refused again and parked again, counted as replayed.
    _wait_for_replayed(running, "dead-letter-test")
    page.click("#refresh")
    expect(page.locator("#dead-letters tbody")).to_contain_text("已重放 1 次")

    page.screenshot(path=ARTIFACTS / f"ops-page-zh-{mode}.png", full_page=True)

    # The English switch relabels the page and is remembered.
    page.click("#language")
    expect(page.locator("html")).to_have_attribute("lang", "en")
    expect(page.locator("#bundles h2")).to_have_text("Bundles")
    expect(counts).to_contain_text(" bundle(s) · ")
    expect(page.locator("#departments tbody tr").first.locator(".badge")).to_have_text("closed")
    page.reload()
    expect(page.locator("#departments h2 span")).to_have_text("Departments")


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


def test_operator_reads_why_a_bundle_is_stuck_and_replays_it(
    settings: Settings, catalog: Catalog, browser: Browser, request: pytest.FixtureRequest
) -> None:
    port = free_port()  # police's system: nothing listens, every connection is refused
    PoliceBehindAPort.url = f"http://127.0.0.1:{port}"
    with running_stack(settings, catalog, adapters=[PoliceBehindAPort()]) as running:
        application = sample_application(catalog.bundle_types["newborn"], new_project_no())
        status_url = running.submit(application).json()["status_url"]
        eventually(
            lambda: item_status(running, status_url, "birth_registration")["trouble"],
            lambda trouble: trouble is not None and trouble["state"] == "parked",
            timeout=60,
            every=0.2,
            message="police's request was never parked",
        )
        _wait_for_dead_letters(running, 1)

        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        mode = request.node.callspec.params["settings"]
        page = browser.new_page(viewport={"width": 1400, "height": 1000})
        problems: list[str] = []
        page.on("console", lambda message: _note_error(problems, message.type, message.text))
        page.on("response", lambda answer: _note_error(problems, str(answer.status), answer.url))
        try:
            _read_why_and_replay(page, running, application["project_no"], port, mode)
        finally:
            page.screenshot(path=ARTIFACTS / f"stuck-end-{mode}.png", full_page=True)
            page.close()
        assert not problems, problems


def _note_error(problems: list[str], kind: str, text: str) -> None:
    if kind in ("error", "404"):
        problems.append(f"{kind}: {text}")


def _read_why_and_replay(page: Page, running: Running, case_no: str, port: int, mode: str) -> None:
    expect.set_options(timeout=30_000)
    page.goto(f"{running.stack.base_url}/ops")
    page.fill("#token", TEST_TOKEN.get_secret_value())
    page.click("#token-form button[type=submit]")

    # Police is in trouble: first, and its error rate counts the retries (never 0.0%; the
    # connected database is shared, so other tests' police answers may count too).
    first = page.locator("#departments tbody tr").first
    expect(first).to_have_attribute("data-department", "police")
    expect(first).to_have_class("alert")
    police = running.client.get("/v1/ops/departments").json()[0]
    assert police["department"] == "police" and police["error_ratio"] > 0
    expect(first.locator("td").nth(5)).to_have_text(f"{police['error_ratio'] * 100:.1f}%")
    page.screenshot(path=ARTIFACTS / f"stuck-overview-{mode}.png", full_page=True)

    page.fill("#bundle-key", case_no)
    page.click("#bundle-form button")
    why = page.locator('#bundle-items tr[data-item="birth_registration"] td.trouble')
    expect(why).to_have_attribute("data-trouble", "parked")
    expect(why).to_contain_text("已停放")
    expect(why).to_contain_text("第 3 次投递")
    expect(why).to_contain_text("等待运维重放 · 熔断器 熔断")
    expect(why.locator("[data-circuit]")).to_have_attribute("data-circuit", "open")
    expect(why.locator(".last-error")).to_contain_text("最后错误: ")
    expect(page.locator('#timeline tr[data-step="retrying"]')).to_have_count(2)
    expect(page.locator('#timeline tr[data-step="retrying"]').first).to_contain_text("重试中")
    expect(page.locator('#timeline tr[data-step="parked"]')).to_contain_text("已停放（死信）")
    page.locator("#bundle-result").scroll_into_view_if_needed()
    page.screenshot(path=ARTIFACTS / f"stuck-bundle-{mode}.png", full_page=True)

    # Police is back: the operator replays the parked filing from the page.
    system = police_system(port)
    try:
        page.select_option("#dead-letter-queue", POLICE_PARKING)
        expect(page.locator("#dead-letters")).to_have_attribute("aria-busy", "false")
        page.locator("#dead-letters input.letter").first.check()
        page.click("#replay-selected")
        page.click("#confirm-ok")
        expect(page.locator("#replay-result")).to_contain_text("重放 1 条消息")
        running.wait_for_item(
            f"/v1/bundles/{running.client.get(f'/v1/ops/bundles/{case_no}').json()['bundle_id']}",
            "birth_registration",
            "approved",
            timeout=60,
        )
    finally:
        system.stop()
    page.click("#bundle-form button")
    expect(page.locator('#timeline tr[data-step="replayed"]')).to_contain_text("已重放")
    expect(why).to_have_text("")  # answered: nothing stuck any more

    # The favicon browsers ask any page of this server for.
    icon = page.request.get(f"{running.stack.base_url}/favicon.ico")
    assert icon.status == 200 and icon.headers["content-type"] == "image/x-icon"
