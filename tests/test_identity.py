"""Tests for contracts.identity: resident IDs (GB 11643) and credit codes (GB 32100).

The property tests do not reuse the module's weight tables: they check the defining identities
of the two check systems, with weights derived from their formulas, so a typo in a table fails.
- ISO 7064 MOD 11-2: sum(a_i * 2**(17 - i)) over all 18 characters (X = 10) is 1 mod 11.
- GB 32100: sum(v_i * 3**i) over the 17 body characters, plus the check value, is 0 mod 31.
"""

from __future__ import annotations

import datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from contracts.identity import (
    USCC_ALPHABET,
    make_resident_id,
    make_uscc,
    mask_resident_id,
    mask_uscc,
    resident_id_birth_date,
    resident_id_problem,
    uscc_problem,
)

TODAY = datetime.date.today()
PROVINCES = [
    *range(11, 16), *range(21, 24), *range(31, 38), *range(41, 47),
    *range(50, 55), *range(61, 66), 71, 81, 82,
]  # fmt: skip
RESIDENT_CHARS = "0123456789X"


# --- independent reference identities --------------------------------------------------------


def mod11_2_residue(value: str) -> int:
    values = [10 if char == "X" else int(char) for char in value]
    return sum(v * pow(2, 17 - i, 11) for i, v in enumerate(values)) % 11


def with_resident_check(body: str) -> str:
    """Append the one check character that satisfies MOD 11-2 (found by search, not table)."""
    [check] = [c for c in RESIDENT_CHARS if mod11_2_residue(body + c) == 1]
    return body + check


def mod31_residue(value: str) -> int:
    body = sum(USCC_ALPHABET.index(c) * pow(3, i, 31) for i, c in enumerate(value[:17]))
    return (body + USCC_ALPHABET.index(value[17])) % 31


def with_uscc_check(body: str) -> str:
    [check] = [c for c in USCC_ALPHABET if mod31_residue(body + c) == 0]
    return body + check


# --- strategies ------------------------------------------------------------------------------

regions = st.builds(
    lambda province, rest: f"{province}{rest:04d}",
    st.sampled_from(PROVINCES),
    st.integers(0, 9999),
)
births = st.dates(min_value=datetime.date(1900, 1, 1), max_value=TODAY)
sequences = st.integers(0, 999)
resident_ids = st.builds(make_resident_id, regions, births, sequences)

uscc_chars = st.sampled_from(USCC_ALPHABET)
usccs = st.builds(
    make_uscc,
    st.sampled_from("159ANY"),
    st.sampled_from(USCC_ALPHABET[1:]),
    st.text("0123456789", min_size=6, max_size=6),
    st.text(USCC_ALPHABET, min_size=9, max_size=9),
)


# --- resident ID: hand-checked vectors -------------------------------------------------------


def test_widely_cited_example_verifies() -> None:
    # 11010519491231002X, weights 7 9 10 5 8 4 2 1 6 3 7 9 10 5 8 4 2:
    #   1*7 + 1*9 + 0*10 + 1*5 + 0*8 + 5*4 + 1*2 + 9*1 + 4*6 + 9*3
    #   + 1*7 + 2*9 + 3*10 + 1*5 + 0*8 + 0*4 + 2*2
    #   = 7+9+0+5+0+20+2+9+24+27+7+18+30+5+0+0+4 = 167
    # 167 mod 11 = 2 (11*15 = 165), and "10X98765432"[2] = "X".
    assert resident_id_problem("11010519491231002X") is None
    assert resident_id_birth_date("11010519491231002X") == datetime.date(1949, 12, 31)
    assert make_resident_id("110105", datetime.date(1949, 12, 31), 2) == "11010519491231002X"


def test_own_vector_verifies() -> None:
    # 44030819900307123?, weights as above:
    #   4*7 + 4*9 + 0*10 + 3*5 + 0*8 + 8*4 + 1*2 + 9*1 + 9*6 + 0*3
    #   + 0*7 + 3*9 + 0*10 + 7*5 + 1*8 + 2*4 + 3*2
    #   = 28+36+0+15+0+32+2+9+54+0+0+27+0+35+8+8+6 = 260
    # 260 mod 11 = 7 (11*23 = 253), and "10X98765432"[7] = "5".
    assert make_resident_id("440308", datetime.date(1990, 3, 7), 123) == "440308199003071235"
    assert resident_id_problem("440308199003071235") is None
    assert resident_id_problem("440308199003071234") == "checksum"


# --- resident ID: properties -----------------------------------------------------------------


@settings(max_examples=200)
@given(regions, births, sequences)
def test_generated_ids_are_valid(region: str, birth: datetime.date, sequence: int) -> None:
    value = make_resident_id(region, birth, sequence)
    assert len(value) == 18
    assert value[:6] == region
    assert value[14:17] == f"{sequence:03d}"
    assert mod11_2_residue(value) == 1  # independent of the module's tables
    assert resident_id_problem(value) is None
    assert resident_id_birth_date(value) == birth


