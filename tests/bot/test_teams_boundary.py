"""The Teams boundary under a failing network and hostile input: real sockets, a misbehaving loopback connector."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest

from bot.app import ENDPOINT, SERVICES
from bot.cli import main
from bot.teams.handler import CONVERSATIONS
from bot.teams.turn import UNDELIVERED
from skills.core.fakes import RecordingNotifier
from skills.core.ports import Priority
from tests.bot.conftest import BotFactory, RunningBot, serve
from tests.fakes.azure_openai import FakeAzureOpenAI
from tests.fakes.connector_faults import FaultyConnector
from tests.fakes.teams import (
    BOT_ID,
    GROUP_CONVERSATION,
    PERSONAL_CONVERSATION,
    install_update,
    teams_message,
)

QUESTION = "What MAP do we target in septic shock?"


@pytest.fixture
async def faulty() -> AsyncIterator[FaultyConnector]:
    fake = FaultyConnector()
    runner, url = await serve(fake.app())
    fake.url = url + "/"
    yield fake
    fake.release()
    await runner.cleanup()


def with_outbox(bot: RunningBot) -> RecordingNotifier:
    """Give the running bot a durable outbox (the outbox itself is tested elsewhere; this records what it gets)."""
    notifier = RecordingNotifier()
    bot.app[ENDPOINT].bot.notifier = notifier
    return notifier


def answers(connector: FaultyConnector) -> list[str]:
    return [s.text for s in connector.messages() if "65 mmHg" in s.text]


# 5. A hanging connector for one conversation must not delay another conversation.


async def test_a_hanging_conversation_does_not_delay_another(start_bot: BotFactory, faulty: FaultyConnector) -> None:
    bot = await start_bot(connector_timeout_s=1.0, reply_window_s=2.0)
    notifier = with_outbox(bot)
    faulty.hang.add(GROUP_CONVERSATION)

    async def timed(kind: str) -> tuple[int, float]:
        started = time.monotonic()
        status, _ = await bot.post(teams_message(QUESTION, faulty.url, kind=kind))
        return status, time.monotonic() - started

    stuck = [asyncio.create_task(timed("groupChat")) for _ in range(10)]
    for _ in range(100):  # wait until every stuck turn holds a hanging request to the connector
        if len(faulty.hung) >= len(stuck):
            break
        await asyncio.sleep(0.02)
    assert len(faulty.hung) >= len(stuck)

    status, elapsed = await asyncio.wait_for(timed("personal"), 10)
    assert status == 201
    assert len(answers(faulty)) == 1, "the other conversation got its answer"
    assert elapsed < 2.0, f"the other conversation waited {elapsed:.2f}s behind a hanging one"

    results = await asyncio.wait_for(asyncio.gather(*stuck), 15)
    assert all(status == 201 for status, _ in results)
    slowest = max(seconds for _, seconds in results)
    assert slowest < 6.0, f"a hanging connector held a turn {slowest:.1f}s"
    # each stuck answer was handed to the outbox instead of being lost
    assert len(notifier.posts) == len(stuck)
    assert {target for target, _, _ in notifier.posts} == {f"conversation:{GROUP_CONVERSATION}"}
    assert all("65 mmHg" in reply.text for _, reply, _ in notifier.posts)


# 6. Typing is best effort; a reply that cannot go within the window goes to the outbox.


async def test_throttled_typing_does_not_lose_the_answer(start_bot: BotFactory, faulty: FaultyConnector) -> None:
    bot = await start_bot()
    faulty.faults = [(429, "30")]  # the typing indicator is throttled for 30 s
    status, _ = await bot.post(teams_message(QUESTION, faulty.url))
    assert status == 201
    assert len(answers(faulty)) == 1
    assert not any("something went wrong" in s.text for s in faulty.messages())


async def test_retry_after_past_the_window_goes_to_the_outbox(start_bot: BotFactory, faulty: FaultyConnector) -> None:
    bot = await start_bot()
    notifier = with_outbox(bot)
    faulty.faults = [(200, None), (429, "30")]  # typing goes through; the answer is throttled for 30 s
    activity = teams_message(QUESTION, faulty.url)
    started = time.monotonic()
    status, _ = await bot.post(activity)
    elapsed = time.monotonic() - started
    assert status == 201
    assert elapsed < 5.0, f"the turn waited {elapsed:.1f}s for a Retry-After past its window"
    assert len(notifier.posts) == 1
    target, reply, key = notifier.posts[0]
    assert target == f"conversation:{PERSONAL_CONVERSATION}"
    assert key == f"reply:{activity['id']}:1"
    assert notifier.priorities[key] == Priority.NORMAL
    assert "65 mmHg" in reply.text and reply.record_id
    assert len(answers(faulty)) == 1, "exactly one (refused) attempt within the turn"


async def test_redelivered_activity_maps_to_the_same_outbox_key(start_bot: BotFactory, faulty: FaultyConnector) -> None:
    bot = await start_bot()
    notifier = with_outbox(bot)
    activity = teams_message(QUESTION, faulty.url)
    for _ in range(2):  # Teams redelivers an activity it thinks was not answered
        faulty.faults = [(200, None), (503, "60")]
        assert (await bot.post(activity))[0] == 201
    assert len(notifier.posts) == 1, "one outbox row for one answer"


async def test_repeated_server_errors_go_to_the_outbox(start_bot: BotFactory, faulty: FaultyConnector) -> None:
    bot = await start_bot()
    notifier = with_outbox(bot)
    faulty.faults = [(200, None)] + [(502, None)] * 4
    status, _ = await bot.post(teams_message(QUESTION, faulty.url))
    assert status == 201
    assert len(notifier.posts) == 1
    assert len(answers(faulty)) == 4, "four attempts within the window, then the outbox"


async def test_without_an_outbox_the_user_is_told_plainly(start_bot: BotFactory, faulty: FaultyConnector) -> None:
    bot = await start_bot()
    bot.app[ENDPOINT].bot.notifier = None  # as if the host had no outbox
    faulty.faults = [(200, None), (429, "30")]
    status, _ = await bot.post(teams_message(QUESTION, faulty.url))
    assert status == 201
    assert faulty.messages()[-1].text == UNDELIVERED["en"]
    faulty.clear()
    faulty.faults = [(200, None), (429, "30")]
    await bot.post(teams_message("패혈성 쇼크에서 목표 평균동맥압은 얼마인가요?", faulty.url, locale="ko-KR"))
    assert faulty.messages()[-1].text == UNDELIVERED["ko"]


async def test_the_hosts_outbox_delivers_a_reply_the_connector_throttled_past_the_window(
    start_bot: BotFactory, faulty: FaultyConnector
) -> None:
    bot = await start_bot(reply_window_s=1.0)
    faulty.faults = [(200, None), (429, "3")]  # typing goes through; the answer is throttled past the turn's window
    status, _ = await bot.post(teams_message(QUESTION, faulty.url))
    assert status == 201
    for _ in range(200):  # up to 20 s: Retry-After 3 s, then the outbox worker's send
        if answers(faulty):
            break
        await asyncio.sleep(0.1)
    assert len(answers(faulty)) == 1  # delivered once, by the outbox worker after Retry-After
    assert UNDELIVERED["en"] not in [s.text for s in faulty.messages()]


async def test_a_refused_reply_is_not_queued(start_bot: BotFactory, faulty: FaultyConnector) -> None:
    bot = await start_bot()
    notifier = with_outbox(bot)
    faulty.faults = [(200, None), (403, None)]  # the bot was removed from the chat: the outbox would fail too
    status, _ = await bot.post(teams_message(QUESTION, faulty.url))
    assert status == 201
    assert notifier.posts == []


def test_undelivered_text_has_both_languages() -> None:
    assert set(UNDELIVERED) == {"en", "ko"} and all(UNDELIVERED.values())


# 9. Malformed requests are 400 (never 500) and change nothing.


def _deep(depth: int) -> bytes:
    return b'{"type": "message", "x": ' + b"[" * depth + b"]" * depth + b"}"


async def test_malformed_requests_are_400_and_change_nothing(bot: RunningBot, faulty: FaultyConnector) -> None:
    store = bot.app[SERVICES].store
    before = await store.scan(CONVERSATIONS)
    no_recipient = teams_message(QUESTION, faulty.url)
    del no_recipient["recipient"]
    bare_mention = teams_message(QUESTION, faulty.url, kind="channel")
    for entity in bare_mention["entities"]:
        entity.pop("mentioned", None)
    untyped_entity = teams_message(QUESTION, faulty.url)
    untyped_entity["entities"][0]["type"] = None
    cases = {
        "entity without a type": await bot.post_raw(json.dumps(untyped_entity).encode(), "application/json"),
        "nested 5000 deep": await bot.post_raw(_deep(5000), "application/json"),
        "unknown charset": await bot.post_raw(b'{"type": "message"}', "application/json; charset=klingon"),
        "not the declared charset": await bot.post_raw("{}".encode("utf-16"), "application/json; charset=utf-8"),
        "missing recipient": await bot.post_raw(json.dumps(no_recipient).encode(), "application/json"),
        "mention without mentioned": await bot.post_raw(json.dumps(bare_mention).encode(), "application/json"),
    }
    assert {name: status for name, (status, _) in cases.items()} == dict.fromkeys(cases, 400)
    assert all(b"Traceback" not in body for _, body in cases.values())
    substring = await bot.post_raw(
        json.dumps(teams_message(QUESTION, faulty.url)).encode(), "text/plain; x=application/json"
    )
    assert substring[0] == 415, "the media type is parsed, not searched for"
    stray_token = await bot.post(teams_message(QUESTION, faulty.url), headers={"Authorization": "Bearer x.y.z"})
    assert stray_token[0] == 401, "anonymous mode with an Authorization header is 401, not 500"
    assert faulty.sent == []
    assert await store.scan(CONVERSATIONS) == before


async def test_json_with_parameters_is_still_json(bot: RunningBot, faulty: FaultyConnector) -> None:
    body = json.dumps(teams_message("help", faulty.url)).encode()
    assert (await bot.post_raw(body, "Application/JSON; charset=UTF-8"))[0] == 201
    assert len(faulty.messages()) == 1


# 11. Anonymous mode: loopback only, and untrusted callers cannot move stored conversation references.


async def test_anonymous_mode_answers_only_a_loopback_service_url(bot: RunningBot, faulty: FaultyConnector) -> None:
    for service_url in ("https://attacker.example/", "http://10.1.2.3:8080/", "http://[::ffff:127.0.0.1]/"):
        status, _ = await bot.post(teams_message(QUESTION, service_url))
        assert status == 403, service_url
    assert await bot.app[SERVICES].store.scan(CONVERSATIONS) == []
    assert faulty.sent == []


async def test_untrusted_callers_do_not_change_conversation_references(
    bot: RunningBot, faulty: FaultyConnector, monkeypatch: pytest.MonkeyPatch
) -> None:
    import bot.teams.adapter as adapter

    store = bot.app[SERVICES].store
    monkeypatch.setattr(adapter, "_is_loopback_peer", lambda remote: False)  # as if posted from another machine
    assert (await bot.post(install_update(faulty.url)))[0] == 201
    assert (await bot.post(teams_message("help", faulty.url)))[0] == 201
    assert await store.get(CONVERSATIONS, PERSONAL_CONVERSATION) is None
    assert any("`help`" in s.text for s in faulty.messages()), "the caller still gets an answer"
    monkeypatch.undo()
    assert (await bot.post(install_update(faulty.url)))[0] == 201
    assert (await store.get(CONVERSATIONS, PERSONAL_CONVERSATION)) is not None


def test_peer_addresses() -> None:
    from bot.teams.adapter import _is_loopback_peer

    assert _is_loopback_peer("127.0.0.1") and _is_loopback_peer("::1") and _is_loopback_peer("127.8.9.10")
    assert not _is_loopback_peer("10.0.0.5") and not _is_loopback_peer(None) and not _is_loopback_peer("x")


@pytest.mark.parametrize("host", ["0.0.0.0", "10.0.0.5", "::", "wardline.example.org"])
def test_serve_refuses_a_public_bind_without_an_app_id(
    host: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("MicrosoftAppId", raising=False)
    assert main(["serve", "--host", host]) == 2
    error = capsys.readouterr().err
    assert "--insecure-anonymous" in error and len(error.strip().splitlines()) == 1


def test_bot_mentions_are_removed_literally() -> None:
    from botbuilder.schema import Activity

    from bot.teams.turn import to_message

    def message(text: Any, mention: dict[str, Any]) -> Activity:
        body = teams_message("x", "http://127.0.0.1/", kind="channel")
        body["text"] = text
        body["entities"][1] = {"type": "mention", **mention}
        return Activity().deserialize(body)

    bot = {"id": BOT_ID, "name": "W(ard"}
    assert to_message(message("<at>W(ard</at> what MAP?", {"text": "<at>W(ard</at>", "mentioned": bot})).text == (
        "what MAP?"
    )
    assert to_message(message("<at>W(ard</at> hi W(ard", {"mentioned": bot})).text == "hi W(ard"
    assert to_message(message(None, {"text": 5, "mentioned": bot})).text == ""
    other = {"id": "29:someone", "name": "Kim"}
    assert (
        to_message(message("<at>Kim</at> ok", {"text": "<at>Kim</at>", "mentioned": other})).text == "<at>Kim</at> ok"
    )


async def test_a_throttled_stream_still_delivers_the_final_answer(
    start_bot: BotFactory, faulty: FaultyConnector, fake_azure_openai: FakeAzureOpenAI
) -> None:
    from tests.bot.test_generation import cite_map_target, start

    fake_azure_openai.answer = cite_map_target
    fake_azure_openai.chunk_delay = 0.03
    bot = await start(start_bot, fake_azure_openai)
    faulty.faults = [
        (200, None),
        (429, "30"),
    ]  # the informative update goes through; the first text update is throttled
    started = time.monotonic()
    status, _ = await bot.post(teams_message(QUESTION, faulty.url))
    assert status == 201
    assert time.monotonic() - started < 8.0, "a throttled stream update never holds the turn for its Retry-After"
    streaming = [t for t in faulty.typing() if (t.entity("streaminfo") or {}).get("streamType") == "streaming"]
    assert len(streaming) == 1, "after a refused update the stream stops updating"
    final = faulty.messages()[-1]
    assert "65 mmHg [1]" in final.text
    assert (final.entity("streaminfo") or {}).get("streamType") == "final"
