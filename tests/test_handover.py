"""送达方式 and 送达凭证: results reach the applicant by window, download or post, and a
bundle is delivered only once every handover has its proof (API or file drop)."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from harness import AUTH, Running, eventually, new_project_no, running_stack
from sqlalchemy import select

from adapters.simulators.courier import CourierSimulator
from contracts.catalog import Catalog
from contracts.personal_data import mask_fields
from contracts.samples import sample_application, sample_postal_address
from lianban.cli import main
from lianban.settings import Settings
from lianban.stack import Stack
from router.channels.couriers import HttpJsonCourier
from router.channels.waybills import WaybillSender
from router.domain.handovers import bundle_replied
from router.store import BundleRow, HandoverRow
from runtime.outbound import OutboundPolicy


@pytest.fixture
def courier() -> Iterator[CourierSimulator]:
    """A courier that loses its first answer after issuing the waybill."""
    courier = CourierSimulator(lose_answers=1)
    courier.server.start()
    yield courier
    courier.server.stop()


def _with_courier(
    settings: Settings, courier: CourierSimulator, tracking_seconds: float = 600
) -> Settings:
    # The courier listens on loopback: allow-listed, as an internal host must be.
    return settings.model_copy(
        update={
            "courier_url": courier.url,
            "courier_backoff_seconds": 0.05,
            "courier_tracking_seconds": tracking_seconds,
            "outbound_hosts": ("127.0.0.1",),
        }
    )


def _by_post(catalog: Catalog) -> dict[str, Any]:
    application = sample_application(catalog.bundle_types["newborn"], new_project_no())
    application["handover"] = {"method": "post", "address": sample_postal_address()}
    return application


def _handovers_once(running: Running, status_url: str, state: str) -> list[dict[str, Any]]:
    handovers: list[dict[str, Any]] = eventually(
        lambda: running.client.get(status_url).json()["handovers"],
        lambda handovers: bool(handovers) and all(h["state"] == state for h in handovers),
        timeout=30,
        message=f"handovers never all {state}",
    )
    return handovers


def _prove(running: Running, bundle_id: str, proof: dict[str, Any]) -> httpx.Response:
    return running.client.post(f"/v1/bundles/{bundle_id}/handovers/proof", json=proof)


def _window_proof(item: str | None, form_no: str) -> dict[str, Any]:
    return {
        "item": item,
        "source": "window",
        "recipient_name": "张三",
        "received_at": "2026-12-04T10:00:00+08:00",
        "signature_ref": form_no,
    }


def test_a_post_delivery_gets_one_waybill_and_ends_only_after_the_couriers_proof(
    settings: Settings,
    catalog: Catalog,
    courier: CourierSimulator,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    with running_stack(_with_courier(settings, courier), catalog) as running:
        receipt = running.submit(_by_post(catalog)).json()
        running.wait_for_reply(receipt["reply_url"])
        (handover,) = _handovers_once(running, receipt["status_url"], "in_transit")
        assert running.client.get(receipt["status_url"]).json()["state"] == "replied"

        # The courier issued one waybill, though its first answer was lost and retried.
        (waybill,) = courier.waybills.values()
        assert handover["item"] is None
        assert handover["waybill_no"] == waybill.waybill_no
        assert (courier.requests, handover["courier_attempts"]) == (2, 2)
        (shipment,) = courier.shipments.values()
        assert shipment.project_no == receipt["project_no"]
        assert shipment.recipient.model_dump() == sample_postal_address()

        bundle_id = receipt["bundle_id"]
        wrong_source = _prove(running, bundle_id, _window_proof(None, "F-1"))
        assert (wrong_source.status_code, wrong_source.json()["code"]) == (422, "proof_mismatch")
        tracking = courier.sign(waybill.waybill_no, "张三", "POD-8812")
        proof = {
            "source": "courier",
            "recipient_name": tracking.signer_name,
            "received_at": tracking.model_dump(mode="json")["signed_at"],
            "signature_ref": tracking.signature_ref,
            "waybill_no": "SIM9999999999",
        }
        other_waybill = _prove(running, bundle_id, proof)
        assert (other_waybill.status_code, other_waybill.json()["code"]) == (422, "proof_mismatch")
        proof["waybill_no"] = waybill.waybill_no
        delivered = _prove(running, bundle_id, proof)
        assert delivered.status_code == 200, delivered.text
        again = _prove(running, bundle_id, proof)
        conflicting = _prove(running, bundle_id, {**proof, "signature_ref": "POD-other"})
        monkeypatch.setenv("LIANBAN_DATABASE_URL", settings.database_url)
        assert main(["bundle", "show", bundle_id]) == 0
        shown = capsys.readouterr().out

    status = delivered.json()
    assert status["state"] == "delivered"
    (proved,) = status["handovers"]
    assert (proved["state"], proved["proof"]["signature_ref"]) == ("delivered", "POD-8812")
    assert again.status_code == 200 and again.json()["state"] == "delivered"
    assert (conflicting.status_code, conflicting.json()["code"]) == (409, "proof_conflict")
    steps = [event["state"] for event in status["timeline"]]
    after_reply = steps[steps.index("replied") :]
    assert [s for s in after_reply if s in ("handover_ready", "waybill_issued", "delivered")] == [
        "handover_ready",
        "waybill_issued",
        "delivered",
    ]
    assert f"delivered             (bundle) 邮寄送达 waybill {waybill.waybill_no}" in shown
    assert "— courier POD-8812" in shown
    # The timeline names the recipient masked.
    assert "张*" in status["timeline"][-1]["detail"]
    assert "张三" not in json.dumps(status["timeline"], ensure_ascii=False)


def test_the_couriers_signed_receipt_is_recorded_as_its_proof(
    settings: Settings, catalog: Catalog, courier: CourierSimulator
) -> None:
    settings = _with_courier(settings, courier, tracking_seconds=0.05)
    with running_stack(settings, catalog) as running:
        receipt = running.submit(_by_post(catalog)).json()
        running.wait_for_reply(receipt["reply_url"])
        (handover,) = _handovers_once(running, receipt["status_url"], "in_transit")
        courier.sign(handover["waybill_no"], "张三", "POD-0001")
        (delivered,) = _handovers_once(running, receipt["status_url"], "delivered")
        status = running.client.get(receipt["status_url"]).json()

    assert status["state"] == "delivered"
    assert delivered["proof"]["source"] == "courier"
    assert delivered["proof"]["signature_ref"] == "POD-0001"
    assert delivered["proof"]["waybill_no"] == handover["waybill_no"]
    (step,) = [event for event in status["timeline"] if event["state"] == "delivered"]
    assert step["actor"] == "router"


def test_handing_a_reply_over_again_asks_for_no_second_waybill(
    settings: Settings, catalog: Catalog, courier: CourierSimulator
) -> None:
    with running_stack(_with_courier(settings, courier), catalog) as running:
        receipt = running.submit(_by_post(catalog)).json()
        running.wait_for_reply(receipt["reply_url"])
        (handover,) = _handovers_once(running, receipt["status_url"], "in_transit")
        database = running.stack.database
        bundle_id = uuid.UUID(receipt["bundle_id"])
        # Every version of the reply (a corrected one included) hands its results over
        # through this step; here it runs again after the waybill was issued.
        with database.transaction() as session:
            bundle_replied(session, session.get_one(BundleRow, bundle_id))
        sender = WaybillSender(
            database, HttpJsonCourier(courier.url, OutboundPolicy(("127.0.0.1",)))
        )
        asked = sender.ask_due()
        with database.transaction() as session:
            rows = session.scalars(select(HandoverRow).where(HandoverRow.bundle_id == bundle_id))
            kept = [(row.state, row.waybill_no) for row in rows]

    assert asked == 0
    assert len(courier.waybills) == 1 and courier.requests == 2
    assert kept == [("in_transit", handover["waybill_no"])]


def test_per_item_window_handovers_end_on_their_proofs_through_the_api_and_the_file_drop(
    settings: Settings, catalog: Catalog, tmp_path: Path
) -> None:
    filedrop = tmp_path / "filedrop"
    settings = settings.model_copy(update={"filedrop_dir": filedrop})
    application = sample_application(catalog.bundle_types["newborn"], new_project_no())
    application["delivery"] = "per_item"  # 分别领取, at the window (the default 送达方式)
    with running_stack(settings, catalog) as running:
        receipt = running.submit(application).json()
        reply = running.wait_for_reply(receipt["reply_url"])
        handovers = _handovers_once(running, receipt["status_url"], "awaiting_collection")
        assert sorted(h["item"] for h in handovers) == sorted(i["item"] for i in reply["items"])
        *by_api, last = [h["item"] for h in handovers]
        for number, item in enumerate(by_api):
            proved = _prove(running, receipt["bundle_id"], _window_proof(item, f"F-{number}"))
            assert proved.status_code == 200, proved.text
        assert proved.json()["state"] == "replied", "one item is still at the window"

        dropped = {"project_no": receipt["project_no"], "proof": _window_proof(last, "F-last")}
        unknown = {"project_no": new_project_no(), "proof": _window_proof(last, "F-x")}
        for name, proof in (("unknown", unknown), (receipt["project_no"], dropped)):
            _drop(filedrop, f"{name}.proof.json", json.dumps(proof))
        status = eventually(
            lambda: running.client.get(receipt["status_url"]).json(),
            lambda status: status["state"] == "delivered",
            timeout=30,
            message="the dropped proof was never recorded",
        )
        notices = eventually(
            lambda: sorted(
                (filedrop / "outbox").glob(f"{receipt['project_no']}.*.item_notice.json")
            ),
            lambda found: len(found) == len(reply["items"]),
            timeout=30,
            message="the per-item notices never reached the file drop",
        )

    assert {h["proof"]["signature_ref"] for h in status["handovers"]} == {
        *(f"F-{n}" for n in range(len(by_api))),
        "F-last",
    }
    exported = [json.loads(path.read_text())["result"] for path in notices]
    assert sorted(r["item"] for r in exported) == sorted(h["item"] for h in handovers)
    assert all(r["state"] == "approved" for r in exported)
    assert (filedrop / "processed" / f"{receipt['project_no']}.proof.json").exists()
    reason = json.loads((filedrop / "failed" / "unknown.proof.json.reason.json").read_text())
    assert reason["code"] == "proof_refused"
    assert reason["message"] == f"no bundle with case number {unknown['project_no']}"


def _drop(filedrop: Path, name: str, text: str) -> None:
    """Put a file in the file drop's inbox the way the platform does: renamed when whole."""
    partial = filedrop / "inbox" / f".{name}.part"
    partial.write_text(text)
    partial.rename(partial.with_name(name))


