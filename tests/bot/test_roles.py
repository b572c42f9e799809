"""Roles from the directory on every inbound user: commands and card actions through real Activity JSON."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.app import create_app
from skills.core.ports import Turn
from skills.core.skill import CardAction, Command, Context, Skill
from skills.core.types import Card, Message, Reply
from tests.bot.conftest import RunningBot, bot_settings, serve
from tests.fakes.teams import BOT_ID, PERSONAL_CONVERSATION, TENANT, USER_ID, FakeConnector, teams_message

NURSE = "6a0f3b1e-0000-4000-8000-000000000001"  # Kim Nurse in the shipped example: nurse on 7W
CHARGE = "6a0f3b1e-0000-4000-8000-000000000002"  # Lee Charge: nurse and charge on 7W
STRANGER = "6a0f3b1e-0000-4000-8000-0000000000ff"


def ward_skill(context: Context) -> Skill:
    """A skill with a charge-only command and a charge-only card action, that says who it saw."""

    async def discharge(message: Message, turn: Turn) -> None:
        units = ",".join(sorted(message.user.units))
        await turn.send(Reply(text=f"discharge planned by {','.join(sorted(message.user.roles))} on {units}"))

    async def acknowledge(message: Message, turn: Turn) -> None:
        await turn.refresh(
            Card({"type": "AdaptiveCard", "version": "1.5", "body": [{"type": "TextBlock", "text": "ok"}]})
        )

    return Skill(
        name="ward",
        description="test skill",
        commands=[Command("discharge", "Plan a discharge", discharge, roles=frozenset({"charge"}))],
        card_actions=[CardAction("ward.ack", acknowledge, roles=frozenset({"charge"}))],
    )


@pytest.fixture
async def ward_bot(tmp_path: Path) -> AsyncIterator[RunningBot]:
    directory = tmp_path / "directory.toml"
    directory.write_text((Path(__file__).resolve().parents[2] / "bot" / "directory.example.toml").read_text())
    settings = bot_settings(tmp_path, directory=directory, directory_reload_seconds=0)
    app = create_app(settings, extra_skills=[ward_skill])
    runner, url = await serve(app)
    session = aiohttp.ClientSession()
    for _ in range(600):
        async with session.get(f"{url}/readyz") as response:
            if response.status == 200:
                break
        await asyncio.sleep(0.05)
    yield RunningBot(url, settings, app, session)
    await session.close()
    await runner.cleanup()


def message_from(aad: str, text: str, service_url: str) -> dict[str, Any]:
    activity = teams_message(text, service_url)
    activity["from"]["aadObjectId"] = aad
    return activity


def card_execute(aad: str, verb: str, service_url: str) -> dict[str, Any]:
    """The adaptiveCard/action invoke Teams sends for an Action.Execute button."""
    return {
        "name": "adaptiveCard/action",
        "type": "invoke",
        "id": f"i:{uuid.uuid4()}",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": USER_ID, "name": "Someone", "aadObjectId": aad},
        "conversation": {"conversationType": "personal", "tenantId": TENANT, "id": PERSONAL_CONVERSATION},
        "recipient": {"id": BOT_ID, "name": "Wardline"},
        "channelData": {"tenant": {"id": TENANT}, "source": {"name": "message"}},
        "replyToId": "activity-1",
        "value": {"action": {"type": "Action.Execute", "verb": verb, "data": {"alarm": "a1"}}, "trigger": "manual"},
        "locale": "en-US",
    }


async def say(bot: RunningBot, connector: FakeConnector, activity: dict[str, Any]) -> str:
    connector.clear()
    status, _ = await bot.post(activity)
    assert status == 201
    [reply] = connector.messages()
    return reply.text


async def test_command_role_check_uses_the_directory(ward_bot: RunningBot, connector: FakeConnector) -> None:
    allowed = await say(ward_bot, connector, message_from(CHARGE, "discharge bed 12", connector.url))
    assert allowed == "discharge planned by charge,nurse on 7W"
    refused = await say(ward_bot, connector, message_from(NURSE, "discharge bed 12", connector.url))
    assert "only available to charge" in refused
    stranger = await say(ward_bot, connector, message_from(STRANGER, "discharge bed 12", connector.url))
    assert "only available to charge" in stranger
    korean = await say(ward_bot, connector, message_from(NURSE, "discharge 퇴원 계획", connector.url))
    assert "권한" in korean


async def test_card_action_role_check_uses_the_directory(ward_bot: RunningBot, connector: FakeConnector) -> None:
    connector.clear()
    status, body = await ward_bot.post(card_execute(CHARGE, "ward.ack", connector.url))
    assert status == 200
    answer = json.loads(body)
    assert answer["type"] == "application/vnd.microsoft.card.adaptive"
    assert answer["value"]["body"][0]["text"] == "ok"
    assert connector.messages() == []

    status, body = await ward_bot.post(card_execute(NURSE, "ward.ack", connector.url))
    assert status == 200
    assert b"application/vnd.microsoft.card.adaptive" not in body, "a nurse's press changes nothing"
    [refusal] = connector.messages()
    assert "only available to charge" in refusal.text


async def test_sighup_reloads_and_a_bad_file_keeps_the_old_roles(
    ward_bot: RunningBot, connector: FakeConnector
) -> None:
    path = ward_bot.settings.directory
    assert path is not None
    good = path.read_text()

    async def hangup_and_wait(field: str, expected: Any) -> dict[str, Any]:
        os.kill(os.getpid(), signal.SIGHUP)
        for _ in range(100):
            async with ward_bot.session.get(f"{ward_bot.url}/readyz") as response:
                directory: dict[str, Any] = (await response.json())["directory"]
            if expected(directory[field]):
                return directory
            await asyncio.sleep(0.02)
        raise AssertionError(f"no reload seen: {directory}")

    path.write_text(good.replace('roles = ["nurse", "charge"]', 'roles = ["nurse", "chief"]'))
    seen = await hangup_and_wait("reload_error", lambda error: error is not None)
    assert "unknown role 'chief'" in seen["reload_error"] and str(path) in seen["reload_error"]
    allowed = await say(ward_bot, connector, message_from(CHARGE, "discharge", connector.url))
    assert allowed.startswith("discharge planned"), "the previous directory stays in force"

    path.write_text(good.replace('roles = ["nurse", "charge"]', 'roles = ["nurse"]'))
    await hangup_and_wait("reload_error", lambda error: error is None)
    refused = await say(ward_bot, connector, message_from(CHARGE, "discharge", connector.url))
    assert "only available to charge" in refused


async def test_bad_directory_stops_start_up_with_one_line(tmp_path: Path) -> None:
    path = tmp_path / "directory.toml"
    path.write_text("[units.7W]\nshifts = ['25:00']\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "bot",
        "serve",
        env={
            **os.environ,
            "WARDLINE_DIRECTORY": str(path),
            "WARDLINE_DATA_DIR": str(tmp_path / "var"),
            "PORT": "39999",
        },
        cwd=tmp_path,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    _, stderr = await asyncio.wait_for(proc.communicate(), timeout=60)
    assert proc.returncode == 2
    output = stderr.decode()
    assert "Traceback" not in output
    errors = [line for line in output.splitlines() if "error" in line]
    assert errors == [
        f"wardline: configuration error: {path}:1: unit '7W': bad shift time '25:00' (expected HH:MM, 24-hour)"
    ]
