from __future__ import annotations

import pytest

from skills.core.fakes import RecordingTurn
from skills.core.router import Router
from skills.core.skill import CardAction, Command, Skill
from skills.core.types import Conversation, Message, Reply, User


def message(text: str = "", value: dict[str, object] | None = None, roles: frozenset[str] = frozenset()) -> Message:
    return Message(id="1", text=text, user=User("u1", roles=roles), conversation=Conversation("c1"), value=value)


def recorder(name: str, calls: list[str]):  # type: ignore[no-untyped-def]
    async def handler(msg: Message, turn: RecordingTurn) -> None:  # type: ignore[override]
        calls.append(name)
        await turn.send(Reply(text=name))

    return handler


@pytest.fixture
def calls() -> list[str]:
    return []


@pytest.fixture
def router(calls: list[str]) -> Router:
    return Router(
        [
            Skill(
                name="handover",
                description="",
                commands=[
                    Command("handover", "Show handover", recorder("handover", calls), aliases=("인계",)),
                    Command("broadcast", "Broadcast", recorder("broadcast", calls), roles=frozenset({"manager"})),
                ],
                card_actions=[CardAction("ack", recorder("ack", calls))],
            ),
            Skill(name="protocols", description="", fallback=recorder("fallback", calls)),
            Skill(name="other", description="", fallback=recorder("second-fallback", calls)),
        ]
    )


async def test_first_match_wins(router: Router, calls: list[str]) -> None:
    turn = RecordingTurn()
    assert await router.dispatch(message("handover 7W"), turn) == "handover"
    assert await router.dispatch(message("/handover"), turn) == "handover"
    assert await router.dispatch(message("인계"), turn) == "handover"
    assert await router.dispatch(message("what MAP in septic shock?"), turn) == "protocols"
    assert calls == ["handover", "handover", "handover", "fallback"]


async def test_card_action_by_verb(router: Router, calls: list[str]) -> None:
    turn = RecordingTurn()
    assert await router.dispatch(message(value={"verb": "ack", "alert": "a1"}), turn) == "handover"
    await router.dispatch(message(value={"verb": "gone"}), turn)
    assert calls == ["ack"]
    assert "no longer active" in turn.replies[-1].text


async def test_role_refusal_is_polite_and_runs_nothing(router: Router, calls: list[str]) -> None:
    turn = RecordingTurn()
    await router.dispatch(message("broadcast hello"), turn)
    assert calls == []
    assert "only available to manager" in turn.replies[0].text
    await router.dispatch(message("broadcast 안녕하세요 공지"), turn)
    assert "권한" in turn.replies[1].text
    await router.dispatch(message("broadcast hello", roles=frozenset({"manager"})), turn)
    assert calls == ["broadcast"]


async def test_help_lists_every_command(router: Router) -> None:
    turn = RecordingTurn()
    await router.dispatch(message("help"), turn)
    text = turn.replies[0].text
    for word in ("help", "handover", "broadcast"):
        assert f"`{word}" in text
    turn_ko = RecordingTurn()
    await router.dispatch(message("도움말"), turn_ko)
    assert "도움말" in turn_ko.replies[0].text


def test_duplicate_command_words_are_refused(calls: list[str]) -> None:
    a = Skill("a", "", commands=[Command("x", "", recorder("a", calls))])
    b = Skill("b", "", commands=[Command("y", "", recorder("b", calls), aliases=("x",))])
    with pytest.raises(ValueError, match="defined twice"):
        Router([a, b])
