"""Property tests over the masking patterns: generated variants of each identifier never survive masking."""

from __future__ import annotations

import unicodedata

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skills.core.privacy import mask_identifiers, without_identifiers

FULL_WIDTH = {str(d): chr(0xFF10 + d) for d in range(10)}
DASHES = ["-", "\u2010", "\u2011", "\u2012", "\u2013", "\u2014", "\u2212", "\uff0d"]

digits = st.text(alphabet="0123456789", min_size=1, max_size=1)
# Words around an identifier: Korean and English, never digits (so any digit left over is a leak).
filler = st.lists(
    st.sampled_from(
        ["환자", "주민번호", "연락처", "보호자", "patient", "call", "bed", "please", "MAP", "at", "님", ":"]
    ),
    max_size=4,
).map(" ".join)
glue = st.sampled_from(["", " ", ": ", "\u00a0"])
width = st.sampled_from(["ascii", "full"])


def render(number: str, style: str) -> str:
    return "".join(FULL_WIDTH.get(c, c) for c in number) if style == "full" else number


def leftover_digits(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKC", text) if c.isdigit())


@st.composite
def resident_numbers(draw: st.DrawFn) -> str:
    year = draw(st.integers(0, 99))
    month = draw(st.integers(1, 12))
    day = draw(st.integers(1, 28))
    gender = draw(st.integers(1, 8))
    rest = draw(st.text(alphabet="0123456789", min_size=6, max_size=6))
    dash = draw(st.sampled_from([*DASHES, "", " - "]))
    return f"{year:02d}{month:02d}{day:02d}{dash}{gender}{rest}"


@st.composite
def mobile_numbers(draw: st.DrawFn) -> str:
    prefix = draw(st.sampled_from(["010", "011", "016", "+82 10", "+82-10", "+8210", "+82 (0)10"]))
    middle = draw(st.text(alphabet="0123456789", min_size=3, max_size=4))
    last = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    sep = draw(st.sampled_from([*DASHES, " ", ".", ""]))
    return f"{prefix}{sep}{middle}{sep}{last}"


@st.composite
def landline_numbers(draw: st.DrawFn) -> str:
    area = draw(st.sampled_from(["02", "031", "032", "051", "064", "070"]))
    middle = draw(st.text(alphabet="0123456789", min_size=3, max_size=4))
    last = draw(st.text(alphabet="0123456789", min_size=4, max_size=4))
    sep = draw(st.sampled_from([*DASHES, " ", "."]))
    return f"{area}{sep}{middle}{sep}{last}"


@st.composite
def record_numbers(draw: st.DrawFn) -> str:
    label = draw(
        st.sampled_from(["MRN", "mrn", "MRN:", "MRN #", "등록번호", "환자번호", "patient id", "Medical record no."])
    )
    number = draw(st.text(alphabet="0123456789", min_size=4, max_size=10))
    return f"{label} {number}"


PROPERTY = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(before=filler, glue_=glue, number=resident_numbers(), style=width, after=filler)
def test_no_digit_of_a_resident_number_survives(before: str, glue_: str, number: str, style: str, after: str) -> None:
    text = f"{before}{glue_}{render(number, style)} {after}"
    masked = mask_identifiers(text)
    assert leftover_digits(masked) == "", masked
    assert "[RRN]" in masked or "[ID]" in masked


@PROPERTY
@given(before=filler, glue_=glue, number=st.one_of(mobile_numbers(), landline_numbers()), style=width, after=filler)
def test_no_digit_of_a_phone_number_survives(before: str, glue_: str, number: str, style: str, after: str) -> None:
    text = f"{before}{glue_}{render(number, style)} {after}"
    assert leftover_digits(mask_identifiers(text)) == "", mask_identifiers(text)


@PROPERTY
@given(before=filler, number=record_numbers(), style=width, after=filler)
def test_no_digit_of_a_labelled_record_number_survives(before: str, number: str, style: str, after: str) -> None:
    masked = mask_identifiers(f"{before} {render(number, style)} {after}")
    assert leftover_digits(masked) == "", masked


@PROPERTY
@given(
    name=st.sampled_from(["홍길동", "김민지", "Kim Minji", "Park Soyeon", "O'Brien Aoife"]),
    spelling=st.sampled_from(["as is", "upper", "lower", "spaced", "full width"]),
    particle=st.sampled_from(["", "님", "씨", " 환자", "'s", ","]),
    before=filler,
)
def test_known_names_are_masked_in_any_spelling(name: str, spelling: str, particle: str, before: str) -> None:
    written = {
        "as is": name,
        "upper": name.upper(),
        "lower": name.lower(),
        "spaced": name[0] + " " + name[1:] if " " not in name else name.replace(" ", "  "),
        "full width": "".join(chr(ord(c) + 0xFEE0) if "!" <= c <= "~" else c for c in name),
    }[spelling]
    masked = mask_identifiers(
        f"{before} {written}{particle} MAP?", names=["홍길동", "김민지", "Kim Minji", "Park Soyeon", "O'Brien Aoife"]
    )
    assert "[NAME]" in masked, masked
    for part in unicodedata.normalize("NFKC", name).split():
        assert part.lower() not in unicodedata.normalize("NFKC", masked).lower(), masked


@PROPERTY
@given(
    dose=st.integers(1, 99999),
    unit=st.sampled_from(["mg", "mL/kg", "units", "mmHg", "mcg/kg/min", "mmol/L", "%"]),
    hour=st.integers(0, 23),
)
def test_clinical_numbers_are_never_masked(dose: int, unit: str, hour: int) -> None:
    text = f"Give {dose} {unit} at {hour:02d}:00, NEWS2 {dose % 20}, 2026-11-29"
    assert mask_identifiers(text) == text


@PROPERTY
@given(text=st.text(max_size=200))
def test_masking_never_fails_and_is_idempotent(text: str) -> None:
    once = mask_identifiers(text, names=["홍길동", "Kim Minji"])
    assert mask_identifiers(once, names=["홍길동", "Kim Minji"]) == once
    assert isinstance(without_identifiers(text), str)


@pytest.mark.parametrize(
    ("text", "leaks"),
    [
        ("주민번호900101-1234567 환자", ("900101", "1234567")),
        ("주민번호 ９００１０１－１２３４５６７", ("９００１０１", "１２３４５６７")),
        ("보호자 010–1234–5678", ("1234", "5678")),
        ("보호자 010—1234—5678", ("1234", "5678")),
        ("연락처 ０１０-９８７６-５４３２", ("９８７６", "５４３２")),
        ("Kim Minji in bed 12", ("Kim", "Minji")),
        ("홍길동님 혈압이 낮아요", ("홍길동",)),
        ("DOB 1990-01-01, sepsis", ("1990-01-01",)),
        ("주민번호 900101-1******", ("900101",)),
    ],
)
def test_reported_gaps_are_closed(text: str, leaks: tuple[str, ...]) -> None:
    masked = mask_identifiers(text, names=["Kim Minji", "홍길동"])
    for leak in leaks:
        assert leak not in masked, masked


def test_text_around_the_identifier_is_kept() -> None:
    assert mask_identifiers("주민번호900101-1234567 환자 혈압") == "주민번호[RRN] 환자 혈압"
    assert mask_identifiers("call ０１０–１２３４–５６７８ now") == "call [PHONE] now"
    assert without_identifiers("Kim Minji MAP target?", ["Kim Minji"]) == "MAP target?"
