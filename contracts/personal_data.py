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

__all__ = [
    "mask_address",
    "mask_fields",
    "mask_name",
    "mask_phone",
    "mask_text",
    "unmasked_identifiers",
]

# Digits or code characters right beside it mean a longer number, not an identifier in it,
# unless they close an escape: a logged bytes body (`b'\xe5\x8f\xb7110105…'`) or a
# JSON-escaped one (`\u53f7110105…`) puts hex digits right before the number. A digit one
# separator away is another number (`line 5 110105…`): the identifier is still masked.
_BEFORE = r"(?:(?<=\\x[0-9a-fA-F]{2})|(?<=\\u[0-9a-fA-F]{4})|(?<![0-9A-Z]))"
# Numbers are also written in groups: `110105 19491231 002X`, `138-1234-5678`.
_RESIDENT_ID = re.compile(_BEFORE + r"[0-9](?:[ -]?[0-9]){16}[ -]?[0-9Xx](?![0-9A-Z])")
_USCC = re.compile(_BEFORE + r"[0-9A-HJ-NPQRTUWXY]{18}(?![0-9A-Z])")
# A mobile number, perhaps after the country code (+86, 0086, 86).
_MOBILE = re.compile(
    r"(?:(?<=\\x[0-9a-fA-F]{2})|(?<=\\u[0-9a-fA-F]{4})|(?<![0-9]))"
    r"(?P<country>(?:\+|00)?86[ -]?)?(?P<number>1[3-9][0-9](?:[ -]?[0-9]){8})(?![0-9])"
)
_SEPARATORS = re.compile(r"[ -]")
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


def mask_address(value: str) -> str:
    """Keep the first six characters (the district, usually): 金水区花园路1号 → 金水区花园路***."""
    return value[:6] + "***" if len(value) > 6 else "*" * len(value)


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
        found = _SEPARATORS.sub("", match.group())
        return mask_resident_id(found) if resident_id_check_passes(found.upper()) else match.group()

    def uscc(match: re.Match[str]) -> str:
        found = match.group()
        return mask_uscc(found) if uscc_check_passes(found) else found

    def field(match: re.Match[str]) -> str:
        mask, value = _mask_for(match["key"]), match["value"]
        if mask is None:
            return match["open"] + value
        # An escaped value (`\u5f20…`, `\\xe5…`) masked in part could leave a lone
        # backslash and break the JSON line around it: mask it whole.
        return match["open"] + ("***" if "\\" in value else mask(value))

    def mobile(match: re.Match[str]) -> str:
        return (match["country"] or "") + mask_phone(_SEPARATORS.sub("", match["number"]))

    text = _XML_FIELD.sub(field, text)
    text = _JSON_FIELD.sub(field, text)
    text = _RESIDENT_ID.sub(resident_id, text)
    text = _USCC.sub(uscc, text)
    text = _MOBILE.sub(mobile, text)
    return _URL_PASSWORD.sub(r"\g<head>***\g<at>", text)


def unmasked_identifiers(text: str) -> list[str]:
    """The checksum-valid resident ID numbers and credit codes in `text`, unmasked."""
    compact = (_SEPARATORS.sub("", m.group()) for m in _RESIDENT_ID.finditer(text))
    ids = [found for found in compact if resident_id_check_passes(found)]
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
            "recipient",
        ),
        mask_name,
    ),
    **dict.fromkeys(("addressline", "detailaddress", "sjrdz"), mask_address),
    **dict.fromkeys(
        ("phone", "mobile", "telephone", "tel", "contactphone", "lxdh", "sjhm"), mask_phone
    ),
}


# Keys ending in "name" that name a thing, not a person; every other one is masked
# (father_name, mother_name, psn_name, …).
_NOT_A_PERSON = frozenset(
    (
        "filename",
        "certificatename",
        "certname",
        "issuername",
        "itemname",
        "itemnamezh",
        "namezh",
        "servicename",
        "departmentname",
        "tablename",
        "regionname",
        "drivername",
        "classname",
        "propertyname",
        "hostname",
        "queuename",
        "exchangename",
        "loggername",
        "bundlename",
        "typename",
        "eventname",
    )
)
_KEY_SUFFIX_MASKS: tuple[tuple[str, Callable[[str], str]], ...] = (
    ("name", mask_name),
    ("idnumber", _mask_identifier),
    ("idcard", _mask_identifier),
    ("phone", mask_phone),
    ("mobile", mask_phone),
)


def _mask_for(key: str) -> Callable[[str], str] | None:
    """The mask for a value under `key`: by its name, or by how the name ends."""
    normalised = _normalised(key)
    exact = _FIELD_MASKS.get(normalised)
    if exact is not None or normalised in _NOT_A_PERSON:
        return exact
    return next((mask for suffix, mask in _KEY_SUFFIX_MASKS if normalised.endswith(suffix)), None)


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
    mask = _mask_for(key) if key is not None else None
    if isinstance(value, int):
        return mask(str(value)) if mask is not None else value
    text = value if isinstance(value, str) else repr(value)
    return mask(text) if mask is not None else mask_text(text)
