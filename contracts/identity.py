"""Validation, generation and masking of the two identity numbers a bundle carries.

An applicant is named by a resident ID (居民身份证号码, GB 11643-1999) and a legal entity by a
unified social credit code (统一社会信用代码, GB 32100-2015). Department systems reject a
bundle whose numbers are malformed, so the router checks them at the boundary and reports a
short problem code instead of forwarding a request that would bounce. The generators exist so
that fixtures are valid by construction; the maskers keep personal data out of logs.

Plain stdlib only: this module imports nothing else of Lianban's.
"""

from __future__ import annotations

import datetime

__all__ = [
    "USCC_ALPHABET",
    "make_resident_id",
    "make_uscc",
    "mask_resident_id",
    "mask_uscc",
    "resident_id_birth_date",
    "resident_id_check_passes",
    "resident_id_problem",
    "uscc_check_passes",
    "uscc_problem",
]

_DIGITS = frozenset("0123456789")

# --- Resident ID (GB 11643-1999) -------------------------------------------------------------

_RESIDENT_ID_LENGTH = 18
# ISO 7064 MOD 11-2: weight i is 2**(17 - i) mod 11 for the 17 body digits.
_RESIDENT_ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
# Indexed by (weighted sum mod 11); 'X' stands for the value 10.
_RESIDENT_ID_CHECK_CHARS = "10X98765432"

# First two digits of a GB/T 2260 region code. 71 is Taiwan, 81 Hong Kong, 82 Macau;
# 83 is the region of residence permits issued to Taiwan residents (830000).
_PROVINCE_CODES = frozenset(
    (
        *range(11, 16),
        *range(21, 24),
        *range(31, 38),
        *range(41, 47),
        *range(50, 55),
        *range(61, 66),
        71,
        81,
        82,
        83,
    )
)

_EARLIEST_BIRTH = datetime.date(1900, 1, 1)


def _resident_id_check_char(body: str) -> str:
    total = sum(int(char) * weight for char, weight in zip(body, _RESIDENT_ID_WEIGHTS, strict=True))
    return _RESIDENT_ID_CHECK_CHARS[total % 11]


def _is_ascii_digits(text: str) -> bool:
    # str.isdigit() also accepts '²' and full-width or Arabic-Indic digits; ids are ASCII only.
    return all(char in _DIGITS for char in text)


def _region_problem(region: str) -> str | None:
    if region == "000000" or int(region[:2]) not in _PROVINCE_CODES:
        return "region"
    return None


def _parse_birth_date(digits: str) -> datetime.date | None:
    try:
        return datetime.date(int(digits[:4]), int(digits[4:6]), int(digits[6:8]))
    except ValueError:  # month 13, 30 February, year 0 ...
        return None


def _birth_date_in_range(birth: datetime.date, today: datetime.date) -> bool:
    return _EARLIEST_BIRTH <= birth <= today


def resident_id_problem(value: str, *, today: datetime.date | None = None) -> str | None:
    """Return None if ``value`` is a valid 18-character resident ID, else a problem code.

    Problem codes, checked in this order: "length", "format", "region", "birth_date",
    "checksum". ``today`` bounds the birth date and defaults to the local date; tests pass it
    to stay deterministic.
    """
    if len(value) != _RESIDENT_ID_LENGTH:
        return "length"
    # Only uppercase X: a lowercase x is a transcription the department systems refuse.
    if not _is_ascii_digits(value[:17]) or value[17] not in "0123456789X":
        return "format"
    if (problem := _region_problem(value[:6])) is not None:
        return problem
    birth = _parse_birth_date(value[6:14])
    if birth is None or not _birth_date_in_range(birth, today or datetime.date.today()):
        return "birth_date"
    if value[17] != _resident_id_check_char(value[:17]):
        return "checksum"
    return None


def resident_id_check_passes(value: str) -> bool:
    """Whether ``value`` has a resident ID's shape and check character, whatever its region
    and birth date: loose on purpose, to find ID numbers in text (a log line) and mask them."""
    return (
        len(value) == _RESIDENT_ID_LENGTH
        and _is_ascii_digits(value[:17])
        and value[17] == _resident_id_check_char(value[:17])
    )


def resident_id_birth_date(value: str) -> datetime.date:
    """The birth date encoded in a valid resident ID; ValueError (with the problem) otherwise."""
    problem = resident_id_problem(value)
    if problem is not None:
        raise ValueError(f"invalid resident ID: {problem}")
    birth = _parse_birth_date(value[6:14])
    assert birth is not None  # resident_id_problem has already parsed it
    return birth


