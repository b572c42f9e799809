"""Device alerts through the running app: MLLP bytes and signed webhooks in, cards at the notifier, button presses
as the `adaptiveCard/action` invokes and Action.Submit messages Teams posts to /api/messages."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.app import MLLP, SERVICES, create_app
from bot.ingress.mllp import END_BLOCK, frame
from bot.ingress.webhook import SIGNATURE_HEADER, TIMESTAMP_HEADER, sign
from bot.services import HostPorts
from skills.alerts.desk import ALERTS
from skills.core.fakes import ManualClock, ManualTimers, RecordingNotifier, StaticDirectory
from skills.core.ports import StaffMember, Unit
from skills.core.skill import Skill
from tests.bot.conftest import bot_settings, serve
from tests.fakes.teams import BOT_ID, CHANNEL_CONVERSATION, TENANT, USER_AAD, FakeConnector, teams_message

DATA = Path(__file__).resolve().parents[2] / "data" / "hl7"
SECRET = "s3cret-for-tests"
DIRECTORY = StaticDirectory(
    [Unit("HO Surgery"), Unit("HO 3 West ICU"), Unit("7W", options={"escalation_target": "unit:RRT"})],
    [StaffMember(USER_AAD, "Kim Nurse", frozenset({"nurse"}), frozenset({"HO Surgery", "HO 3 West ICU", "7W"}))],
)


@dataclass
class AlertBot:
    url: str
    app: web.Application
    session: aiohttp.ClientSession
    notifier: RecordingNotifier
    timers: ManualTimers
    clock: ManualClock

    @property
    def skill(self) -> Skill:
        return next(s for s in self.app[SERVICES].skills if s.name == "alerts")

    async def mllp(self, *messages: str) -> list[list[str]]:
        reader, writer = await asyncio.open_connection("127.0.0.1", self.app[MLLP].value.port)
        writer.write(b"".join(frame(m.encode()) for m in messages))
        await writer.drain()
        acks = []
        for _ in messages:
            data = await asyncio.wait_for(reader.readuntil(END_BLOCK), 5)
            acks.append(data[1:-2].decode().rstrip("\r").split("\r"))
        writer.close()
        await writer.wait_closed()
        return acks

    async def settle(self) -> None:
        await self.skill_desk().drain()

    def skill_desk(self) -> Any:
        return self.skill.startup.__self__  # type: ignore[union-attr]

    async def tick(self, seconds: float) -> None:
        self.clock.advance(seconds)
        handlers = {h.kind: h.handler for h in self.skill.timers}
        for event in self.timers.due(self.clock.now()):
            await handlers[event.kind](event)
        await self.settle()

    async def webhook(self, body: bytes, *, secret: str = SECRET, timestamp: int | None = None) -> tuple[int, Any]:
        stamp = str(timestamp if timestamp is not None else int(time.time()))
        headers = {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(secret, stamp, body)}
        async with self.session.post(f"{self.url}/api/alerts", data=body, headers=headers) as response:
            return response.status, await response.json() if response.status != 404 else None


@pytest.fixture
async def alert_bot(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[AlertBot]]]:
    cleanups: list[Callable[[], Awaitable[None]]] = []

    async def start(**overrides: Any) -> AlertBot:
        notifier, timers = RecordingNotifier(), ManualTimers()
        clock = ManualClock(datetime.now(UTC))
        overrides.setdefault("alerts_webhook_secret", f"old-secret,{SECRET}")
        settings = bot_settings(tmp_path / uuid.uuid4().hex, **overrides)
        ports = HostPorts(notifier=notifier, timers=timers, directory=DIRECTORY, clock=clock)
        runner, url = await serve(create_app(settings, ports=ports))
        session = aiohttp.ClientSession()
        cleanups.extend([session.close, runner.cleanup])
        return AlertBot(url, runner.app, session, notifier, timers, clock)

    yield start
    for cleanup in reversed(cleanups):
        await cleanup()


def fixture(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


async def test_both_ihe_examples_from_mllp_bytes_to_one_card(alert_bot: Callable[..., Awaitable[AlertBot]]) -> None:
    bot = await alert_bot()
    spo2 = fixture("ihe_e31_low_spo2_start.hl7")
    pump_end = fixture("ihe_e32_pump_occlusion_end.hl7")
    pump_start = pump_end.replace("|6346172846620706282|", "|6346172846620706281|").replace("|end|", "|start|")
    pump_start = pump_start.replace("|inactive|", "|active|")
    acks = await bot.mllp(spo2, pump_start)
    assert [a[1] for a in acks] == ["MSA|CA|1", "MSA|CA|6346172846620706281"]
    await bot.settle()
    assert bot.notifier.posts == []  # both are medium priority: 10 s hold-off
    await bot.tick(10)
    posts = {target: (reply, ref) for target, reply, ref in bot.notifier.posts}
    assert set(posts) == {"unit:HO Surgery", "unit:HO 3 West ICU"}
    spo2_card = json.dumps(posts["unit:HO Surgery"][0].card.content)  # type: ignore[union-attr]
    assert "Low limit" in spo2_card and "Low SpO2 \\u00b7 88 %" in spo2_card and '"OR"' in spo2_card
    pump_reply, pump_ref = posts["unit:HO 3 West ICU"]
    assert "Line occlusion" in json.dumps(pump_reply.card.content)  # type: ignore[union-attr]

    [ack] = await bot.mllp(pump_end)
    assert ack[1] == "MSA|CA|6346172846620706282"
    await bot.settle()
    assert len(bot.notifier.posts) == 2
    assert "nobody accepted" in json.dumps(bot.notifier.latest(pump_ref).card.content)  # type: ignore[union-attr]


async def test_with_no_channel_anywhere_an_alarm_is_acknowledged_and_stays_queued_not_lost(tmp_path: Path) -> None:
    """The host's outbox always takes the alarm: it is stored, ACKed, and waits (visible in /readyz) for a channel."""
    runner, url = await serve(create_app(bot_settings(tmp_path)))
    try:
        reader, writer = await asyncio.open_connection("127.0.0.1", runner.app[MLLP].value.port)
        writer.write(frame(fixture("ihe_e31_low_spo2_start.hl7").encode()))
        ack = (await asyncio.wait_for(reader.readuntil(END_BLOCK), 5)).decode()
        assert "MSA|CA|1" in ack
        writer.close()
        await writer.wait_closed()
        deadline = time.monotonic() + 40  # a PM alarm is held 10 s first, then the outbox finds no channel
        async with aiohttp.ClientSession() as session:
            while True:
                async with session.get(f"{url}/readyz") as response:
                    channels = (await response.json()).get("channels", {})
                if channels.get("unrouted", 0) >= 1 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.1)
        assert channels.get("unrouted", 0) >= 1, channels  # queued for a channel that does not exist yet
    finally:
        await runner.cleanup()


