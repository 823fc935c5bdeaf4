"""受理 / 不予受理 in real time: each decision reaches the platform (callback, pull) with
its PDF notice, the applicant gets one SMS per notice, and a redelivery sends nothing twice.

Seed 001 附件3 (三): "予以受理的，出具受理通知书并短信告知申请人受理相关信息…不予受理的，
制作不予受理决定书，列明不予受理的具体理由".
"""

from __future__ import annotations

import hashlib
import io
import json
import uuid
from collections.abc import Iterator
from datetime import date
from pathlib import Path
from typing import Any

import pytest
from conftest import fresh_postgres_database
from harness import KEYRING, Running, eventually, new_project_no, received_dispatches, running_stack
from pypdf import PdfReader
from reportlab.pdfbase.ttfonts import TTFont
from sqlalchemy import select
from test_delivery import Platform

from adapters.simulated import Rule, Scenario, Verdict
from adapters.simulators.sms_gateway import SmsGatewaySimulator
from contracts.catalog import Catalog
from contracts.errors import ConfigurationError, MaterialRejected
from contracts.messages import AcceptanceNotice, Accepted, ItemOutcome, NoticeDecision, Rejected
from contracts.samples import sample_application
from lianban.settings import Settings
from router.channels.applicant_messages import ApplicantMessageSender
from router.channels.filedrop import Layout
from router.channels.notice_desk import NO_GATEWAY, NO_MOBILE, NoticeDesk
from router.channels.notice_document import (
    NoticeFacts,
    NoticeRenderer,
    drop_what_subsets_do_not_read,
)
from router.channels.notifiers import ApplicantMessage, SmsGateway
from router.domain.correlator import Applied, Correlator
from router.domain.notices import issued_notices
from router.store import (
    ApplicantMessageRow,
    BundleRow,
    CallbackRow,
    Database,
    EventRow,
    NoticeRow,
    OutboxRow,
)
from runtime.storage import LocalMaterialStore

MOBILE = "13800138000"  # the sample applicant's
REJECTION = "出生医学证明信息与申请表不一致"


@pytest.fixture
def sms() -> Iterator[SmsGatewaySimulator]:
    gateway = SmsGatewaySimulator(refuse_first=1)
    gateway.server.start()
    yield gateway
    gateway.server.stop()


def _pushed_notices(
    running: Running, platform: Platform, receipt: dict[str, Any], count: int
) -> list[dict[str, Any]]:
    """The bundle's acceptance notices the callback took, once `count` have arrived."""
    return eventually(
        lambda: [b for b in platform.of(receipt["bundle_id"]) if b["kind"] == "acceptance"],
        lambda pushed: len(pushed) >= count,
        timeout=30,
        message=f"fewer than {count} acceptance notices reached the callback",
    )


def _document_text(running: Running, bundle_id: str, notice: dict[str, Any]) -> str:
    response = running.client.get(f"/v1/bundles/{bundle_id}/files/{notice['document']['sha256']}")
    response.raise_for_status()
    assert response.headers["content-type"] == "application/pdf"
    return "".join(page.extract_text() for page in PdfReader(io.BytesIO(response.content)).pages)


def _allowing_loopback(settings: Settings, **update: Any) -> Settings:
    return settings.model_copy(
        update={"callback_backoff_seconds": 0.05, "outbound_hosts": ("127.0.0.1",), **update}
    )