@settings(max_examples=200)
@given(resident_ids, st.integers(0, 17), st.sampled_from(RESIDENT_CHARS))
def test_single_substitution_is_detected(value: str, position: int, char: str) -> None:
    if position < 17 and char == "X":
        char = "0"  # X is only allowed in the last place; keep the substitute "allowed"
    if value[position] == char:
        char = RESIDENT_CHARS[(RESIDENT_CHARS.index(char) + 1) % (11 if position == 17 else 10)]
    changed = value[:position] + char + value[position + 1 :]
    assert changed != value
    problem = resident_id_problem(changed)
    assert problem is not None
    # The sequence digits and the check character carry no meaning a rule could catch first.
    if position >= 14:
        assert problem == "checksum"


@settings(max_examples=200)
@given(st.text(RESIDENT_CHARS).filter(lambda text: len(text) != 18))
def test_wrong_length(value: str) -> None:
    assert resident_id_problem(value) == "length"


def test_lowercase_x_is_format() -> None:
    assert resident_id_problem("11010519491231002x") == "format"


@pytest.mark.parametrize(
    "value",
    [
        "1101051949123100X2",  # X before the last place
        "11010519491231 02X",
        "110105194912310０2X",  # full-width zero: isdigit() says yes, we say no
        "11010519491231002Y",
    ],
)
def test_format(value: str) -> None:
    assert resident_id_problem(value) == "format"


@pytest.mark.parametrize("region", ["990105", "000000", "100105", "160105", "720105", "840000"])
def test_bad_region(region: str) -> None:
    value = with_resident_check(f"{region}19491231002")
    assert mod11_2_residue(value) == 1  # the checksum is right; only the region is wrong
    assert resident_id_problem(value) == "region"
    with pytest.raises(ValueError):
        make_resident_id(region, datetime.date(1949, 12, 31), 2)


@pytest.mark.parametrize("birth", ["19990230", "19991301", "19990001", "19990100", "00000101"])
def test_impossible_birth_date(birth: str) -> None:
    assert resident_id_problem(with_resident_check(f"110105{birth}002")) == "birth_date"


def test_birth_date_bounds() -> None:
    tomorrow = TODAY + datetime.timedelta(days=1)
    future = with_resident_check(f"110105{tomorrow:%Y%m%d}002")
    assert resident_id_problem(future, today=TODAY) == "birth_date"
    born_today = with_resident_check(f"110105{TODAY:%Y%m%d}002")
    assert resident_id_problem(born_today, today=TODAY) is None
    assert resident_id_problem(with_resident_check("11010518991231002")) == "birth_date"
    assert resident_id_problem(with_resident_check("11010519000101002")) is None
    with pytest.raises(ValueError):
        make_resident_id("110105", tomorrow, 2)
    with pytest.raises(ValueError):
        make_resident_id("110105", datetime.date(1899, 12, 31), 2)


def test_problems_are_reported_in_order() -> None:
    # Region and date both wrong, and the checksum too: region comes first.
    assert resident_id_problem("99010519990230002X") == "region"
    assert resident_id_problem("11010519990230002X") == "birth_date"


@pytest.mark.parametrize("sequence", [-1, 1000])
def test_make_resident_id_rejects_bad_sequence(sequence: int) -> None:
    with pytest.raises(ValueError):
        make_resident_id("110105", datetime.date(1990, 1, 1), sequence)


def test_birth_date_of_invalid_id_raises() -> None:
    with pytest.raises(ValueError, match="checksum"):
        resident_id_birth_date("110105194912310021")


# --- USCC: hand-checked vectors --------------------------------------------------------------


def test_cited_uscc_example_verifies() -> None:
    # 91350100M000100Y43; values in the alphabet (A=10 ... M=21 ... Y=30), weights 3**i mod 31:
    #   9*1 + 1*3 + 3*9 + 5*27 + 0*19 + 1*26 + 0*16 + 0*17 + M21*20 + 0*29 + 0*25 + 0*13
    #   + 1*8 + 0*24 + 0*10 + Y30*30 + 4*28
    #   = 9+3+27+135+0+26+0+0+420+0+0+0+8+0+0+900+112 = 1640
    # 1640 mod 31 = 28 (31*52 = 1612); (31 - 28) mod 31 = 3 -> "3".
    assert uscc_problem("91350100M000100Y43") is None
    assert make_uscc("9", "1", "350100", "M000100Y4") == "91350100M000100Y43"


