"""Generated answers end to end: Teams activity in, loopback fake Azure OpenAI, replies at the fake connector."""

from __future__ import annotations

import itertools
import json
import re
import time
from typing import Any

from tests.bot.conftest import BotFactory, RunningBot
from tests.fakes.azure_openai import Fail, FakeAzureOpenAI, Ok
from tests.fakes.teams import FakeConnector, teams_message

QUESTION = "What MAP do we target in septic shock?"
MESSAGE_ENTITY = "https://schema.org/Message"


def cite_map_target(body: dict[str, Any]) -> str:
    """Answer like a grounded model: cite the excerpt that holds the MAP target."""
    data = json.loads(body["messages"][-1]["content"])
    for excerpt in data["excerpts"]:
        if "65 mmHg" in excerpt["text"]:
            if any("\uac00" <= ch <= "\ud7a3" for ch in data["question"]):
                return f"패혈성 쇼크에서는 평균동맥압 65 mmHg 이상을 목표로 합니다 [{excerpt['n']}]."
            n = excerpt["n"]  # three sentences, each supported by the excerpt it cites (streaming shows whole ones)
            return (
                f"Target a mean arterial pressure of at least 65 mmHg [{n}]. Record MAP at least every 15 minutes "
                f"while vasopressors are being started [{n}]. Calculate MAP as (systolic + 2 × diastolic) ÷ 3 if the "
                f"monitor does not display it [{n}]."
            )
    return "NOT_COVERED"


async def start(start_bot: BotFactory, fake: FakeAzureOpenAI, **overrides: Any) -> RunningBot:
    settings = fake.settings()
    return await start_bot(
        openai_endpoint=settings.openai_endpoint,
        openai_api_key=settings.openai_api_key,
        openai_chat_deployment=settings.openai_chat_deployment,
        llm_request_timeout_s=1.0,
        answer_timeout_s=3.0,
        stream_interval_s=0.05,
        **overrides,
    )


async def test_generated_answer_in_group_chat(
    start_bot: BotFactory, connector: FakeConnector, fake_azure_openai: FakeAzureOpenAI
) -> None:
    fake_azure_openai.answer = cite_map_target
    bot = await start(start_bot, fake_azure_openai)
    status, _ = await bot.post(teams_message(QUESTION, connector.url, kind="groupChat"))
    assert status == 201
    assert [s.activity_type for s in connector.sent] == ["typing", "message"]  # no streaming outside 1:1
    reply = connector.messages()[0]
    assert reply.text.startswith("Target a mean arterial pressure of at least 65 mmHg [1]")
    entity = reply.entity(MESSAGE_ENTITY)
    assert entity is not None
    assert entity["additionalType"] == ["AIGeneratedContent"]
    assert [c["position"] for c in entity["citation"]] == [1]
    assert "Sepsis" in entity["citation"][0]["appearance"]["name"]
    assert reply.body["channelData"]["feedbackLoop"] == {"type": "default"}
    request = fake_azure_openai.requests_for("chat")[0]
    assert request.json["messages"][0]["role"] == "system"
    assert request.json.get("stream") in (None, False)


async def test_streamed_answer_in_personal_chat(
    start_bot: BotFactory, connector: FakeConnector, fake_azure_openai: FakeAzureOpenAI
) -> None:
    fake_azure_openai.answer = cite_map_target
    fake_azure_openai.chunk_delay = 0.03
    bot = await start(start_bot, fake_azure_openai)
    status, _ = await bot.post(teams_message(QUESTION, connector.url))
    assert status == 201
    typing = connector.typing()
    first = typing[0].entity("streaminfo")
    assert first == {"type": "streaminfo", "streamType": "informative", "streamSequence": 1}
    assert typing[0].text == "Searching the protocols…"
    stream_id = typing[0].response_id
    updates = [t for t in typing[1:] if (t.entity("streaminfo") or {}).get("streamType") == "streaming"]
    assert len(updates) >= 2
    sequences = [t.entity("streaminfo")["streamSequence"] for t in updates]  # type: ignore[index]
    assert sequences == sorted(sequences) and sequences[0] == 2
    assert all(t.entity("streaminfo")["streamId"] == stream_id for t in updates)  # type: ignore[index]
    assert all(len(b.text) >= len(a.text) for a, b in itertools.pairwise(updates))  # the whole text so far each time
    final = connector.messages()[-1]
    info = final.entity("streaminfo")
    assert info == {"type": "streaminfo", "streamId": stream_id, "streamType": "final"}
    assert "65 mmHg [1]" in final.text
    entity = final.entity(MESSAGE_ENTITY)
    assert entity is not None
    assert entity["additionalType"] == ["AIGeneratedContent"]
    assert final.body["channelData"]["feedbackLoop"] == {"type": "default"}
    assert fake_azure_openai.requests_for("chat")[0].json["stream"] is True


