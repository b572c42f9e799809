"""Never a wrong source across languages: each question cites the right protocol or says it is not covered.

Lexical retrieval only (no model): the Korean-English glossary carries the question's concepts across, and the
coverage test counts them in either language. tests/bot/test_local_embeddings.py repeats the cases with the dense
side on (multilingual e5).
"""

from __future__ import annotations

import asyncio

import pytest

from skills.core.fakes import ManualClock, MemoryStore
from skills.protocols import SAMPLES
from skills.protocols.assistant import ProtocolAssistant
from skills.protocols.glossary import Bridge, read_glossary
from skills.protocols.library import ProtocolLibrary

# (question, the protocol it must cite): Korean questions answered only by an English protocol, and back.
KO_TO_EN = [
    ("중심정맥관 드레싱은 얼마나 자주 교체하나요?", "central-line-care.txt"),  # the cases first
    ("CVC 드레싱 언제 바꿔요?", "central-line-care.txt"),
    ("VAP 예방을 위해 침상 머리는 몇 도로 올리나요?", "vap-bundle.md"),
    ("인공호흡기 환자 침대 머리 각도는?", "vap-bundle.md"),
    ("공기 감염 격리 환자는 어떤 병실에 입원시키나요?", "isolation-precautions.html"),
    ("결핵 환자 음압 병실 기준은?", "isolation-precautions.html"),
    ("수혈 반응이 의심되면 어떻게 하나요?", "blood-transfusion.md"),
    ("고위험 약물 이중 확인은 누가 하나요?", "high-alert-medications.md"),
]
EN_TO_KO = [
    ("How often should a patient in restraints be checked?", "physical-restraints-ko.md"),
    ("How often do we turn patients to prevent pressure injuries?", "pressure-injury-prevention-ko.md"),
    ("What are the five moments of hand hygiene?", "hand-hygiene-ko.md"),  # isolation's standard precautions too
    ("What does the S in I-PASS stand for at handover?", "handover-policy-ko.md"),
    ("How do we assess pain in a patient who cannot talk?", "pain-assessment-ko.md"),
]
# The isolation protocol's standard-precautions section also lists the five moments: a right source, not a stray one.
ALSO_RIGHT = {"What are the five moments of hand hygiene?": {"isolation-precautions.html"}}
NOT_COVERED = [
    "편두통 치료는?",
    "소아 수두 예방접종 일정은?",
    "임신부 철분제 복용법",
    "요추천자 시행 방법",
    "what is the treatment for migraine",
    "how to perform a lumbar puncture",
    "How do I treat a rattlesnake bite in a dog?",
    "중심정맥관 삽입 시 초음파 기계 대여 방법",  # shares "central line" but asks about equipment loans
]


@pytest.fixture(scope="module")
def assistant() -> ProtocolAssistant:
    library = ProtocolLibrary(MemoryStore())
    asyncio.run(library.sync(SAMPLES))
    return ProtocolAssistant(library, MemoryStore(), ManualClock())


@pytest.mark.parametrize(("question", "source"), KO_TO_EN + EN_TO_KO)
async def test_cross_lingual_questions_cite_the_right_protocol(
    assistant: ProtocolAssistant, question: str, source: str
) -> None:
    answer = await assistant.answer(question)
    assert answer.mode == "extractive"
    assert answer.citations[0].source == source
    also_right = ALSO_RIGHT.get(question, set())
    assert {c.source for c in answer.citations} <= {source} | also_right
    assert all(not is_reference_list_section(c.section) for c in answer.citations)


def is_reference_list_section(section: str) -> bool:
    return section.split(" › ")[-1].strip() in ("참고 문헌", "References")


@pytest.mark.parametrize("question", NOT_COVERED)
async def test_questions_the_protocols_do_not_answer_are_not_covered(
    assistant: ProtocolAssistant, question: str
) -> None:
    answer = await assistant.answer(question)
    assert answer.mode == "not_covered", [c.source for c in answer.citations]


async def test_the_answer_is_in_the_question_language(assistant: ProtocolAssistant) -> None:
    korean = await assistant.answer("중심정맥관 드레싱은 얼마나 자주 교체하나요?")
    assert korean.text.startswith("프로토콜의 관련 내용을")
    english = await assistant.answer("How often should a patient in restraints be checked?")
    assert english.text.startswith("Here is what the protocols say")


async def test_a_cross_lingual_quote_is_content_not_the_reference_list(assistant: ProtocolAssistant) -> None:
    for question in ("How often should a patient in restraints be checked?", "Five moments of hand hygiene"):
        answer = await assistant.answer(question)
        assert answer.citations
        assert not any(is_reference_list_section(c.section) for c in answer.citations)
    restraints = await assistant.answer("How often should a patient in restraints be checked?")
    assert "최소 1시간마다" in restraints.text  # the interval itself, quoted in the original Korean
    assert restraints.citations[0].section.endswith("관찰 주기")


def test_every_glossary_line_has_both_languages_and_analyses() -> None:
    entries = read_glossary()
    assert len(entries) > 150
    bridge = Bridge(assistant_analyzer())
    for entry in entries:
        assert any("\uac00" <= ch <= "\ud7a3" for ch in "".join(entry.korean)), entry
        assert all(f.isascii() for f in entry.english), entry
    concepts = bridge.concepts(assistant_analyzer().key_terms("패혈성 쇼크 환자 MAP 목표"))
    assert any(("septic", "shock") in c.alternatives for c in concepts)
    assert any(("map",) in c.alternatives for c in concepts)


def assistant_analyzer():  # type: ignore[no-untyped-def]
    from skills.protocols.analysis import Analyzer

    return Analyzer()
