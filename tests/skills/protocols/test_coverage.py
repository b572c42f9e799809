"""The "not covered" threshold on the bundled protocols: out-of-scope questions are refused, in-scope answered.

Measured when the thresholds were set (lexical retrieval, min_coverage 0.35): 49 of the 60 questions of
tests/data/protocols_eval have a covered section in their top 5, and none of these 17 out-of-scope questions does.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from skills.core.fakes import MemoryStore
from skills.protocols import SAMPLES
from skills.protocols.library import ProtocolLibrary

EVAL = Path(__file__).resolve().parents[2] / "data" / "protocols_eval"
OUT_OF_SCOPE = [
    "How do I treat a rattlesnake bite in a dog?",
    "what is the weather tomorrow",
    "how do I book annual leave",
    "what's the wifi password",
    "recommend a good restaurant near the hospital",
    "how to renew my parking permit",
    "dose of amoxicillin for otitis media in children",
    "how to perform a lumbar puncture",
    "what is the treatment for migraine",
    "how do I reset my password",
    "can I wear nail polish at work",
    "내일 날씨 어때?",
    "연차 휴가는 어떻게 신청하나요?",
    "주차권 갱신 방법",
    "편두통 치료는?",
    "요추천자 시행 방법",
    "와이파이 비밀번호 알려줘",
]


@pytest.fixture(scope="module")
def library() -> ProtocolLibrary:
    lib = ProtocolLibrary(MemoryStore())
    asyncio.run(lib.sync(SAMPLES))  # built once for the module; searching needs no loop of its own
    return lib


async def answered(library: ProtocolLibrary, question: str) -> bool:
    retriever = library.retriever
    return any(retriever.is_covered(hit) for hit in await retriever.search(question, 5))


@pytest.mark.parametrize("question", OUT_OF_SCOPE)
async def test_out_of_scope_questions_are_not_answered(library: ProtocolLibrary, question: str) -> None:
    assert not await answered(library, question)


async def test_most_in_scope_questions_are_answered(library: ProtocolLibrary) -> None:
    queries = [json.loads(line)["text"] for line in (EVAL / "queries.jsonl").read_text(encoding="utf-8").splitlines()]
    count = sum([await answered(library, q) for q in queries])
    assert count >= 45, f"only {count} of {len(queries)} in-scope questions found a covered section"