def card_invoke(
    verb: str, alert_key: str, service_url: str, *, user_aad: str = USER_AAD, name: str = "Kim Nurse"
) -> dict[str, Any]:
    """The invoke Teams posts when Action.Execute is pressed on a card in a channel."""
    return {
        "name": "adaptiveCard/action",
        "type": "invoke",
        "timestamp": "2026-11-30T07:00:31.000Z",
        "id": f"f:{uuid.uuid4()}",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": f"29:{user_aad}", "name": name, "aadObjectId": user_aad},
        "conversation": {
            "isGroup": True,
            "conversationType": "channel",
            "tenantId": TENANT,
            "id": CHANNEL_CONVERSATION,
        },
        "recipient": {"id": BOT_ID, "name": "Wardline"},
        "entities": [{"locale": "en-US", "country": "KR", "platform": "Web", "type": "clientInfo"}],
        "channelData": {
            "tenant": {"id": TENANT},
            "channel": {"id": "19:7w-ward-channel@thread.tacv2"},
            "source": {"name": "message"},
        },
        "replyToId": "1700000000001",
        "value": {
            "action": {
                "type": "Action.Execute",
                "title": "Accept",
                "verb": verb,
                "data": {"verb": verb, "alert": alert_key},
            },
            "trigger": "manual",
        },
        "locale": "en-US",
    }


async def test_accept_and_decline_through_real_invokes(
    alert_bot: Callable[..., Awaitable[AlertBot]], connector: FakeConnector
) -> None:
    bot = await alert_bot()
    ph = fixture("ihe_e31_low_spo2_start.hl7").replace("L~PM~SP", "H~PH~SP")
    await bot.mllp(ph)
    await bot.settle()
    [(_, _, ref)] = bot.notifier.posts
    key = ref.removeprefix("alerts:")

    async with bot.session.post(f"{bot.url}/api/messages", json=card_invoke("alerts.decline", key, connector.url)) as r:
        assert r.status == 200
        body = await r.json()
    assert body["statusCode"] == 200 and body["type"] == "application/vnd.microsoft.card.adaptive"
    assert "Declined by Kim Nurse" in json.dumps(body["value"])
    assert [t for t, _, _ in bot.notifier.posts] == ["unit:HO Surgery", "role:charge@HO Surgery"]

    async with bot.session.post(f"{bot.url}/api/messages", json=card_invoke("alerts.accept", key, connector.url)) as r:
        body = await r.json()
    assert "Accepted by Kim Nurse" in json.dumps(body["value"])
    assert "actions" not in body["value"]
    assert "Accepted by Kim Nurse" in json.dumps(bot.notifier.latest(ref).card.content)  # type: ignore[union-attr]
    assert bot.timers.pending == {}
    assert connector.messages() == []  # the card answer is the invoke response; nothing posted to the channel


