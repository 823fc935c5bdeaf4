"""Personal data never reaches a log line unmasked: by field name, by checksum-validated
pattern anywhere in text, in library records and in tracebacks."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
import structlog
from hypothesis import given, settings
from hypothesis import strategies as st
from test_identity import RESIDENT_CHARS, resident_ids, usccs

from contracts.identity import (
    USCC_ALPHABET,
    resident_id_check_passes,
    resident_id_problem,
    uscc_check_passes,
    uscc_problem,
)
from contracts.personal_data import mask_fields, mask_text, unmasked_identifiers
from lianban.settings import Settings
from runtime.logs import configure_logging

RESIDENT_ID = "11010519491231002X"
CREDIT_CODE = "91350100M000100Y43"
NOT_AN_ID = "110105194912310021"  # the same with a wrong check character: an order number


def test_identifiers_in_text_are_masked_only_when_their_check_character_is_right() -> None:
    text = f"申请人{RESIDENT_ID}，企业{CREDIT_CODE}，电话13812345678，单号{NOT_AN_ID}"
    assert mask_text(text) == (
        f"申请人110105********002X，企业91350100********43，电话138****5678，单号{NOT_AN_ID}"
    )
    assert mask_text(f"{RESIDENT_ID}1 and 9{RESIDENT_ID}") == f"{RESIDENT_ID}1 and 9{RESIDENT_ID}"
    assert mask_text("postgresql+psycopg://lianban:s3cret@db/lianban") == (
        "postgresql+psycopg://lianban:***@db/lianban"
    )


def test_fields_inside_soap_and_json_bodies_are_masked() -> None:
    soap = (
        '<tns:ApplicantName xsi:type="xs:string">张三丰</tns:ApplicantName>'
        "<tns:ApplicantIdNumber>G1234567</tns:ApplicantIdNumber><tns:Status>OK</tns:Status>"
    )
    assert mask_text(soap) == (
        '<tns:ApplicantName xsi:type="xs:string">张**</tns:ApplicantName>'
        "<tns:ApplicantIdNumber>********</tns:ApplicantIdNumber><tns:Status>OK</tns:Status>"
    )
    body = '{"name": "王小明", "mobile":"13812345678", "item": "birth_registration"}'
    assert mask_text(body) == (
        '{"name": "王**", "mobile":"138****5678", "item": "birth_registration"}'
    )


def test_fields_are_masked_by_name_however_deep() -> None:
    event = {
        "applicant": {"name": "张三丰", "id_number": RESIDENT_ID, "mobile": "13812345678"},
        "form": {"parents": [{"ApplicantName": "李四", "sfzh": "G12345678"}]},
        "enterprise": {"uscc": CREDIT_CODE, "legal_representative": "王五"},
        "error": ValueError(f"bad {RESIDENT_ID}"),
        "count": 3,
    }
    assert mask_fields(event) == {
        "applicant": {"name": "张**", "id_number": "110105********002X", "mobile": "138****5678"},
        "form": {"parents": [{"ApplicantName": "李*", "sfzh": "*********"}]},
        "enterprise": {"uscc": "91350100********43", "legal_representative": "王*"},
        "error": "ValueError('bad 110105********002X')",
        "count": 3,
    }


def test_every_log_line_is_masked(capsys: pytest.CaptureFixture[str]) -> None:
    configure_logging("debug")
    structlog.get_logger("router").info(
        f"filed for {RESIDENT_ID}", applicant={"name": "张三丰", "uscc": CREDIT_CODE}
    )
    try:
        raise RuntimeError(f"department refused {RESIDENT_ID}")
    except RuntimeError:
        structlog.get_logger("router").exception("failed")
        logging.getLogger("zeep.transports").exception("HTTP Post to %s", RESIDENT_ID)
    logging.getLogger("httpx").info('HTTP Request: GET http://d/?id=%s "200 OK"', RESIDENT_ID)
    logging.getLogger("uvicorn.error").warning("from %s", CREDIT_CODE)

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    assert [line.get("logger") for line in lines] == [
        None,
        None,
        "zeep.transports",
        "httpx",
        "uvicorn.error",
    ]
    text = json.dumps(lines, ensure_ascii=False)
    assert unmasked_identifiers(text) == [] and "张三丰" not in text
    assert "110105********002X" in lines[0]["event"] and lines[0]["applicant"]["name"] == "张**"
    assert "department refused 110105********002X" in lines[1]["exception"]
    assert "department refused 110105********002X" in lines[2]["exception"]


def test_settings_never_render_credentials() -> None:
    settings = Settings(
        database_url="postgresql+psycopg://lianban:s3cret@db/lianban",
        broker_url="amqps://lianban-router:pw0rd@mq/lianban",
        rabbitmq_management_url="https://admin:adm1n@mq:15671",
    )
    rendered = repr(settings)
    assert "s3cret" not in rendered and "pw0rd" not in rendered and "adm1n" not in rendered


# --- properties ------------------------------------------------------------------------------

noise = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), max_size=20)


@settings(max_examples=200)
@given(st.lists(st.one_of(resident_ids, usccs, noise), max_size=6))
def test_masked_text_holds_no_identifier(parts: list[str]) -> None:
    masked = mask_text(" ".join(parts))
    assert unmasked_identifiers(masked) == []
    assert mask_text(masked) == masked


@settings(max_examples=100)
@given(
    st.recursive(
        st.one_of(resident_ids, usccs, noise, st.integers()),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(
                st.sampled_from(["id_number", "uscc", "name", "phone", "form", "detail"]),
                children,
                max_size=3,
            ),
        ),
        max_leaves=12,
    )
)
def test_masked_structures_hold_no_identifier(value: Any) -> None:
    rendered = json.dumps(mask_fields({"event": value}), ensure_ascii=False)
    assert unmasked_identifiers(rendered) == []


@settings(max_examples=200)
@given(resident_ids)
def test_the_loose_resident_id_check_passes_every_valid_id(value: str) -> None:
    assert resident_id_check_passes(value)
    assert unmasked_identifiers(f"x {value} y") == [value]


@settings(max_examples=200)
@given(usccs)
def test_the_loose_credit_code_check_passes_every_valid_code(value: str) -> None:
    assert uscc_check_passes(value)


@settings(max_examples=200)
@given(resident_ids, st.integers(0, 17), st.sampled_from(RESIDENT_CHARS))
def test_the_loose_resident_id_check_fails_any_substitution(
    value: str, position: int, char: str
) -> None:
    changed = value[:position] + char + value[position + 1 :]
    if changed != value and (position == 17 or char != "X"):
        assert not resident_id_check_passes(changed)


@settings(max_examples=200)
@given(resident_ids, st.integers(0, 15))
def test_an_adjacent_transposition_in_a_resident_id_is_rejected(value: str, position: int) -> None:
    swapped = value[:position] + value[position + 1] + value[position] + value[position + 2 :]
    if swapped != value:
        assert not resident_id_check_passes(swapped)
        assert resident_id_problem(swapped) is not None


@settings(max_examples=200)
@given(usccs, st.integers(0, 15))
def test_an_adjacent_transposition_in_a_credit_code_is_rejected(value: str, position: int) -> None:
    swapped = value[:position] + value[position + 1] + value[position] + value[position + 2 :]
    if swapped != value:
        assert not uscc_check_passes(swapped)
        assert uscc_problem(swapped) is not None


@settings(max_examples=200)
@given(usccs, st.integers(0, 17), st.sampled_from(USCC_ALPHABET))
def test_the_loose_credit_code_check_fails_any_substitution(
    value: str, position: int, char: str
) -> None:
    changed = value[:position] + char + value[position + 1 :]
    if changed != value:
        assert not uscc_check_passes(changed)


# --- finding 9: what an outside probe found unmasked ------------------------------------------


def test_identifiers_after_escaped_bytes_are_masked() -> None:
    """zeep logs a SOAP body as bytes: the character before an ID number is an escape."""
    body = "<ns0:Remark>申请人身份证号" + RESIDENT_ID + "</ns0:Remark>"
    as_bytes = repr(body.encode())
    as_json = json.dumps(body)
    for logged in (as_bytes, as_json):
        masked = mask_text(logged)
        assert RESIDENT_ID not in masked and "110105********002X" in masked
    assert unmasked_identifiers(as_bytes) == [RESIDENT_ID]


@pytest.mark.parametrize(
    ("written", "masked"),
    [
        ("+8613812345678", "+86138****5678"),
        ("0086 138 1234 5678", "0086 138****5678"),
        ("电话138-1234-5678。", "电话138****5678。"),
        ("身份证 110105 19491231 002X 号", "身份证 110105********002X 号"),
        ("110105-19491231-002X", "110105********002X"),
    ],
)
def test_country_codes_and_grouped_digits_are_masked(written: str, masked: str) -> None:
    assert mask_text(written) == masked
    assert unmasked_identifiers(mask_text(written)) == []


def test_every_name_like_key_is_masked_but_names_of_things_are_not() -> None:
    event = {
        "father_name": "张大山",
        "mother_name": "李小红",
        "psn_name": "王五",
        "file_name": "a.pdf",
    }
    assert mask_fields(event) == {
        "father_name": "张**",
        "mother_name": "李**",
        "psn_name": "王*",
        "file_name": "a.pdf",
    }
    soap = "<ns0:FatherName>张大山</ns0:FatherName><ns0:MotherIdNumber>G123</ns0:MotherIdNumber>"
    assert (
        mask_text(soap)
        == "<ns0:FatherName>张**</ns0:FatherName><ns0:MotherIdNumber>****</ns0:MotherIdNumber>"
    )


def test_a_masked_log_line_stays_json(capsys: pytest.CaptureFixture[str]) -> None:
    """A bytes body and an escaped JSON body logged by a library: each line still parses."""
    configure_logging("debug")
    soap = (
        "<ns0:FatherName>张大山</ns0:FatherName>"
        f"<ns0:Mobile>+86 13812345678</ns0:Mobile>{RESIDENT_ID}"
    )
    logging.getLogger("zeep.transports").debug("HTTP Post to %s:\n%s", "http://d", soap.encode())
    logging.getLogger("httpx").debug("body %s", json.dumps({"mother_name": '"李"小红'}))
    structlog.get_logger("router").info("filedrop.package", package="申请+8613812345678.zip")

    lines = [json.loads(line) for line in capsys.readouterr().err.splitlines()]
    events = " ".join(str(line["event"]) for line in lines) + str(lines[2]["package"])
    assert len(lines) == 3
    assert unmasked_identifiers(events) == []
    for secret in ("13812345678", "\\xe5\\xbc\\xa0", "小红"):  # \xe5\xbc\xa0 is 张 as bytes
        assert secret not in events


@pytest.mark.parametrize(
    "line",
    ["line 5 11010519491231002X", "x::0 11010519491231002X", "11010519491231002X 7 items"],
)
def test_a_number_one_separator_away_does_not_hide_an_identifier(line: str) -> None:
    # pytest's captured-log lines put `file::lineno ` right before the message.
    assert unmasked_identifiers(line) == ["11010519491231002X"]
    assert "110105********002X" in mask_text(line)