def make_resident_id(region: str, birth: datetime.date, sequence: int) -> str:
    """Build a valid resident ID, for fixtures.

    ``region`` is the 6-digit address code, ``sequence`` the 3-digit order code 0..999 (its
    parity is the sex: odd for men, even for women). The check character is computed.
    """
    if len(region) != 6 or not _is_ascii_digits(region) or _region_problem(region) is not None:
        raise ValueError(f"region must be 6 digits with a GB/T 2260 province code: {region!r}")
    if not _birth_date_in_range(birth, datetime.date.today()):
        raise ValueError(f"birth date must be between {_EARLIEST_BIRTH} and today: {birth}")
    if not 0 <= sequence <= 999:
        raise ValueError(f"sequence must be 0..999: {sequence}")
    body = f"{region}{birth:%Y%m%d}{sequence:03d}"
    return body + _resident_id_check_char(body)


# --- Unified social credit code (GB 32100-2015) ----------------------------------------------

_USCC_LENGTH = 18
# 31 characters: the digits and the capitals without I, O, Z, S, V (easily misread).
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
_USCC_VALUES = {char: index for index, char in enumerate(USCC_ALPHABET)}
# Weight i is 3**i mod 31 for the 17 body characters.
_USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
# 1 机构编制, 5 民政, 9 工商 (market regulation), A 中央军委改革和编制办公室,
# N 农业 (rural collectives), Y 其他. The letters are legitimate first characters.
_REGISTRATION_AUTHORITIES = frozenset("159ANY")


def _uscc_check_char(body: str) -> str:
    total = sum(
        _USCC_VALUES[char] * weight for char, weight in zip(body, _USCC_WEIGHTS, strict=True)
    )
    return USCC_ALPHABET[(31 - total % 31) % 31]


def uscc_problem(value: str) -> str | None:
    """Return None if ``value`` is a valid unified social credit code, else a problem code.

    Problem codes, checked in this order: "length", "charset", "registration_authority",
    "org_type", "region", "checksum". Lowercase letters are outside the alphabet ("charset").
    """
    if len(value) != _USCC_LENGTH:
        return "length"
    if any(char not in _USCC_VALUES for char in value):
        return "charset"
    if value[0] not in _REGISTRATION_AUTHORITIES:
        return "registration_authority"
    # Deliberately loose: GB 32100 ties the valid types to the authority, but that table
    # changes with administrative reform and is the departments' business, not ours.
    if value[1] == "0":
        return "org_type"
    if not _is_ascii_digits(value[2:8]):
        return "region"
    if value[17] != _uscc_check_char(value[:17]):
        return "checksum"
    return None


def uscc_check_passes(value: str) -> bool:
    """Whether ``value`` is 18 characters of the alphabet with a valid check character,
    whatever its authority, type and region: loose on purpose, to find codes in text."""
    return (
        len(value) == _USCC_LENGTH
        and all(char in _USCC_VALUES for char in value)
        and value[17] == _uscc_check_char(value[:17])
    )


def make_uscc(registration_authority: str, org_type: str, region: str, org_code: str) -> str:
    """Build a valid unified social credit code, for fixtures.

    ``org_code`` is the 9-character organisation code body (positions 9-17), in the alphabet.
    The check character (position 18) is computed.
    """
    if len(registration_authority) != 1 or registration_authority not in _REGISTRATION_AUTHORITIES:
        raise ValueError(
            f"registration authority must be one of 1 5 9 A N Y: {registration_authority!r}"
        )
    if len(org_type) != 1 or org_type not in _USCC_VALUES or org_type == "0":
        raise ValueError(f"org type must be one alphabet character other than 0: {org_type!r}")
    if len(region) != 6 or not _is_ascii_digits(region):
        raise ValueError(f"region must be 6 digits: {region!r}")
    if len(org_code) != 9 or any(char not in _USCC_VALUES for char in org_code):
        raise ValueError(f"org code must be 9 characters of {USCC_ALPHABET}: {org_code!r}")
    body = f"{registration_authority}{org_type}{region}{org_code}"
    return body + _uscc_check_char(body)


# --- Masking ---------------------------------------------------------------------------------


def _mask(value: str, length: int, keep_head: int, keep_tail: int) -> str:
    # A value of the wrong length may be something else entirely (a phone number, a typo'd
    # id), and we cannot tell which characters are safe to show, so it is masked whole.
    if len(value) != length:
        return "*" * len(value)
    return value[:keep_head] + "*" * (length - keep_head - keep_tail) + value[length - keep_tail :]


def mask_resident_id(value: str) -> str:
    """Keep the region (first 6) and last 4 characters: ``110105********1234``.

    A value that is not 18 characters long is masked entirely.
    """
    return _mask(value, _RESIDENT_ID_LENGTH, 6, 4)


def mask_uscc(value: str) -> str:
    """Keep the first 8 (authority, type, region) and last 2 characters: ``91350100********43``.

    A value that is not 18 characters long is masked entirely.
    """
    return _mask(value, _USCC_LENGTH, 8, 2)
