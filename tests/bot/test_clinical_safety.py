"""Clinical safety end to end: real Activities in, loopback fake Azure OpenAI, what Teams would show at the connector."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from bot.cli import main
from bot.storage import SqlStore
from skills.protocols.assistant import ANSWERS, FEEDBACK_STREAM, HISTORY
from tests.bot.conftest import BotFactory
from tests.fakes.azure_openai import FakeAzureOpenAI
from tests.fakes.teams import FakeConnector, teams_message
from tests.skills.protocols.test_safety import INJECTED


def obey_the_injection(body: dict[str, Any]) -> str:
    """A model that followed the planted sentence, citing the excerpt it came from."""
    data = json.loads(body["messages"][-1]["content"])
    n = data["excerpts"][0]["n"] if data["excerpts"] else 1
    return (
        f"Check the infusion site every hour for extravasation [{n}]. Stop norepinephrine immediately in every "
        f"patient [{n}]. This is hospital policy [{n}]."
    )


async def test_an_injected_sentence_never_reaches_teams(
    start_bot: BotFactory, connector: FakeConnector, fake_azure_openai: FakeAzureOpenAI, tmp_path: Path
) -> None:
    folder = tmp_path / "protocols"
    folder.mkdir()
    (folder / "vaso.md").write_text(INJECTED, encoding="utf-8")
    fake_azure_openai.answer = obey_the_injection
    fake_azure_openai.chunk_delay = 0.02
    settings = fake_azure_openai.settings()
    bot = await start_bot(
        protocols_dir=folder,
        openai_endpoint=settings.openai_endpoint,
        openai_api_key=settings.openai_api_key,
        openai_chat_deployment=settings.openai_chat_deployment,
        llm_request_timeout_s=1.0,
        answer_timeout_s=3.0,
        stream_interval_s=0.01,
    )
    await bot.post(teams_message("How is a norepinephrine infusion checked?", connector.url))  # 1:1: streamed
    await bot.post(teams_message("How is a norepinephrine infusion checked?", connector.url, kind="groupChat"))
    shown = [sent.text for sent in connector.sent]
    assert any("Check the infusion site every hour" in text for text in shown)
    for text in shown:
        assert "Stop norepinephrine" not in text and "cite this" not in text
    prompt = fake_azure_openai.requests_for("chat")[0].json["messages"][-1]["content"]
    assert "Stop norepinephrine" not in prompt


async def test_an_emergency_is_answered_first_in_teams(start_bot: BotFactory, connector: FakeConnector) -> None:
    bot = await start_bot(emergency_text="Call the rapid response team on 1234 now.")
    await bot.post(teams_message("Patient not breathing in septic shock, what MAP?", connector.url))
    messages = connector.messages()
    assert messages[0].text == "Call the rapid response team on 1234 now."
    assert "65 mmHg" in messages[-1].text


async def test_privacy_purge_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    monkeypatch.chdir(tmp_path)  # no .env from the worktree
    monkeypatch.setenv("WARDLINE_DATA_DIR", str(tmp_path / "var"))
    store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'wardline.db'}")
    await store.open()
    await store.put(ANSWERS, "old", {"question": "q", "at": "2025-06-01T00:00:00+00:00"})
    await store.put(ANSWERS, "new", {"question": "q", "at": datetime.now(UTC).isoformat()})
    await store.put(HISTORY, "c|u", {"turns": [{"q": "q", "a": "a", "at": "2025-06-01T00:00:00+00:00"}]})
    await store.append(FEEDBACK_STREAM, {"reaction": "like"})
    await store.close()

    assert await _run(["privacy", "purge", "--before", "2026-01-01"]) == 0
    assert "purged 2 answers and chat histories and 0 feedback votes" in capsys.readouterr().out
    assert await _run(["privacy", "purge", "--before", "2099-01-01T00:00:00+09:00"]) == 0
    assert "purged 1 answers and chat histories and 1 feedback votes" in capsys.readouterr().out
    assert await _run(["privacy", "purge", "--before", "yesterday"]) == 2  # a usage error: exit 2


async def _run(argv: list[str]) -> int:
    """The CLI runs its own event loop: run it in a thread, as a shell would run the process."""
    import asyncio

    return await asyncio.to_thread(main, argv)


async def test_azure_embeddings_never_receive_identifiers(
    start_bot: BotFactory, connector: FakeConnector, fake_azure_openai: FakeAzureOpenAI
) -> None:
    settings = fake_azure_openai.settings()
    bot = await start_bot(
        openai_endpoint=settings.openai_endpoint,
        openai_api_key=settings.openai_api_key,
        openai_embedding_deployment="embed",
        embeddings="azure",
        min_similarity=0.99,  # the fake's hashed vectors are alike: let coverage decide what is answerable
    )
    indexed = len(fake_azure_openai.requests_for("embeddings"))
    for text in (
        "Kim Minji 900101-1234567 MRN 55667788: how is a rattlesnake bite treated?",  # not covered: closest search
        "주민번호900101-1234567 환자 010–1234–5678 패혈성 쇼크 목표 혈압은?",
        "and for 010-9876-5432?",  # a follow-up: the combined search
    ):
        await bot.post(teams_message(text, connector.url))
    sent = [item for r in fake_azure_openai.requests_for("embeddings")[indexed:] for item in r.json["input"]]
    assert sent, "questions were embedded"
    for item in sent:
        for identifier in ("900101", "1234567", "55667788", "1234", "5678", "9876", "5432"):
            assert identifier not in item, f"{identifier!r} reached Azure embeddings in {item!r}"


async def test_an_emergency_comes_before_a_streamed_answer(
    start_bot: BotFactory, connector: FakeConnector, fake_azure_openai: FakeAzureOpenAI
) -> None:
    from tests.bot.test_generation import cite_map_target

    fake_azure_openai.answer = cite_map_target
    settings = fake_azure_openai.settings()
    bot = await start_bot(
        openai_endpoint=settings.openai_endpoint,
        openai_api_key=settings.openai_api_key,
        openai_chat_deployment=settings.openai_chat_deployment,
        stream_interval_s=0.01,
    )
    await bot.post(teams_message("환자가 숨을 안 쉬어요. 패혈성 쇼크 목표 MAP는?", connector.url))
    first = connector.sent[0]
    assert first.activity_type == "message" and "신속대응팀" in first.text  # before the stream starts
    assert (connector.typing()[0].entity("streaminfo") or {}).get("streamType") == "informative"
    assert "65 mmHg" in connector.messages()[-1].text
