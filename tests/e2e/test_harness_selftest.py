"""The e2e harness itself: the stub bot in the Playground, driven by headless Chromium, end to end."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable

import pytest_asyncio

from tests.e2e.playground import E2E_MARKS, PlaygroundPage
from tests.e2e.stub_bot import (
    ANNOUNCEMENT,
    CITATION_ABSTRACT,
    CITATION_NAME,
    CITATION_URL,
    ActivityJson,
    RunningStubBot,
    run_stub_bot,
)

pytestmark = [*E2E_MARKS]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def stub_bot() -> AsyncIterator[RunningStubBot]:
    async with run_stub_bot() as bot:
        yield bot


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bot_endpoint(stub_bot: RunningStubBot) -> str:
    return stub_bot.endpoint


def is_message(text: str) -> Callable[[ActivityJson], bool]:
    return lambda a: a.get("type") == "message" and text in (a.get("text") or "")


async def test_a_cited_ai_answer_renders_and_takes_feedback(
    playground_page: PlaygroundPage, stub_bot: RunningStubBot
) -> None:
    page = playground_page
    install = await stub_bot.inbound.wait_for(lambda a: a.get("type") == "conversationUpdate")
    assert install["conversation"]["conversationType"] == "personal"

    await page.send("What MAP should I target in septic shock?")
    reply = await page.wait_for_bot_reply(containing="Target a MAP of 65 mmHg")
    assert await reply.text() == "Target a MAP of 65 mmHg 1."
    assert await reply.has_ai_label()
    assert await reply.citations() == ["1"]
    await page.screenshot("selftest-01-answer")

    preview = await reply.open_citation(1)
    assert preview.name == CITATION_NAME
    assert preview.abstract == CITATION_ABSTRACT
    assert preview.url == CITATION_URL
    await page.screenshot("selftest-02-citation")

    await reply.click_feedback(
        "dislike", text="Cites the wrong protocol version", screenshot="selftest-03-feedback-form"
    )
    vote = await stub_bot.inbound.wait_for(lambda a: a.get("name") == "message/submitAction")
    assert vote["type"] == "invoke"
    assert vote["value"] == {
        "actionName": "feedback",
        "actionValue": {"reaction": "dislike", "feedback": "Cites the wrong protocol version"},
    }
    answer = stub_bot.inbound.answer_to(vote)
    assert (answer.status, answer.body) == (200, b"")
    await page.screenshot("selftest-04-after-feedback")


async def test_group_chat_and_channel_need_a_mention(playground_page: PlaygroundPage, stub_bot: RunningStubBot) -> None:
    page = playground_page
    config = page.config

    await page.switch_to("group")
    await page.send("group question")
    reply = await page.wait_for_bot_reply(containing="65 mmHg")
    assert await reply.has_ai_label()
    group_message = await stub_bot.inbound.wait_for(is_message("group question"))
    assert group_message["text"] == f"<at>{config.bot_name}</at> group question"
    assert group_message["conversation"]["conversationType"] == "groupChat"
    assert group_message["conversation"]["id"] == config.group_chat_id

    await page.switch_to("channel")
    await page.send("channel question")
    channel_reply = await page.wait_for_bot_reply(containing="65 mmHg")
    assert await channel_reply.citations() == ["1"]
    channel_message = await stub_bot.inbound.wait_for(is_message("channel question"))
    assert channel_message["conversation"]["id"].startswith(f"{config.team_id};messageid=")
    assert channel_message["channelData"]["channel"] == {"id": config.team_id}
    await page.screenshot("selftest-05-channel-reply")

    await page.send("announce")
    post = await page.wait_for_bot_reply(containing=ANNOUNCEMENT)
    assert await post.text() == ANNOUNCEMENT
    await page.screenshot("selftest-06-channel-post")


async def test_a_streamed_answer_ends_in_one_final_message(
    playground_page: PlaygroundPage, stub_bot: RunningStubBot
) -> None:
    page = playground_page
    question = "패혈성 쇼크 목표 MAP? (stream)"
    await page.send(question)
    reply = await page.wait_for_bot_reply(containing="Target a MAP of 65 mmHg")
    assert await reply.has_ai_label()
    assert await reply.citations() == ["1"]
    assert len(await page.bot_messages().all()) == 1, "the informative update and the final answer are one bubble"
    received: ActivityJson = await stub_bot.inbound.wait_for(is_message("(stream)"))
    assert received["text"] == question
    await page.screenshot("selftest-07-streamed-korean")