def test_each_acceptance_reaches_the_platform_with_its_notice_and_one_sms(
    settings: Settings, catalog: Catalog, platform: Platform, sms: SmsGatewaySimulator
) -> None:
    settings = _allowing_loopback(settings, sms_gateway_url=sms.url)
    newborn = catalog.bundle_types["newborn"]
    with running_stack(settings, catalog) as running:
        application = sample_application(newborn, new_project_no())
        application["callback_url"] = f"{platform.server.url}/callback"
        receipt = running.submit(application).json()
        reply = running.wait_for_reply(receipt["reply_url"])
        pushed = _pushed_notices(running, platform, receipt, len(reply["items"]))
        pulled = running.client.get(f"/v1/bundles/{receipt['bundle_id']}/notices").json()
        texts = {n["item"]: _document_text(running, receipt["bundle_id"], n) for n in pushed}
        # A connected database is shared: this stack may also send other tests' messages.
        messages = eventually(
            lambda: [m for m in sms.sent_to(MOBILE) if application["project_no"] in m.content],
            lambda sent: len(sent) >= len(pushed),
            timeout=30,
            message="the SMS gateway did not get one message per notice",
        )
        # The sender commits each message's timeline step after the gateway took it.
        messaged = eventually(
            lambda: [
                event
                for event in running.client.get(
                    f"/v1/bundles/{receipt['bundle_id']}/timeline"
                ).json()
                if event["state"] == "applicant_messaged"
            ],
            lambda steps: len(steps) >= len(pushed),
            timeout=30,
            message="the timeline does not say each message was sent",
        )

    notices = [AcceptanceNotice.model_validate(body) for body in pushed]
    assert sorted(n.item for n in notices) == sorted(item["item"] for item in reply["items"])
    assert {n.decision for n in notices} == {"accepted"}
    assert sorted(pulled, key=lambda n: n["item"]) == sorted(pushed, key=lambda n: n["item"])
    for notice in notices:
        text = texts[notice.item]
        for expected in ("受理通知书", application["project_no"], notice.item_name_zh):
            assert expected in text
        assert notice.department_name_zh in text
        assert notice.document.media_type == "application/pdf"
    project_no = application["project_no"]
    assert len(messages) == len(notices), "one SMS per notice, the refused post retried once"
    assert all(project_no in sms_.content and "受理" in sms_.content for sms_ in messages)
    # The first post anywhere is refused: this case's messages took it and one retry, or
    # none if another test's message met the refusal; never a second copy.
    assert len(notices) <= sms.posts_mentioning(project_no) <= len(notices) + 1
    assert len(messaged) == len(notices)
    assert all(MOBILE not in e["detail"] and "138****8000" in e["detail"] for e in messaged)


def test_a_rejection_gets_its_decision_with_the_reason_and_says_no_sms_was_sent(
    settings: Settings, catalog: Catalog, platform: Platform, tmp_path: Path
) -> None:
    newborn = catalog.bundle_types["newborn"]
    rejected_item = newborn.item("birth_registration")
    scenario = Scenario({rejected_item.code: Rule(Verdict.REJECT, REJECTION)})
    filedrop = Layout(tmp_path / "filedrop")
    settings = _allowing_loopback(settings, filedrop_dir=filedrop.root)
    with running_stack(settings, catalog, scenario) as running:
        application = sample_application(newborn, new_project_no())
        application["callback_url"] = f"{platform.server.url}/callback"
        receipt = running.submit(application).json()
        running.wait_for_reply(receipt["reply_url"])
        rejection = eventually(
            lambda: next(
                (n for n in platform.of(receipt["bundle_id"]) if n.get("decision") == "rejected"),
                None,
            ),
            lambda found: found is not None,
            timeout=30,
            message="no 不予受理 notice reached the callback",
        )
        text = _document_text(running, receipt["bundle_id"], rejection)
        exported = filedrop.outbox / (
            f"{application['project_no']}.{rejected_item.code}.rejected.notice.json"
        )
        eventually(exported.exists, bool, timeout=30, message="the notice never reached the outbox")
        timeline = running.client.get(f"/v1/bundles/{receipt['bundle_id']}/timeline").json()

    assert (rejection["item"], rejection["decision"]) == (rejected_item.code, "rejected")
    assert rejection["reason"] == REJECTION
    assert json.loads(exported.read_bytes()) == rejection  # the file drop has what was pushed
    pdf = filedrop.outbox / application["project_no"] / rejection["document"]["sha256"]
    assert hashlib.sha256(pdf.read_bytes()).hexdigest() == rejection["document"]["sha256"]
    for expected in ("不予受理决定书", REJECTION, "行政复议", application["project_no"]):
        assert expected in text
    not_messaged = [
        e
        for e in timeline
        if e["state"] == "applicant_not_messaged" and e["item"] == rejected_item.code
    ]
    assert [e["detail"] for e in not_messaged] == [NO_GATEWAY]


