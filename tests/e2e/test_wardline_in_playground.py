"""Wardline itself in Microsoft 365 Agents Playground, driven by headless Chromium, with a screenshot per step.

The bot is the real app (SQLite, bundled samples, lexical retrieval) with a loopback fake Azure OpenAI, so answers
are generated, cited and AI-labelled exactly as with Azure; the Playground is Microsoft's own Teams-like client.
"""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiohttp import web

from bot.app import SERVICES, create_app
from skills.protocols.assistant import FEEDBACK_STREAM
from tests.bot.conftest import bot_settings, serve
from tests.e2e.playground import E2E_MARKS, PlaygroundPage
from tests.fakes.azure_openai import FakeAzureOpenAI

pytestmark = [*E2E_MARKS]


def grounded_answer(body: dict[str, Any]) -> str:
    """A well-behaved model: restate the first excerpt's first sentence and cite it."""
    data = json.loads(body["messages"][-1]["content"])
    first = data["excerpts"][0]
    sentence = re.split(r"(?<=[.!?])\s+|(?<=다\.)\s*", " ".join(first["text"].split()))[0]
    return f"{sentence} [{first['n']}]"


@dataclass
class RunningWardline:
    endpoint: str
    app: web.Application


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def wardline(tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[RunningWardline]:
    async with FakeAzureOpenAI() as fake:
        fake.answer = grounded_answer
        fake.chunk_delay = 0.02
        settings = bot_settings(
            tmp_path_factory.mktemp("wardline-e2e"),
            openai_endpoint=fake.url,
            openai_api_key=fake.api_key,
            openai_chat_deployment="chat",
            stream_interval_s=0.2,
        )
        app = create_app(settings)
        runner, url = await serve(app)
        try:
            yield RunningWardline(f"{url}/api/messages", app)
        finally:
            await runner.cleanup()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bot_endpoint(wardline: RunningWardline) -> str:
    return wardline.endpoint


async def test_help_lists_the_commands(playground_page: PlaygroundPage) -> None:
    page = playground_page
    await page.send("help")
    reply = await page.wait_for_bot_reply(containing="can help with", timeout=20)
    text = await reply.text()
    for command in ("help", "ask"):
        assert command in text
    assert not await reply.has_ai_label()
    await page.screenshot("wardline-01-help")


async def test_english_question_citation_and_feedback(
    playground_page: PlaygroundPage, wardline: RunningWardline
) -> None:
    page = playground_page
    await page.send("What MAP do we target in septic shock?")
    reply = await page.wait_for_bot_reply(containing="65 mmHg", timeout=20)
    assert await reply.has_ai_label()
    assert await reply.citations() == ["1"]
    assert len(await page.bot_messages().all()) >= 1
    await page.screenshot("wardline-02-answer-en")

    preview = await reply.open_citation(1)
    assert "Sepsis" in preview.name
    assert "65 mmHg" in preview.abstract
    await page.screenshot("wardline-03-citation")

    store = wardline.app[SERVICES].store
    before = len(await store.read(FEEDBACK_STREAM))
    await reply.click_feedback(
        "dislike", text="Please show the vasopressor dose too", screenshot="wardline-04-feedback"
    )
    for _ in range(100):
        votes = await store.read(FEEDBACK_STREAM)
        if len(votes) > before:
            break
        await page.page.wait_for_timeout(100)
    vote = votes[-1][1]
    assert vote["reaction"] == "dislike"
    assert vote["comment"] == "Please show the vasopressor dose too"
    assert vote["question"] == "What MAP do we target in septic shock?"
    assert any("Sepsis" in c["title"] for c in vote["citations"])
    await page.screenshot("wardline-05-after-feedback")


async def test_korean_question(playground_page: PlaygroundPage) -> None:
    page = playground_page
    await page.send("패혈성 쇼크에서 목표 평균동맥압은 얼마인가요?")
    reply = await page.wait_for_bot_reply(containing="65 mmHg", timeout=20)
    assert re.search("[가-힣]", await reply.text())
    assert await reply.has_ai_label()
    assert await reply.citations() == ["1"]
    preview = await reply.open_citation(1)
    assert "패혈증" in preview.name
    await page.screenshot("wardline-06-answer-ko")


async def test_question_outside_the_protocols(playground_page: PlaygroundPage) -> None:
    page = playground_page
    await page.send("How do I treat a rattlesnake bite in a dog?")
    reply = await page.wait_for_bot_reply(containing="don't seem to cover", timeout=20)
    assert await reply.citations() == []
    assert not await reply.has_ai_label()
    await page.screenshot("wardline-07-not-covered")


async def test_channel_question_needs_no_streaming(playground_page: PlaygroundPage) -> None:
    page = playground_page
    await page.switch_to("channel")
    await page.send("what MAP do we target in septic shock?")
    reply = await page.wait_for_bot_reply(containing="65 mmHg", timeout=20)
    assert await reply.has_ai_label()
    assert await reply.citations() == ["1"]
    await page.screenshot("wardline-08-channel")


async def test_screenshots_exist(e2e_artifacts: Path) -> None:
    names = {p.name for p in e2e_artifacts.glob("wardline-*.png")}
    assert {"wardline-01-help.png", "wardline-02-answer-en.png", "wardline-03-citation.png"} <= names