async def test_action_submit_fallback_updates_the_card_it_was_on(
    alert_bot: Callable[..., Awaitable[AlertBot]], connector: FakeConnector
) -> None:
    bot = await alert_bot()
    await bot.mllp(fixture("ihe_e31_low_spo2_start.hl7").replace("L~PM~SP", "H~PH~SP"))
    await bot.settle()
    key = bot.notifier.posts[0][2].removeprefix("alerts:")
    activity = teams_message("", connector.url, kind="channel", value={"verb": "alerts.accept", "alert": key})
    activity["replyToId"] = "1700000000042"
    async with bot.session.post(f"{bot.url}/api/messages", json=activity) as response:
        assert response.status in (200, 201)
    [update] = [s for s in connector.sent if s.method == "PUT"]
    assert update.path.endswith("/activities/1700000000042")
    assert "Accepted by Kim Nurse" in json.dumps(update.body)


def webhook_alert(**changes: Any) -> dict[str, Any]:
    body = {
        "source": "PUMP_GW",
        "alert_id": "P-77",
        "message_id": "W-1",
        "unit": "7W",
        "room": "712",
        "bed": "B",
        "event_code": "MDC_EVT_FLUID_LINE_OCCL",
        "event_text": "Occlusion",
        "phase": "start",
        "priority": "PH",
        "alert_type": "ST",
        "occurred_at": "2026-11-30T16:00:00+09:00",
        "device": "MDC_DEV_PUMP_INFUS_MDS",
    }
    body.update(changes)
    return body


async def test_webhook_good_rotated_idempotent(alert_bot: Callable[..., Awaitable[AlertBot]]) -> None:
    bot = await alert_bot()
    body = json.dumps(webhook_alert()).encode()
    assert await bot.webhook(body) == (202, {"status": "accepted"})
    assert (await bot.webhook(body, secret="old-secret"))[0] == 202  # the other rotated secret, same alert again
    await bot.settle()
    [(target, reply, _)] = bot.notifier.posts
    assert target == "unit:7W" and "Line occlusion" in reply.text
    record = await bot.app[SERVICES].store.get(ALERTS, "PUMP_GW|P-77")
    assert record is not None and record["messages"] == ["W-1"]


@pytest.mark.parametrize(
    ("change", "status", "field"),
    [
        ({"priority": "URGENT"}, 400, "priority"),
        ({"unit": None}, 400, "unit"),
        ({"occurred_at": "2026-11-30 16:00"}, 400, "occurred_at"),
        ({"room": 712}, 400, "room"),
    ],
)
async def test_webhook_schema_errors_name_the_field(
    alert_bot: Callable[..., Awaitable[AlertBot]], change: dict[str, Any], status: int, field: str
) -> None:
    bot = await alert_bot()
    code, body = await bot.webhook(json.dumps(webhook_alert(**change)).encode())
    assert code == status and body["field"] == field
    assert body["error"].startswith(field)


async def test_webhook_refusals(alert_bot: Callable[..., Awaitable[AlertBot]]) -> None:
    bot = await alert_bot(alerts_max_bytes=2048)
    body = json.dumps(webhook_alert()).encode()
    assert (await bot.webhook(body, secret="forged"))[0] == 401
    assert (await bot.webhook(body, timestamp=int(time.time()) - 301))[0] == 401  # stale: a replay
    async with bot.session.post(f"{bot.url}/api/alerts", data=body) as response:
        assert response.status == 401  # unsigned
    assert (await bot.webhook(b"{not json"))[0:2] == (400, {"error": "the body is not valid JSON", "field": "$"})
    assert (await bot.webhook(b"[1, 2]"))[0] == 400
    code, problem = await bot.webhook(
        json.dumps(webhook_alert(event_text="x" * 150, device="y" * 150) | {"pad": "z" * 3000}).encode()
    )
    assert code == 413 and "2048" in problem["error"]
    await bot.settle()
    assert bot.notifier.posts == []


