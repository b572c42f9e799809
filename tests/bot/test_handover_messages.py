"""The I-PASS form round trip through real Activities on /api/messages and real `adaptiveCard/action` invokes."""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Any

import pytest

import skills.handover
from bot.app import SERVICES
from skills.core.fakes import ManualTimers, RecordingNotifier, StaticDirectory
from skills.core.skill import Context, Skill
from skills.handover.notes import NoteBook
from tests.bot.conftest import BotFactory, RunningBot
from tests.fakes.teams import FakeConnector, teams_message
from tests.skills.handover.conftest import PATIENT_NAMES, PATIENT_NUMBERS, UNITS


@pytest.fixture
async def ward_bot(start_bot: BotFactory, monkeypatch: pytest.MonkeyPatch) -> RunningBot:
    """The real app; the handover skill gets a unit directory (the host's own directory is wired at merge)."""
    real = skills.handover.create_skill

    def with_directory(context: Context) -> Skill:
        ports = replace(context, directory=StaticDirectory(UNITS), notifier=RecordingNotifier(), timers=ManualTimers())
        return real(ports)

    monkeypatch.setattr(skills.handover, "create_skill", with_directory)
    return await start_bot()


def card_action(data: dict[str, Any], service_url: str, *, kind: str = "personal") -> dict[str, Any]:
    """Action.Execute as Teams sends it: the action's data merged with the inputs' values."""
    invoke = teams_message("", service_url, kind=kind)
    invoke.update(type="invoke", name="adaptiveCard/action", replyToId="activity-form")
    invoke.pop("text")
    invoke["entities"] = [e for e in invoke["entities"] if e["type"] != "mention"]  # invokes carry no @mention
    invoke["value"] = {"action": {"type": "Action.Execute", "verb": data["verb"], "data": data}, "trigger": "manual"}
    return invoke


async def invoke(bot: RunningBot, activity: dict[str, Any]) -> dict[str, Any]:
    status, body = await bot.post(activity)
    assert status == 200
    answer: dict[str, Any] = json.loads(body)
    assert answer["statusCode"] == 200
    return answer


async def test_form_round_trip(ward_bot: RunningBot, connector: FakeConnector) -> None:
    assert (await ward_bot.post(teams_message("handover 7W-12", connector.url)))[0] == 201
    form = connector.messages()[-1].body["attachments"][0]["content"]
    save = next(a for a in form["actions"] if a["verb"] == "handover.save")
    data = dict(save["data"])
    assert data == {"verb": "handover.save", "unit": "7W", "bed": "12", "base": 0}

    # missing severity and summary: the same form comes back with the problems on it, nothing is stored
    answer = await invoke(ward_bot, card_action({**data, "summary": ""}, connector.url))
    assert answer["type"] == "application/vnd.microsoft.card.adaptive"
    assert "Choose the illness severity." in json.dumps(answer["value"])
    notes = NoteBook(ward_bot.app[SERVICES].store)
    assert await notes.current("7W", "12") is None

    filled = {
        **data,
        "severity": "unstable",
        "summary": "Septic shock, Jane Roe, record 12345678",
        "patient": "Jane Roe",
        "record_number": "12345678",
        "action_1_item": "Lactate at 02:00",
        "action_1_done": "false",
    }
    answer = await invoke(ward_bot, card_action(filled, connector.url))
    assert "version 1" in json.dumps(answer["value"])
    edit = next(a for a in answer["value"]["actions"] if a["verb"] == "handover.open")
    answer = await invoke(ward_bot, card_action(dict(edit["data"]), connector.url))
    reopened = answer["value"]
    assert "Septic shock" in json.dumps(reopened, ensure_ascii=False)
    resave = next(a for a in reopened["actions"] if a["verb"] == "handover.save")
    assert resave["data"]["base"] == 1
    answer = await invoke(ward_bot, card_action({**filled, **resave["data"], "severity": "watcher"}, connector.url))
    assert "version 2" in json.dumps(answer["value"])
    history = await notes.history("7W", "12")
    assert [(v.version, v.note.severity) for v in history] == [(1, "unstable"), (2, "watcher")]

    # a stale form (base 1) after version 2: refused on the card, version 2 stays
    answer = await invoke(ward_bot, card_action({**filled, "base": 1, "summary": "stale"}, connector.url))
    assert "newer version (v2)" in json.dumps(answer["value"])
    current = await notes.current("7W", "12")
    assert current is not None and current.version == 2


async def test_channel_refusal_leaks_nothing(ward_bot: RunningBot, connector: FakeConnector) -> None:
    connector.clear()
    assert (await ward_bot.post(teams_message("handover 7W-12", connector.url, kind="channel")))[0] == 201
    reply = connector.messages()[-1].body
    assert "1:1" in reply["text"] and not reply.get("attachments")
    filled = {
        "verb": "handover.save",
        "unit": "7W",
        "bed": "12",
        "base": 0,
        "severity": "stable",
        "summary": f"{PATIENT_NAMES[1]} {PATIENT_NUMBERS[0]}",
    }
    await invoke(ward_bot, card_action(filled, connector.url, kind="channel"))
    assert await NoteBook(ward_bot.app[SERVICES].store).current("7W", "12") is None
    for sent in connector.sent:
        for secret in PATIENT_NAMES + PATIENT_NUMBERS:
            assert secret not in json.dumps(sent.body, ensure_ascii=False)


async def test_broadcast_refusal_names_the_role(bot: RunningBot, connector: FakeConnector) -> None:
    connector.clear()
    assert (await bot.post(teams_message("broadcast all: Fire drill at 14:00", connector.url)))[0] == 201
    assert "manager" in connector.messages()[-1].text


async def test_handover_without_a_directory_says_so(bot: RunningBot, connector: FakeConnector) -> None:
    connector.clear()
    assert (await bot.post(teams_message("handover 12", connector.url)))[0] == 201
    assert "not set up" in connector.messages()[-1].text
