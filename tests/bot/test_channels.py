"""Unit links: `link unit 7W` by admins in a channel (through the router's role check), the CLI, /readyz."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.app import SERVICES
from bot.channels import create_channels_skill
from bot.channels_texts import TEXTS
from bot.cli import main
from bot.storage import SqlStore
from bot.teams.conversations import ConversationBook
from skills.core.fakes import RecordingTurn, StaticDirectory
from skills.core.ports import Unit
from skills.core.router import Router
from skills.core.types import Conversation, ConversationKind, Message, Reply, User
from tests.bot.conftest import BotFactory
from tests.bot.outbox_support import channel_activity, pipeline, sql_store, until
from tests.fakes.teams import CHANNEL_CONVERSATION, FakeConnector, install_update

CHANNEL = CHANNEL_CONVERSATION.split(";")[0]


def test_every_text_exists_in_english_and_korean() -> None:
    assert TEXTS["en"].keys() == TEXTS["ko"].keys()
    assert all(TEXTS["ko"][k].strip() and TEXTS["en"][k].strip() for k in TEXTS["en"])


def message(text: str, *, roles: frozenset[str], kind: ConversationKind = ConversationKind.CHANNEL) -> Message:
    conversation_id = CHANNEL_CONVERSATION if kind == ConversationKind.CHANNEL else "a:1personal"
    return Message(
        id="m1",
        text=text,
        user=User(id="29:admin", name="Admin", aad_object_id="aad-admin", roles=roles),
        conversation=Conversation(id=conversation_id, kind=kind),
    )


@pytest.fixture
async def book(tmp_path: Path, connector: FakeConnector) -> AsyncIterator[tuple[ConversationBook, Router]]:
    async with sql_store("sqlite", tmp_path) as store:
        line = pipeline(store)
        await line.book.remember(channel_activity(connector.url, CHANNEL))
        directory = StaticDirectory(units=[Unit("7W"), Unit("6E")])
        router = Router([create_channels_skill(line.book, line.outbox, directory)])
        yield line.book, router
        await line.connector.close()


async def test_an_admin_links_the_channel_they_write_in(book: tuple[ConversationBook, Router]) -> None:
    conversations, router = book
    turn = RecordingTurn()
    await router.dispatch(message("link unit 7W", roles=frozenset({"admin"})), turn)
    assert turn.replies[-1].text == TEXTS["en"]["linked"].format(unit="7W")
    assert await conversations.linked("7W") == CHANNEL  # the channel, not the reply thread
    [(_, event)] = await conversations.audit()
    assert event["event"] == "linked" and event["by"] == "aad-admin" and event["unit"] == "7W"
    await router.dispatch(message("연결 병동 6E", roles=frozenset({"admin"})), turn)
    assert turn.replies[-1].text == TEXTS["ko"]["linked"].format(unit="6E")
    await router.dispatch(message("unlink unit 7W", roles=frozenset({"admin"})), turn)
    assert turn.replies[-1].text == TEXTS["en"]["unlinked"].format(unit="7W")
    assert await conversations.linked("7W") is None
    assert [e["event"] for _, e in await conversations.audit()] == ["linked", "linked", "unlinked"]


async def test_link_is_refused_politely_to_everyone_else_and_outside_channels(
    book: tuple[ConversationBook, Router],
) -> None:
    conversations, router = book
    turn = RecordingTurn()
    await router.dispatch(message("link unit 7W", roles=frozenset({"nurse", "charge"})), turn)
    assert "only available to admin" in turn.replies[-1].text
    await router.dispatch(message("link unit 7W", roles=frozenset({"admin"}), kind=ConversationKind.PERSONAL), turn)
    assert turn.replies[-1].text == TEXTS["en"]["not_channel"]
    await router.dispatch(message("link unit 99Q", roles=frozenset({"admin"})), turn)
    assert turn.replies[-1].text == TEXTS["en"]["unknown_unit"].format(unit="99Q")
    await router.dispatch(message("link", roles=frozenset({"admin"})), turn)
    assert turn.replies[-1].text == TEXTS["en"]["usage_link"]
    assert await conversations.links() == {} and await conversations.audit() == []


async def test_readyz_says_when_posts_wait_for_a_channel(start_bot: BotFactory) -> None:
    bot = await start_bot()
    delivery = bot.app[SERVICES].delivery
    assert delivery is not None
    await delivery.notifier.post("unit:7W", Reply(text="handover ready"), key="h-1")

    async def readiness() -> dict[str, object]:
        async with bot.session.get(f"{bot.url}/readyz") as response:
            assert response.status == 200  # queued posts do not take the replica out of service
            body: dict[str, object] = (await response.json())["channels"]
            return body

    for _ in range(300):
        channels = await readiness()
        if channels["unrouted"] == 1:
            break
        await asyncio.sleep(0.02)
    assert channels["queued"] == 1 and channels["unrouted"] == 1
    assert channels["unrouted_reasons"] == {"unit 7W has no channel and there is no fallback channel": 1}


def test_cli_links_a_unit_and_lists_conversations_links_and_unrouted_posts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WARDLINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("WARDLINE_EMBEDDINGS", "none")

    async def seed() -> None:
        store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'wardline.db'}")
        await store.open()
        line = pipeline(store)
        await line.book.remember(channel_activity("http://127.0.0.1:9/", CHANNEL, channel_name="7W nurses"))
        await line.notifier.post("unit:9Z", Reply(text="x"), key="k")
        await line.outbox.release(
            (await line.outbox.claim("cli-test", limit=1, lease_s=5))[0], "cli-test", delay_s=60, waiting="no channel"
        )
        await line.connector.close()
        await store.close()

    asyncio.run(seed())
    assert main(["channels", "link", "7W", "19:never-seen@thread.tacv2"]) == 2
    assert main(["channels", "link", "7W", CHANNEL]) == 0
    assert f"unit 7W -> {CHANNEL}" in capsys.readouterr().out
    assert main(["channels", "list", "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    [conversation] = report["conversations"]
    assert conversation == {
        "id": CHANNEL,
        "kind": "channel",
        "team_name": "Ward 7",
        "channel_name": "7W nurses",
        "units": ["7W"],
        "broken": False,
    }
    assert report["links"] == {"7W": {"conversation_id": CHANNEL, "broken": False}}
    assert report["fallback"] == CHANNEL
    assert report["outbox"]["unrouted"] == 1 and report["unrouted_reasons"] == {"no channel": 1}
    assert main(["channels", "list"]) == 0
    text = capsys.readouterr().out
    assert "7W nurses" in text and "1 unrouted" in text


async def test_until_helper_fails_loudly() -> None:
    with pytest.raises(AssertionError, match="never"):
        await until(lambda: False, within=0.05, what="never")


async def test_the_running_app_keeps_a_channel_it_joins_and_delivers_unit_posts_there(
    start_bot: BotFactory, connector: FakeConnector
) -> None:
    bot = await start_bot()
    services = bot.app[SERVICES]
    assert services.delivery is not None
    status, _ = await bot.post(install_update(connector.url, kind="channel"))  # the app added to a team
    assert status == 201
    book = services.delivery.book
    assert await book.first_channel() == CHANNEL
    record = await book.get(CHANNEL)
    assert record is not None and record["reference"]["conversation"]["id"] == CHANNEL
    # Post as a skill would; the running app's worker delivers it.
    await services.delivery.notifier.post("unit:7W", Reply(text="Handover for 7W is ready"), key="h-7w")
    await until(lambda: len(connector.delivered()) == 1, what="the unit post in the fallback channel")
    [sent] = connector.delivered()
    assert sent.conversation_id == CHANNEL
    assert sent.text == "_unrouted: unit 7W has no channel_\n\nHandover for 7W is ready"


async def test_a_linked_unit_channel_is_seen_by_skills_as_that_unit(
    start_bot: BotFactory, connector: FakeConnector
) -> None:
    """`alerts` typed in the channel linked to 7W lists 7W's alarms: the host maps the conversation to `unit:7W`."""
    from skills.alerts.texts import text
    from tests.fakes.teams import teams_message

    bot = await start_bot()
    book = bot.app[SERVICES].delivery.book
    await bot.post(teams_message("alerts", connector.url, kind="channel"))
    assert connector.messages()[-1].text == text("en", "list.which_unit")  # not linked: the skill must ask
    await book.link("7W", CHANNEL_CONVERSATION, by="test")
    await bot.post(teams_message("alerts", connector.url, kind="channel"))
    assert connector.messages()[-1].text == "No open alarms in 7W."


