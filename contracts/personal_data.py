"""Personal data masking (个人信息去标识化) for anything written to a log or an audit record.

Two ways, both applied:

- structurally, by field name: a value under a key that names a person's ID number, credit
  code, name or phone is masked whatever it looks like (`mask_fields`);
- by pattern, anywhere in text: 18-character resident ID numbers and unified social credit
  codes whose check character is right (so an order number is left alone), mainland
  mobile numbers, passwords in URLs, and the fields above inside XML or JSON text (a SOAP
  envelope or a REST body a library logs) (`mask_text`).

`unmasked_identifiers` finds what `mask_text` would have masked; the test suite's log
scanner uses it to fail a run whose output holds one.

Plain stdlib and `contracts.identity` only: the router and the adapters both log.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from typing import Any

from contracts.identity import (
    mask_resident_id,
    mask_uscc,
    resident_id_check_passes,
    uscc_check_passes,
)

__all__ = ["mask_fields", "mask_name", "mask_phone", "mask_text", "unmasked_identifiers"]

# Digits or code characters on either side mean a longer number, not an identifier in it.
_RESIDENT_ID = re.compile(r"(?<![0-9A-Z])[0-9]{17}[0-9Xx](?![0-9A-Z])")
_USCC = re.compile(r"(?<![0-9A-Z])[0-9A-HJ-NPQRTUWXY]{18}(?![0-9A-Z])")
_MOBILE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")
# scheme://user:password@host — a password in a database or broker URL.
_URL_PASSWORD = re.compile(r"(?P<head>[a-z][a-z0-9+.-]*://[^:/@\s]*:)[^@\s]+(?P<at>@)")
# Fields inside text: an XML element (a SOAP body) or a JSON member (a REST body).
_XML_FIELD = re.compile(
    r"(?P<open><(?:[\w.-]+:)?(?P<key>[A-Za-z_][\w.-]*)(?:\s[^>]*)?>)(?P<value>[^<]+)(?=</)"
)
_JSON_FIELD = re.compile(
    r'(?P<open>"(?P<key>[A-Za-z_]\w*)"\s*:\s*")(?P<value>(?:[^"\\]|\\.)*)(?=")'
)


def mask_name(value: str) -> str:
    """Keep the family name's first character: 张三丰 → 张**."""
    return value[:1] + "*" * (len(value) - 1) if len(value) > 1 else "*" * len(value)


def mask_phone(value: str) -> str:
    """Keep the carrier prefix and the last four digits: 13812345678 → 138****5678."""
    if len(value) < 11:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def _mask_identifier(value: str) -> str:
    if "*" in value:
        return value  # masked already: no whole identifier has a star in it
    if resident_id_check_passes(value.upper()):
        return mask_resident_id(value)
    if uscc_check_passes(value):
        return mask_uscc(value)
    return "*" * len(value)


def mask_text(text: str) -> str:
    """Mask every checksum-valid ID number and credit code, mobile number and URL password."""

    def resident_id(match: re.Match[str]) -> str:
        found = match.group()
        return mask_resident_id(found) if resident_id_check_passes(found.upper()) else found

    def uscc(match: re.Match[str]) -> str:
        found = match.group()
        return mask_uscc(found) if uscc_check_passes(found) else found

    def field(match: re.Match[str]) -> str:
        mask = _FIELD_MASKS.get(_normalised(match["key"]))
        return match["open"] + (mask(match["value"]) if mask else match["value"])

    text = _XML_FIELD.sub(field, text)
    text = _JSON_FIELD.sub(field, text)
    text = _RESIDENT_ID.sub(resident_id, text)
    text = _USCC.sub(uscc, text)
    text = _MOBILE.sub(lambda match: mask_phone(match.group()), text)
    return _URL_PASSWORD.sub(r"\g<head>***\g<at>", text)


def unmasked_identifiers(text: str) -> list[str]:
    """The checksum-valid resident ID numbers and credit codes in `text`, unmasked."""
    ids = [m.group() for m in _RESIDENT_ID.finditer(text) if resident_id_check_passes(m.group())]
    codes = [m.group() for m in _USCC.finditer(text) if uscc_check_passes(m.group())]
    return ids + [code for code in codes if code not in ids]


def _normalised(key: str) -> str:
    return re.sub(r"[^a-z0-9]", "", key.lower())


# Field names, compared lowercased without separators (ApplicantIdNumber = applicant_id_number).
_FIELD_MASKS: dict[str, Callable[[str], str]] = {
    **dict.fromkeys(
        ("idnumber", "applicantidnumber", "idcard", "residentid", "sfzh", "zjhm", "certno"),
        _mask_identifier,
    ),
    **dict.fromkeys(("uscc", "creditcode", "unifiedsocialcreditcode", "tyshxydm"), mask_uscc),
    **dict.fromkeys(
        (
            "name",
            "applicantname",
            "legalrepresentative",
            "contact",
            "contactname",
            "fullname",
            "xm",
            "applicant",
        ),
        mask_name,
    ),
    **dict.fromkeys(
        ("phone", "mobile", "telephone", "tel", "contactphone", "lxdh", "sjhm"), mask_phone
    ),
}


def mask_fields(value: Any, key: str | None = None) -> Any:
    """`value` with personal data masked: by field name, then by pattern in every string,
    through nested mappings and sequences. Other objects are rendered with `repr` first, so
    nothing reaches a log unscanned."""
    if isinstance(value, Mapping):
        return {k: mask_fields(v, str(k)) for k, v in value.items()}
    if isinstance(value, list | tuple | set | frozenset):
        return [mask_fields(v, key) for v in value]
    if value is None or isinstance(value, bool | float):
        return value
    mask = _FIELD_MASKS.get(_normalised(key)) if key is not None else None
    if isinstance(value, int):
        return mask(str(value)) if mask is not None else value
    text = value if isinstance(value, str) else repr(value)
    return mask(text) if mask is not None else mask_text(text)