async def test_webhook_is_off_without_a_secret(alert_bot: Callable[..., Awaitable[AlertBot]]) -> None:
    bot = await alert_bot(alerts_webhook_secret="")
    assert (await bot.webhook(json.dumps(webhook_alert()).encode()))[0] == 404


async def test_a_taken_mllp_port_is_a_clear_configuration_error(tmp_path: Path) -> None:
    import socket

    from bot.settings import SettingsError

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        runner = web.AppRunner(create_app(bot_settings(tmp_path, mllp_port=port)))
        with pytest.raises(SettingsError, match=f"WARDLINE_MLLP_PORT: cannot listen on 127.0.0.1:{port}"):
            await runner.setup()
        await runner.cleanup()


async def test_webhook_reads_chunked_bodies_whole_and_limits_them(
    alert_bot: Callable[..., Awaitable[AlertBot]],
) -> None:
    bot = await alert_bot(alerts_max_bytes=4096)

    async def send_chunked(body: bytes) -> int:
        stamp = str(int(time.time()))

        async def pieces() -> AsyncIterator[bytes]:
            for start in range(0, len(body), 100):
                yield body[start : start + 100]
                await asyncio.sleep(0)

        headers = {TIMESTAMP_HEADER: stamp, SIGNATURE_HEADER: sign(SECRET, stamp, body)}
        async with bot.session.post(f"{bot.url}/api/alerts", data=pieces(), headers=headers) as response:
            return response.status

    assert await send_chunked(json.dumps(webhook_alert(event_text="x" * 150)).encode()) == 202
    assert await send_chunked(json.dumps(webhook_alert() | {"pad": "z" * 5000}).encode()) == 413


async def test_alerts_command_in_a_channel_lists_open_alarms(
    alert_bot: Callable[..., Awaitable[AlertBot]], connector: FakeConnector
) -> None:
    bot = await alert_bot()
    await bot.mllp(fixture("ihe_e31_low_spo2_start.hl7").replace("L~PM~SP", "H~PH~SP"))
    await bot.settle()
    async with bot.session.post(
        f"{bot.url}/api/messages", json=teams_message("alerts HO Surgery", connector.url, kind="channel")
    ) as response:
        assert response.status in (200, 201)
    [reply] = connector.messages()
    assert reply.text.splitlines() == [
        "Open alarms in HO Surgery:",
        "- HIGH Low limit - room OR bed 1, since 06:04",  # 15:04:57 at UTC-6 is 06:04 in Seoul
    ]
    assert "Hon" not in reply.text and "HO2009001" not in reply.text


async def test_an_ihe_alarm_over_mllp_reaches_the_linked_unit_channel_as_a_card_through_the_real_outbox(
    start_bot: Any, connector: FakeConnector
) -> None:
    """MLLP bytes -> ACK -> hold-off on the durable timers -> outbox -> the fake Bot Connector, with no test doubles."""
    from tests.bot.outbox_support import channel_activity

    bot = await start_bot()
    book = bot.app[SERVICES].delivery.book
    surgery = "19:ho-surgery@thread.tacv2"
    await book.remember(channel_activity(connector.url, surgery, channel_name="HO Surgery"))
    await book.link("HO Surgery", surgery, by="test")
    reader, writer = await asyncio.open_connection("127.0.0.1", bot.app[MLLP].value.port)
    writer.write(frame(fixture("ihe_e31_low_spo2_start.hl7").encode()))
    ack = (await asyncio.wait_for(reader.readuntil(END_BLOCK), 5)).decode()
    writer.close()
    await writer.wait_closed()
    assert "MSA|CA|1" in ack
    cards: list[dict[str, Any]] = []
    for _ in range(300):  # a PM alarm is held 10 s first (the default hold-off), then posted
        cards = [
            attachment["content"]
            for sent in connector.sent
            if sent.method == "POST" and surgery in sent.path
            for attachment in sent.body.get("attachments") or []
        ]
        if cards:
            break
        await asyncio.sleep(0.1)
    assert len(cards) == 1, connector.sent
    shown = json.dumps(cards[0], ensure_ascii=False)
    assert "HO Surgery" in shown and "bedside monitor" in shown
    assert "Hon" not in shown and "Albert" not in shown and "HO2009001" not in shown  # PID is read, never shown
    assert connector.violations == []