def test_a_redelivered_acceptance_issues_and_sends_nothing_twice(
    database: Database, catalog: Catalog, tmp_path: Path, sms: SmsGatewaySimulator
) -> None:
    materials = LocalMaterialStore(tmp_path / "materials")
    dispatch = received_dispatches(database, catalog, materials)[0]
    correlator = Correlator(database, catalog, keyring=KEYRING)
    accepted = ItemOutcome.answering(dispatch, Accepted(receipt_no="SL-0001"))
    desk = NoticeDesk(
        database,
        catalog,
        materials,
        NoticeRenderer(Settings().notice_font_file),
        message_channel=SmsGateway.channel,
    )
    sender = ApplicantMessageSender(database, SmsGateway(sms.url), backoff_seconds=0)

    assert correlator.apply(accepted) is Applied.APPLIED
    assert correlator.apply(accepted) is Applied.DUPLICATE  # the broker redelivered it
    assert desk.issue_due() == 1
    assert desk.issue_due() == 0
    assert correlator.apply(accepted) is Applied.DUPLICATE  # again, after the notice went out
    assert desk.issue_due() == 0
    assert sender.send_due() == 1  # refused by the gateway: retried
    assert sender.send_due() == 1
    assert sender.send_due() == 0

    with database.transaction() as session:
        bundle_rows = [
            row
            for row in session.scalars(select(OutboxRow)).all()
            if row.correlation_id == str(dispatch.bundle_id) and b'"kind":"acceptance"' in row.body
        ]
        callbacks = session.scalars(
            select(CallbackRow).where(CallbackRow.bundle_id == dispatch.bundle_id)
        ).all()
    assert len(bundle_rows) == 1
    assert callbacks == []  # the sample gives no callback URL
    notice = AcceptanceNotice.model_validate_json(bundle_rows[0].body)
    assert notice.receipt_no == "SL-0001"
    (message,) = sms.sent_to(MOBILE)
    assert "SL-0001" in message.content
    # A gateway that took a message whose answer was lost is posted it again: still one SMS.
    SmsGateway(sms.url).send(ApplicantMessage(uuid.UUID(message.message_id), MOBILE, "again"))
    assert sms.sent_to(MOBILE) == [message]


@pytest.mark.connected
def test_a_desk_skips_the_notices_another_desk_holds_and_not_those_of_a_locked_bundle(
    catalog: Catalog, tmp_path: Path
) -> None:
    """Relays issue notices side by side: each claims notices no other holds (SKIP
    LOCKED), and locks only the notices, so a correlator holding the bundle (answering
    another of its items) neither holds up nor hides its notices."""
    with fresh_postgres_database() as url:
        database = Database(url)
        database.migrate()
        try:
            materials = LocalMaterialStore(tmp_path / "materials")
            dispatches = received_dispatches(database, catalog, materials)[:2]
            correlator = Correlator(database, catalog, keyring=KEYRING)
            for number, dispatch in enumerate(dispatches):
                outcome = ItemOutcome.answering(dispatch, Accepted(receipt_no=f"SL-{number}"))
                assert correlator.apply(outcome) is Applied.APPLIED
            renderer = NoticeRenderer(Settings().notice_font_file)
            desk = NoticeDesk(database, catalog, materials, renderer, message_channel=None)
            with database.transaction() as other:
                # Another relay's desk holds the oldest notice, a correlator the bundle.
                other.execute(
                    select(NoticeRow.id).order_by(NoticeRow.created_at).limit(1).with_for_update()
                )
                other.execute(
                    select(BundleRow.id)
                    .where(BundleRow.id == dispatches[0].bundle_id)
                    .with_for_update()
                )
                assert desk.issue_due() == 1
                assert desk.issue_due() == 0
            assert desk.issue_due() == 1
            assert desk.issue_due() == 0

            with database.transaction() as session:
                bundle = session.get_one(BundleRow, dispatches[0].bundle_id)
                issued = issued_notices(session, bundle, catalog)
            assert [notice.receipt_no for notice in issued] == ["SL-1", "SL-0"]
        finally:
            database.dispose()


def test_an_applicant_without_a_mobile_number_gets_no_message_and_the_timeline_says_why(
    database: Database, catalog: Catalog, tmp_path: Path, sms: SmsGatewaySimulator
) -> None:
    materials = LocalMaterialStore(tmp_path / "materials")
    # The sample enterprise gives no mobile number.
    dispatch = received_dispatches(database, catalog, materials, "enterprise_establishment")[0]
    outcome = ItemOutcome.answering(
        dispatch, Rejected(reason=REJECTION, legal_basis="《条例》第五条")
    )
    renderer = NoticeRenderer(Settings().notice_font_file)
    desk = NoticeDesk(database, catalog, materials, renderer, message_channel=SmsGateway.channel)

    assert Correlator(database, catalog, keyring=KEYRING).apply(outcome) is Applied.APPLIED
    assert desk.issue_due() == 1

    with database.transaction() as session:
        (notice,) = issued_notices(session, session.get_one(BundleRow, dispatch.bundle_id), catalog)
        steps = session.scalars(
            select(EventRow).where(
                EventRow.bundle_id == dispatch.bundle_id, EventRow.item == dispatch.item
            )
        ).all()
        messages = session.scalars(
            select(ApplicantMessageRow).where(ApplicantMessageRow.bundle_id == dispatch.bundle_id)
        ).all()
    assert (notice.decision, notice.legal_basis) == ("rejected", "《条例》第五条")
    assert messages == []
    assert [s.detail for s in steps if s.state == "applicant_not_messaged"] == [NO_MOBILE]