async def test_korean_question_gets_a_korean_generated_answer(
    start_bot: BotFactory, connector: FakeConnector, fake_azure_openai: FakeAzureOpenAI
) -> None:
    fake_azure_openai.answer = cite_map_target
    bot = await start(start_bot, fake_azure_openai, streaming=False)
    await bot.post(teams_message("패혈성 쇼크의 목표 평균동맥압은?", connector.url, locale="ko-KR"))
    reply = connector.messages()[-1]
    assert reply.text.startswith("패혈성 쇼크에서는 평균동맥압 65 mmHg")
    system = fake_azure_openai.requests_for("chat")[0].json["messages"][0]["content"]
    assert "Answer in Korean" in system


async def test_model_errors_fall_back_to_quoted_extracts(
    start_bot: BotFactory, connector: FakeConnector, fake_azure_openai: FakeAzureOpenAI
) -> None:
    fake_azure_openai.script("chat", [Fail(500), Fail(500), Fail(500), Fail(500)])
    bot = await start(start_bot, fake_azure_openai, llm_max_attempts=3, streaming=False)
    started = time.monotonic()
    await bot.post(teams_message(QUESTION, connector.url))
    assert time.monotonic() - started < 3.5
    reply = connector.messages()[-1]
    assert "quoted as written" in reply.text
    assert re.search(r"\[1\]", reply.text)
    entity = reply.entity(MESSAGE_ENTITY)
    assert entity is not None
    assert "additionalType" not in entity  # quotes are not AI-generated
    assert len(fake_azure_openai.requests_for("chat")) == 3


async def test_rate_limit_is_retried_after_the_asked_delay(
    start_bot: BotFactory, connector: FakeConnector, fake_azure_openai: FakeAzureOpenAI
) -> None:
    fake_azure_openai.answer = cite_map_target
    fake_azure_openai.script("chat", [Fail(429, retry_after=1), Ok()])
    bot = await start(start_bot, fake_azure_openai, streaming=False)
    await bot.post(teams_message(QUESTION, connector.url))
    first, second = fake_azure_openai.requests_for("chat")
    assert second.at - first.at >= 0.95
    assert connector.messages()[-1].text.startswith("Target a mean arterial pressure")


async def test_slow_model_times_out_inside_the_turn_budget(
    start_bot: BotFactory, connector: FakeConnector, fake_azure_openai: FakeAzureOpenAI
) -> None:
    fake_azure_openai.delay = 10
    bot = await start(start_bot, fake_azure_openai)
    started = time.monotonic()
    await bot.post(teams_message(QUESTION, connector.url))  # personal chat: streaming path
    elapsed = time.monotonic() - started
    assert elapsed < 4.5, elapsed
    final = connector.messages()[-1]
    assert "quoted as written" in final.text
    assert (final.entity("streaminfo") or {}).get("streamType") == "final"


async def test_identifiers_never_reach_the_model(
    start_bot: BotFactory, connector: FakeConnector, fake_azure_openai: FakeAzureOpenAI
) -> None:
    fake_azure_openai.answer = cite_map_target
    bot = await start(start_bot, fake_azure_openai, streaming=False)
    await bot.post(teams_message(f"Bed 3, MRN 12345678, RRN 850101-1234567: {QUESTION}", connector.url))
    sent = json.dumps(fake_azure_openai.requests_for("chat")[0].json, ensure_ascii=False)
    assert "12345678" not in sent
    assert "850101" not in sent
    assert "65 mmHg [1]" in connector.messages()[-1].text


async def test_azure_embeddings_make_retrieval_hybrid_in_both_languages(
    start_bot: BotFactory, connector: FakeConnector, fake_azure_openai: FakeAzureOpenAI
) -> None:
    from bot.app import SERVICES

    fake_azure_openai.answer = cite_map_target
    bot = await start(
        start_bot, fake_azure_openai, openai_embedding_deployment="embed", embeddings="azure", streaming=False
    )
    await bot.app[SERVICES].library.wait_embedded()  # lexical answers at once; vectors join in the background
    retriever = bot.app[SERVICES].library.retriever
    assert retriever.mode == "hybrid"
    assert retriever.uses_dense_for("패혈성 쇼크의 목표 평균동맥압은?")  # a multilingual model serves Korean too
    embedded = sum(len(r.json["input"]) for r in fake_azure_openai.requests_for("embeddings"))
    assert embedded == len(retriever.chunks)
    await bot.post(teams_message(QUESTION, connector.url))
    assert connector.messages()[-1].text.startswith("Target a mean arterial pressure")
    assert fake_azure_openai.requests_for("embeddings")[-1].json["input"] == [QUESTION]
