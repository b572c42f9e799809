"""The JSON that goes to Teams: snapshot of a cited answer, and the limits enforced on long or many citations."""

from __future__ import annotations

import json
from pathlib import Path

from bot.teams.render import reply_activity
from skills.core.types import Citation, Reply
from tests.fakes.teams_contract import problems_with

SNAPSHOT = Path(__file__).parent / "snapshots" / "cited_answer.json"


def wire(reply: Reply) -> dict:
    return reply_activity(reply).serialize()


def test_cited_ai_answer_matches_the_snapshot() -> None:
    reply = Reply(
        text="Target a MAP of 65 mmHg [1]; start noradrenaline if it stays lower [2].",
        citations=[
            Citation(1, "Sepsis Recognition and Hour-1 Bundle", "MAP target", "sepsis-bundle.md", "Target 65 mmHg."),
            Citation(2, "Sepsis Recognition and Hour-1 Bundle", "Vasopressors", "sepsis-bundle.md", "Noradrenaline first.",
                     url="https://intranet.example/protocols/sepsis-bundle.md", keywords=("sepsis",)),
        ],
        ai_generated=True,
        feedback=True,
    )  # fmt: skip
    body = wire(reply)
    assert problems_with(body) == []
    assert body == json.loads(SNAPSHOT.read_text(encoding="utf-8"))


def test_limits_are_enforced_on_what_is_sent() -> None:
    long = "Sepsis " * 40
    citations = [
        Citation(n, long, long, f"doc{n}.md", long * 3, keywords=("a" * 40, "b", "c", "d")) for n in range(1, 26)
    ]
    text = " ".join(f"claim [{n}]" for n in range(1, 26))
    body = wire(Reply(text=text, citations=citations, ai_generated=True, feedback=True))
    assert problems_with(body) == []
    [entity] = body["entities"]
    assert len(entity["citation"]) == 20
    claim = entity["citation"][0]["appearance"]
    assert len(claim["name"]) <= 80
    assert len(claim["abstract"]) <= 160
    assert len(claim["keywords"]) == 3
    assert all(len(k) <= 28 for k in claim["keywords"])


def test_citations_missing_from_the_text_are_not_sent() -> None:
    reply = Reply(
        text="Only the first is cited [1].", citations=[Citation(1, "A", "s", "a.md"), Citation(2, "B", "s", "b.md")]
    )
    [entity] = wire(reply)["entities"]
    assert [c["position"] for c in entity["citation"]] == [1]
    assert "additionalType" not in entity


def test_plain_replies_carry_no_entity_or_feedback() -> None:
    body = wire(Reply(text="Wardline can help with:"))
    assert "entities" not in body
    assert "channelData" not in body


def test_the_contract_checker_catches_what_teams_rejects() -> None:
    bad = {
        "type": "message",
        "text": "no markers",
        "entities": [
            {"type": "https://schema.org/Message", "@type": "Message", "@context": "https://schema.org",
             "citation": [{"@type": "Claim", "position": 1, "appearance": {"@type": "DigitalDocument", "name": "x" * 90}}]},
            {"type": "https://schema.org/Message", "@type": "Message", "@context": "https://schema.org"},
        ],
    }  # fmt: skip
    problems = problems_with(bad)
    assert any("2 root Message entities" in p for p in problems)
    assert any("does not appear in the text" in p for p in problems)
    assert any("over 80" in p for p in problems)