def test_uscc_starting_with_a_letter_verifies() -> None:
    # N2110105MA0123456?: N=22, M=21, A=10:
    #   22*1 + 2*3 + 1*9 + 1*27 + 0*19 + 1*26 + 0*16 + 5*17 + 21*20 + 10*29 + 0*25 + 1*13
    #   + 2*8 + 3*24 + 4*10 + 5*30 + 6*28
    #   = 22+6+9+27+0+26+0+85+420+290+0+13+16+72+40+150+168 = 1344
    # 1344 mod 31 = 11 (31*43 = 1333); 31 - 11 = 20 -> "L" (A=10 ... K=19, L=20).
    assert uscc_problem("N2110105MA0123456L") is None
    assert make_uscc("N", "2", "110105", "MA0123456") == "N2110105MA0123456L"
    # A1110000MB1234567?: A=10, M=21, B=11:
    #   10*1 + 1*3 + 1*9 + 1*27 + 0 + 0 + 0 + 0 + 21*20 + 11*29 + 1*25 + 2*13 + 3*8 + 4*24
    #   + 5*10 + 6*30 + 7*28
    #   = 10+3+9+27+420+319+25+26+24+96+50+180+196 = 1385
    # 1385 mod 31 = 21 (31*44 = 1364); 31 - 21 = 10 -> "A".
    assert uscc_problem("A1110000MB1234567A") is None


@pytest.mark.parametrize("authority", ["A", "N", "Y", "1", "5", "9"])
def test_every_registration_authority_is_accepted(authority: str) -> None:
    value = with_uscc_check(f"{authority}1110105MA0123456")
    assert uscc_problem(value) is None


# --- USCC: properties ------------------------------------------------------------------------


@settings(max_examples=200)
@given(usccs)
def test_generated_usccs_are_valid(value: str) -> None:
    assert len(value) == 18
    assert mod31_residue(value) == 0  # independent of the module's tables
    assert uscc_problem(value) is None


@settings(max_examples=200)
@given(usccs, st.integers(0, 17), uscc_chars)
def test_uscc_single_substitution_is_detected(value: str, position: int, char: str) -> None:
    if value[position] == char:
        char = USCC_ALPHABET[(USCC_ALPHABET.index(char) + 1) % len(USCC_ALPHABET)]
    changed = value[:position] + char + value[position + 1 :]
    problem = uscc_problem(changed)
    assert problem is not None
    if position >= 8:  # the organisation code body and the check char: only the checksum
        assert problem == "checksum"


@settings(max_examples=200)
@given(st.text(USCC_ALPHABET).filter(lambda text: len(text) != 18))
def test_uscc_wrong_length(value: str) -> None:
    assert uscc_problem(value) == "length"


@settings(max_examples=200)
@given(usccs, st.integers(0, 17), st.sampled_from("IOZSVaio -"))
def test_uscc_foreign_characters_are_charset(value: str, position: int, char: str) -> None:
    changed = value[:position] + char + value[position + 1 :]
    assert uscc_problem(changed) == "charset"


@pytest.mark.parametrize("authority", ["2", "0", "B", "X"])
def test_uscc_bad_registration_authority(authority: str) -> None:
    assert uscc_problem(with_uscc_check(f"{authority}1350100M000100Y4")) == "registration_authority"


def test_uscc_org_type_zero() -> None:
    assert uscc_problem(with_uscc_check("90350100M000100Y4")) == "org_type"


def test_uscc_region_must_be_digits() -> None:
    assert uscc_problem(with_uscc_check("913501A0M000100Y4")) == "region"


def test_uscc_checksum() -> None:
    assert uscc_problem("91350100M000100Y44") == "checksum"


@pytest.mark.parametrize(
    ("args"),
    [
        ("2", "1", "350100", "M000100Y4"),
        ("9", "0", "350100", "M000100Y4"),
        ("9", "1", "3501A0", "M000100Y4"),
        ("9", "1", "350100", "M000100Y"),
        ("9", "1", "350100", "M000100YI"),
        ("91", "1", "350100", "M000100Y4"),
    ],
)
def test_make_uscc_rejects_bad_parts(args: tuple[str, str, str, str]) -> None:
    with pytest.raises(ValueError):
        make_uscc(*args)


# --- masking ---------------------------------------------------------------------------------


def test_mask_examples() -> None:
    assert mask_resident_id("11010519491231002X") == "110105********002X"
    assert mask_uscc("91350100M000100Y43") == "91350100********43"


@settings(max_examples=200)
@given(resident_ids)
def test_mask_resident_id_keeps_only_region_and_tail(value: str) -> None:
    masked = mask_resident_id(value)
    assert len(masked) == 18
    assert masked[:6] == value[:6]
    assert masked[14:] == value[14:]
    assert masked[6:14] == "*" * 8  # the birth date never shows


@settings(max_examples=200)
@given(usccs)
def test_mask_uscc_keeps_only_head_and_tail(value: str) -> None:
    masked = mask_uscc(value)
    assert len(masked) == 18
    assert masked[:8] == value[:8]
    assert masked[16:] == value[16:]
    assert masked[8:16] == "*" * 8


@settings(max_examples=200)
@given(st.text().filter(lambda text: len(text) != 18))
def test_mask_of_a_malformed_value_shows_nothing(value: str) -> None:
    assert mask_resident_id(value) == "*" * len(value)
    assert mask_uscc(value) == "*" * len(value)
