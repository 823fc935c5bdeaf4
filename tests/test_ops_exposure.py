"""Finding 9 on the operators' side: a dead letter shown on the ops page is masked, and
every answer, the page's and the API's, forbids framing, sniffing and foreign content."""

from __future__ import annotations

import json

import httpx
import pytest

from contracts.personal_data import unmasked_identifiers
from lianban.stack import Stack
from router.operations.dlq import DeadLetter
from router.operations.overview import DeadLetterEntry

RESIDENT_ID = "11010519491231002X"


def _letter(body: bytes, reason: str = "refused") -> DeadLetter:
    return DeadLetter(
        queue="lianban.dept.police.parking",
        source_queue="lianban.dept.police",
        message_id="m-1",
        bundle_id="b-1",
        reason=reason,
        count=1,
        died_at=None,
        replayed=0,
        body=body,
    )


def test_a_dead_letter_on_the_ops_page_is_masked() -> None:
    dispatch = {
        "item": "birth_registration",
        "form": {"father_name": "张大山", "father_id_number": RESIDENT_ID, "phone": "13812345678"},
    }
    entry = DeadLetterEntry.of(
        _letter(json.dumps(dispatch, ensure_ascii=False).encode(), f"bad id {RESIDENT_ID}"), None
    )
    shown = entry.model_dump_json()
    assert unmasked_identifiers(shown) == []
    assert "张大山" not in shown and "13812345678" not in shown
    assert json.loads(entry.body)["item"] == "birth_registration"

    not_json = DeadLetterEntry.of(_letter(f"<IdNumber>{RESIDENT_ID}</IdNumber>".encode()), None)
    assert RESIDENT_ID not in not_json.body


@pytest.mark.parametrize("path", ["/ops", "/ops/static/ops.js", "/healthz", "/v1/bundles/x"])
def test_every_answer_forbids_framing_sniffing_and_foreign_content(
    intake_only: Stack, path: str
) -> None:
    response = httpx.get(intake_only.base_url + path)
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["X-Content-Type-Options"] == "nosniff"
    policy = response.headers["Content-Security-Policy"]
    assert "default-src 'self'" in policy and "frame-ancestors 'none'" in policy