def test_an_electronic_delivery_ends_on_the_platforms_record_of_the_download(
    settings: Settings, catalog: Catalog
) -> None:
    application = sample_application(catalog.bundle_types["newborn"], new_project_no())
    application["handover"] = {"method": "electronic"}
    with running_stack(settings, catalog) as running:
        receipt = running.submit(application).json()
        running.wait_for_reply(receipt["reply_url"])
        _handovers_once(running, receipt["status_url"], "awaiting_download")
        window = _prove(running, receipt["bundle_id"], _window_proof(None, "F-1"))
        download = {**_window_proof(None, "个人中心下载记录 D-77"), "source": "download"}
        downloaded = _prove(running, receipt["bundle_id"], download)

    assert (window.status_code, window.json()["code"]) == (422, "proof_mismatch")
    assert downloaded.status_code == 200, downloaded.text
    assert downloaded.json()["state"] == "delivered"


def test_personal_data_of_a_postal_address_is_masked_in_logs() -> None:
    masked = mask_fields({"handover": {"address": sample_postal_address()}})["handover"]

    assert masked["address"] == {
        "recipient": "张*",
        "mobile": "138****8000",
        "area_code": "410102",
        "address_line": "中原区示例路***",
        "postcode": "450000",
    }


def test_a_post_delivery_without_an_address_is_a_one_time_notice(
    intake_only: Stack, catalog: Catalog
) -> None:
    application = _by_post(catalog)
    del application["handover"]["address"]
    window_with_address = _by_post(catalog)
    window_with_address["handover"]["method"] = "window"
    window_with_address["handover"]["address"]["area_code"] = "410000"  # a province
    with httpx.Client(base_url=intake_only.base_url, headers=AUTH, timeout=30) as client:
        answers = [
            client.post("/v1/bundles", json=body, headers={"Idempotency-Key": body["project_no"]})
            for body in (application, window_with_address)
        ]

    assert [answer.status_code for answer in answers] == [422, 422]
    assert all(answer.json()["code"] == "application_problems" for answer in answers)
    missing = {(p["pointer"], p["code"]) for p in answers[0].json()["problems"]}
    assert ("/handover/address", "handover_address_required") in missing
    both = {(p["pointer"], p["code"]) for p in answers[1].json()["problems"]}
    assert ("/handover/address/area_code", "area_code_not_a_district") in both
    assert any(p["message_zh"].startswith("选择邮寄送达的") for p in answers[0].json()["problems"])
