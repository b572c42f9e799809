"""Everything the protocol skill says to staff, in English and Korean (same keys in both)."""

from __future__ import annotations

from collections.abc import Mapping

TEXTS: Mapping[str, Mapping[str, str]] = {
    "en": {
        "empty_question": "Ask me a question about a protocol, e.g. `ask what MAP do we target in septic shock?`",
        "too_long": (
            "That message is too long for me to search ({length:,} characters; the limit is {limit:,}). "
            "Please ask one short question, e.g. name the protocol and what you need from it."
        ),
        "searching": "Searching the protocols…",
        "loading": "The protocol library is still loading. Please ask again in a minute.",
        "not_covered": "The hospital's protocols don't seem to cover this, so I won't guess.",
        "closest": "Related protocols you could check:",
        "how_to_ask": (
            "Try naming the protocol or the situation and what you need, e.g. "
            "`sepsis MAP target` or `NEWS2 score 5 escalation`."
        ),
        "whom_to_ask": "For anything the protocols don't cover, ask the charge nurse or the responsible doctor.",
        "emergency": (
            "If this is happening now: call your hospital's emergency number or the rapid response team "
            "immediately, as your local policy says. Don't wait for this chat."
        ),
    },
    "ko": {
        "empty_question": "프로토콜에 대해 질문해 주세요. 예: `질문 패혈성 쇼크에서 목표 MAP는?`",
        "too_long": (
            "메시지가 너무 길어 검색할 수 없습니다 ({length:,}자, 최대 {limit:,}자). "
            "프로토콜 이름과 필요한 내용을 담아 짧은 질문 하나로 다시 보내 주세요."
        ),
        "searching": "프로토콜을 찾고 있습니다…",
        "loading": "프로토콜 라이브러리를 불러오는 중입니다. 잠시 후 다시 질문해 주세요.",
        "not_covered": "병원 프로토콜에서 이 질문에 대한 내용을 찾지 못했습니다. 추측해서 답하지 않겠습니다.",
        "closest": "참고할 만한 관련 프로토콜:",
        "how_to_ask": (
            "프로토콜 이름이나 상황과 필요한 내용을 함께 적어 주세요. 예: `패혈증 목표 MAP`, `NEWS2 5점 보고 기준`."
        ),
        "whom_to_ask": "프로토콜에 없는 내용은 책임 간호사나 담당 의사에게 확인해 주세요.",
        "emergency": (
            "지금 일어나고 있는 상황이라면 즉시 병원 응급 번호 또는 신속대응팀(코드 블루)에 연락하세요. "
            "원내 규정에 따르고, 이 채팅의 답을 기다리지 마세요."
        ),
    },
}