def test_a_missing_notice_font_is_refused_with_how_to_fix(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="LIANBAN_NOTICE_FONT_FILE"):
        NoticeRenderer(tmp_path / "no-such-font.ttc")


def test_a_notice_renders_to_the_same_bytes_after_others_and_each_reads_back_its_own_text() -> None:
    """What the renderer keeps per process (font subsets, widths, ToUnicode maps) never
    leaks one notice's characters into another's, and a re-render is byte-for-byte equal."""
    renderer = NoticeRenderer(Settings().notice_font_file)
    day = date(2026, 12, 4)
    first = NoticeFacts(
        NoticeDecision.ACCEPTED, "郑州市医疗保障局", "城乡居民医疗保险参保登记", "新生儿出生一件事",
        "410100202612040001", "SL-0001", "张三丰", day, day, None, "《条例》第三条", 20, day,
    )  # fmt: skip
    other = NoticeFacts(
        NoticeDecision.REJECTED, "郑州市公安局", "出生登记", "新生儿出生一件事",
        "410100202612040002", None, "欧阳鹏飞", day, day, REJECTION, "《条例》第五条", None, None,
    )  # fmt: skip

    def text(pdf: bytes) -> str:
        return "".join(page.extract_text() for page in PdfReader(io.BytesIO(pdf)).pages)

    rendered = renderer.render(first)
    other_text = text(renderer.render(other))

    assert renderer.render(first) == rendered
    assert "张三丰" in text(rendered) and "欧阳鹏飞" not in text(rendered)
    assert "受理通知书" in text(rendered) and "城乡居民医疗保险参保登记" in text(rendered)
    assert "欧阳鹏飞" in other_text and REJECTION in other_text.replace("\n", "")


def test_the_glyph_offsets_kept_compact_are_those_reportlab_parses() -> None:
    """The renderer keeps the glyph offsets a subset is cut by as an array, not
    reportlab's list: every glyph's must be the same, or the subsets would differ."""
    parsed = TTFont("parsed", str(Settings().notice_font_file), subfontIndex=0).face
    offsets = parsed.glyphPos
    drop_what_subsets_do_not_read(parsed)

    assert list(parsed.glyphPos) == offsets
    assert not hasattr(parsed, "glyphToChar")


def test_a_long_name_and_reason_wrap_and_run_onto_a_second_page() -> None:
    """The renderer wraps lines itself: nothing is cut at the margin or the page's foot."""
    renderer = NoticeRenderer(Settings().notice_font_file)
    day = date(2026, 12, 4)
    name, reason = "欧阳" * 40, REJECTION * 30
    notice = NoticeFacts(
        NoticeDecision.REJECTED, "郑州市公安局", "出生登记", "新生儿出生一件事",
        "410100202612040003", None, name, day, day, reason, "《条例》第五条", None, None,
    )  # fmt: skip

    pages = PdfReader(io.BytesIO(renderer.render(notice))).pages
    lines = [line for page in pages for line in page.extract_text().splitlines()]

    assert len(pages) == 2
    text = "".join(lines)
    assert f"{name}：" in text and reason in text and text.endswith("2026年12月4日")
    assert max(map(len, lines)) < len(name)


def test_a_notice_kept_without_parsing_is_still_checked_by_its_header(tmp_path: Path) -> None:
    """The desk skips only the whole-document parse of the PDF it rendered itself."""
    materials = LocalMaterialStore(tmp_path / "materials")
    with pytest.raises(MaterialRejected, match="not application/pdf"):
        materials.keep(
            b"<html>not a notice</html>",
            media_type="application/pdf",
            file_name="notice.pdf",
            name="受理通知书",
            made_here=True,
        )