async def test_a_charge_nurse_posts_the_handover_and_the_card_reaches_the_linked_channel_through_the_outbox(
    start_bot: BotFactory, connector: FakeConnector
) -> None:
    """Directory roles -> handover skill -> durable outbox -> the unit's channel at the fake Bot Connector."""
    from tests.fakes.teams import teams_message

    root = Path(__file__).resolve().parents[2]
    bot = await start_bot(directory=root / "bot" / "directory.example.toml")
    book = bot.app[SERVICES].delivery.book
    ward = "19:7w-handover@thread.tacv2"
    await book.remember(channel_activity(connector.url, ward))
    await book.link("7W", ward, by="test")
    nurse = teams_message("handover post 7W", connector.url)  # Kim Nurse: a nurse, not a charge nurse
    await bot.post(nurse)
    assert "charge" in connector.messages()[-1].text.lower()  # refused, naming the role
    charge = teams_message("handover post 7W", connector.url, user_name="Lee Charge")
    charge["from"]["aadObjectId"] = "6a0f3b1e-0000-4000-8000-000000000002"  # Lee Charge in the example directory
    await bot.post(charge)
    cards: list[dict[str, object]] = []
    for _ in range(200):
        cards = [
            attachment["content"]
            for sent in connector.sent
            if sent.method == "POST" and ward in sent.path
            for attachment in sent.body.get("attachments") or []
        ]
        if cards:
            break
        await asyncio.sleep(0.05)
    assert len(cards) == 1
    assert "7W" in json.dumps(cards[0], ensure_ascii=False)
    assert connector.violations == []
