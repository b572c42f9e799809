from __future__ import annotations

import pytest

from skills.core.i18n import is_korean, language_of
from skills.core.privacy import mask_identifiers


@pytest.mark.parametrize(
    ("text", "leak"),
    [
        ("환자 주민번호 850101-1234567 확인", "850101-1234567"),
        ("RRN 8501011234567", "8501011234567"),
        ("보호자 연락처 010-1234-5678", "010-1234-5678"),
        ("call +82 10 9876 5432", "9876"),
        ("MRN: 00123456 on bed 3", "00123456"),
        ("등록번호 A1234567", "A1234567"),
        ("ward phone 02-3410-1234", "3410-1234"),
        ("pt 98765432 needs review", "98765432"),
        ("email kim.nurse@hospital.example", "kim.nurse"),
    ],
)
def test_identifiers_are_masked(text: str, leak: str) -> None:
    assert leak not in mask_identifiers(text)


def test_names_from_the_roster_are_masked() -> None:
    assert (
        mask_identifiers("홍길동 환자 혈압 저하, Hong Gildong", names=["홍길동", "Hong Gildong"])
        == "[NAME] 환자 혈압 저하, [NAME]"
    )


@pytest.mark.parametrize(
    "text",
    [
        "Target MAP 65 mmHg",
        "30 mL/kg crystalloid within 3 h",
        "NEWS2 score 7",
        "heparin 5000 units",
        "2026-11-29 07:00",
    ],
)
def test_clinical_numbers_are_kept(text: str) -> None:
    assert mask_identifiers(text) == text


def test_language_detection() -> None:
    assert is_korean("패혈성 쇼크에서 MAP 목표는?")
    assert not is_korean("What MAP do we target?")
    assert language_of("NEWS2 7점이면 어떻게 하나요") == "ko"
    assert language_of("") == "en"
