"""bot.llm over real sockets: AzureChat / AzureEmbedder against the loopback fake Azure OpenAI service."""

from __future__ import annotations

import random
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import openai
import pytest

from bot.llm import AzureChat, AzureEmbedder, AzureOpenAIClient, EntraTokenProvider
from bot.settings import Settings, SettingsError
from skills.core.ports import ChatMessage, LLMError
from tests.fakes.azure_openai import (
    BrokenStream,
    Drop,
    Fail,
    FakeAzureOpenAI,
    Ok,
    content_filter,
    fake_azure_openai,  # noqa: F401 (fixture)
)

QUESTION = [
    ChatMessage("system", "Answer only from the protocol excerpts."),
    ChatMessage("user", "What is the fluid bolus in septic shock?"),
]

MakeClient = Callable[..., AzureOpenAIClient]


@pytest.fixture
def fake(fake_azure_openai: FakeAzureOpenAI) -> FakeAzureOpenAI:  # noqa: F811 (the imported fixture)
    return fake_azure_openai


@pytest.fixture
async def make_client(fake: FakeAzureOpenAI) -> AsyncIterator[MakeClient]:
    """AzureOpenAIClients on the fake with small timeouts; all closed after the test."""
    clients: list[AzureOpenAIClient] = []

    def make(**overrides: Any) -> AzureOpenAIClient:
        values: dict[str, Any] = {"llm_request_timeout_s": 1.0, "llm_max_attempts": 3, "answer_timeout_s": 3.0}
        values.update(overrides)
        client = AzureOpenAIClient(fake.settings(**values))
        clients.append(client)
        return client

    yield make
    for client in clients:
        await client.close()


@pytest.fixture
def no_jitter(monkeypatch: pytest.MonkeyPatch) -> None:
    """Backoff without Retry-After is random.uniform(0, cap): make it ~0 so retry tests are fast and exact."""
    monkeypatch.setattr(random, "uniform", lambda low, high: min(high, 0.01))


def chat_for(client: AzureOpenAIClient) -> AzureChat:
    return AzureChat(client, budget_s=client.settings.answer_timeout_s)


async def collect(chat: AzureChat, into: list[str] | None = None) -> list[str]:
    pieces = into if into is not None else []
    async for piece in chat.stream(QUESTION):
        pieces.append(piece)
    return pieces


# -- chat completions ----------------------------------------------------------------------------------------------


async def test_complete_returns_the_answer_and_sends_the_prompt(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    fake.answer = "Give 30 mL/kg of crystalloid within 3 hours [1]."
    answer = await chat_for(make_client()).complete(QUESTION, max_tokens=321)

    assert answer == "Give 30 mL/kg of crystalloid within 3 hours [1]."
    [request] = fake.requests
    assert request.kind == "chat"
    assert request.path == "/openai/deployments/chat/chat/completions"
    assert request.query["api-version"] == Settings().openai_api_version
    assert request.headers["api-key"] == "test"
    assert "authorization" not in request.headers
    assert request.json["messages"] == [
        {"role": "system", "content": "Answer only from the protocol excerpts."},
        {"role": "user", "content": "What is the fluid bolus in septic shock?"},
    ]
    assert request.json["max_tokens"] == 321
    assert request.json["temperature"] == 0.0
    assert not request.json.get("stream")


async def test_answer_may_be_computed_from_the_request(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    fake.answer = lambda body: f"echo: {body['messages'][-1]['content']}"
    assert await chat_for(make_client()).complete(QUESTION) == "echo: What is the fluid bolus in septic shock?"


async def test_openai_client_retries_are_off(make_client: MakeClient) -> None:
    client = make_client(llm_request_timeout_s=0.7)
    assert client.client.max_retries == 0
    assert client.client.timeout == 0.7


@pytest.mark.usefixtures("no_jitter")
@pytest.mark.parametrize("attempts", [1, 2, 3])
async def test_repeated_500_gives_llm_error_after_exactly_max_attempts_requests(
    fake: FakeAzureOpenAI, make_client: MakeClient, attempts: int
) -> None:
    fake.script("chat", [Fail(500)] * 10)
    with pytest.raises(LLMError, match="500") as caught:
        await chat_for(make_client(llm_max_attempts=attempts)).complete(QUESTION)

    # One HTTP request per tenacity attempt: the openai client itself never retried (its default would be 3x).
    assert len(fake.requests) == attempts
    assert [r.headers["x-stainless-retry-count"] for r in fake.requests] == ["0"] * attempts
    assert isinstance(caught.value.__cause__, openai.InternalServerError)


@pytest.mark.usefixtures("no_jitter")
async def test_500_then_success(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    fake.answer = "Recovered."
    fake.script("chat", [Fail(500)])
    assert await chat_for(make_client()).complete(QUESTION) == "Recovered."
    assert len(fake.requests) == 2


@pytest.mark.usefixtures("no_jitter")
@pytest.mark.parametrize("failure", [Fail(502), Fail(503), Fail(504), Fail(408), Drop()], ids=repr)
async def test_transient_failures_are_retried(fake: FakeAzureOpenAI, make_client: MakeClient, failure: Any) -> None:
    fake.script("chat", [failure])
    assert await chat_for(make_client()).complete(QUESTION) == fake.answer
    assert len(fake.requests) == 2


async def test_429_waits_for_retry_after_then_succeeds(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    fake.script("chat", [Fail(429, retry_after=1)])
    client = make_client(llm_request_timeout_s=5.0, answer_timeout_s=3.0)

    started = time.monotonic()
    answer = await chat_for(client).complete(QUESTION)
    elapsed = time.monotonic() - started

    assert answer == fake.answer
    assert len(fake.requests) == 2
    assert elapsed >= 0.95
    assert fake.requests[1].at - fake.requests[0].at >= 0.95
    # The second attempt's timeout is capped by what is left of the budget (3 s - ~1 s), not the 5 s request timeout.
    assert float(fake.requests[1].headers["x-stainless-read-timeout"]) <= 2.05


async def test_retry_after_ms_is_honoured_before_retry_after(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    # retry-after-ms (0.4 s) wins over Retry-After (10 s, which would overrun the 3 s budget and fail at once).
    fake.script("chat", [Fail(429, retry_after_ms=400, retry_after=10)])

    started = time.monotonic()
    answer = await chat_for(make_client()).complete(QUESTION)
    elapsed = time.monotonic() - started

    assert answer == fake.answer
    assert len(fake.requests) == 2
    assert 0.38 <= fake.requests[1].at - fake.requests[0].at < 1.5
    assert elapsed < 1.5


async def test_retry_after_longer_than_the_budget_fails_at_once(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    fake.script("chat", [Fail(429, retry_after=30), Ok()])

    started = time.monotonic()
    with pytest.raises(LLMError, match="budget"):
        await chat_for(make_client(answer_timeout_s=2.0)).complete(QUESTION)

    assert time.monotonic() - started < 0.5  # no waiting for a retry that cannot fit
    assert len(fake.requests) == 1


async def test_slow_server_times_out_is_retried_and_stays_within_the_budget(
    fake: FakeAzureOpenAI, make_client: MakeClient
) -> None:
    fake.delay = 3.0  # every request hangs far longer than the 0.3 s request timeout
    client = make_client(llm_request_timeout_s=0.3, llm_max_attempts=3, answer_timeout_s=1.5)

    started = time.monotonic()
    with pytest.raises(LLMError) as caught:
        await chat_for(client).complete(QUESTION)
    elapsed = time.monotonic() - started

    assert 2 <= len(fake.requests) <= 3  # retried (real jitter: a third attempt only if it fits the budget)
    assert elapsed < 1.5 + 0.4
    assert isinstance(caught.value.__cause__, openai.APITimeoutError) or "budget" in str(caught.value)


@pytest.mark.usefixtures("no_jitter")
async def test_timeouts_use_every_attempt_when_they_fit(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    fake.delay = 3.0
    client = make_client(llm_request_timeout_s=0.3, llm_max_attempts=3, answer_timeout_s=2.0)

    started = time.monotonic()
    with pytest.raises(LLMError, match="APITimeoutError"):
        await chat_for(client).complete(QUESTION)
    elapsed = time.monotonic() - started

    assert len(fake.requests) == 3
    assert 0.85 <= elapsed < 2.0


async def test_request_timeout_longer_than_the_budget_is_cut_to_the_budget(
    fake: FakeAzureOpenAI, make_client: MakeClient
) -> None:
    fake.delay = 5.0
    client = make_client(llm_request_timeout_s=10.0, answer_timeout_s=1.0)

    started = time.monotonic()
    with pytest.raises(LLMError):
        await chat_for(client).complete(QUESTION)

    assert time.monotonic() - started < 1.0 + 0.4
    assert len(fake.requests) == 1


@pytest.mark.parametrize(
    "failure",
    [content_filter(), Fail(400, code="BadRequest"), Fail(403), Fail(404, code="DeploymentNotFound")],
    ids=["content_filter", "400", "403", "404"],
)
async def test_client_errors_are_not_retried(fake: FakeAzureOpenAI, make_client: MakeClient, failure: Fail) -> None:
    fake.script("chat", [failure, Ok()])
    with pytest.raises(LLMError, match=str(failure.status)):
        await chat_for(make_client()).complete(QUESTION)
    assert len(fake.requests) == 1
    assert fake.pending("chat") == [Ok()]


async def test_content_filter_error_keeps_the_openai_error_as_cause(
    fake: FakeAzureOpenAI, make_client: MakeClient
) -> None:
    fake.script("chat", [content_filter()])
    with pytest.raises(LLMError) as caught:
        await chat_for(make_client()).complete(QUESTION)
    cause = caught.value.__cause__
    assert isinstance(cause, openai.BadRequestError)
    assert cause.code == "content_filter"


async def test_wrong_api_key_fails_without_retries(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    with pytest.raises(LLMError, match="401"):
        await chat_for(make_client(openai_api_key="wrong-key")).complete(QUESTION)
    assert len(fake.requests) == 1
    assert fake.requests[0].headers["api-key"] == "wrong-key"


async def test_empty_completion_is_an_llm_error_and_not_retried(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    fake.script("chat", [Ok(text="")])
    with pytest.raises(LLMError, match="empty completion"):
        await chat_for(make_client()).complete(QUESTION)
    assert len(fake.requests) == 1


async def test_completion_cut_by_the_content_filter_is_an_error(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    fake.script("chat", [Ok(text="Give 30 mL/kg of", finish_reason="content_filter")])
    with pytest.raises(LLMError):
        await chat_for(make_client()).complete(QUESTION)


async def test_bearer_token_auth_reaches_the_service(fake: FakeAzureOpenAI) -> None:
    async def token() -> str:
        return fake.bearer_token

    settings = fake.settings(openai_api_key="")
    raw = openai.AsyncAzureOpenAI(
        azure_endpoint=fake.url,
        api_version=settings.openai_api_version,
        azure_ad_token_provider=token,
        max_retries=0,
        timeout=1.0,
    )
    client = AzureOpenAIClient(settings, client=raw)
    try:
        assert await chat_for(client).complete(QUESTION) == fake.answer
    finally:
        await client.close()
    assert fake.requests[0].headers["authorization"] == "Bearer test-token"
    assert "api-key" not in fake.requests[0].headers


def test_entra_auth_without_credentials_is_a_configuration_error(fake: FakeAzureOpenAI) -> None:
    settings = fake.settings(openai_api_key="")
    with pytest.raises(SettingsError, match="AZURE_OPENAI_API_KEY"):
        EntraTokenProvider(settings)
    with pytest.raises(SettingsError):
        AzureOpenAIClient(settings)


# -- streaming -----------------------------------------------------------------------------------------------------


async def test_stream_yields_the_pieces_in_order(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    fake.answer = "Start the Hour-1 bundle: lactate, cultures, antibiotics [1]."
    pieces = await collect(chat_for(make_client()))

    assert pieces == fake.chunker(fake.answer)
    assert len(pieces) > 3
    assert "".join(pieces) == fake.answer
    [request] = fake.requests
    assert request.json["stream"] is True
    assert request.json["messages"][-1]["content"] == "What is the fluid bolus in septic shock?"


async def test_stream_passes_scripted_pieces_through_unchanged(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    fake.script("chat", [Ok(pieces=["패혈", "증 ", "1시간 ", "번들", " [1]"])])
    assert await collect(chat_for(make_client())) == ["패혈", "증 ", "1시간 ", "번들", " [1]"]


@pytest.mark.usefixtures("no_jitter")
async def test_stream_open_is_retried(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    fake.script("chat", [Fail(503), Fail(429, retry_after_ms=50)])
    assert "".join(await collect(chat_for(make_client()))) == fake.answer
    assert len(fake.requests) == 3


async def test_stream_that_cannot_open_raises_llm_error_before_any_piece(
    fake: FakeAzureOpenAI, make_client: MakeClient
) -> None:
    fake.script("chat", [content_filter()])
    pieces: list[str] = []
    with pytest.raises(LLMError, match="400"):
        await collect(chat_for(make_client()), pieces)
    assert pieces == []
    assert len(fake.requests) == 1


async def test_stream_cut_by_the_content_filter_raises_llm_error(
    fake: FakeAzureOpenAI, make_client: MakeClient
) -> None:
    fake.script("chat", [Ok(pieces=["Give ", "30 mL/kg ", "of"], finish_reason="content_filter")])
    with pytest.raises(LLMError):
        await collect(chat_for(make_client()))


@pytest.mark.parametrize("how", ["abort", "error", "stall"])
async def test_stream_that_breaks_midway_raises_llm_error(
    fake: FakeAzureOpenAI, make_client: MakeClient, how: str
) -> None:
    fake.answer = "one two three four five six"
    fake.script("chat", [BrokenStream(after=2, how=how, stall_s=3.0)])  # type: ignore[arg-type]
    pieces: list[str] = []

    started = time.monotonic()
    with pytest.raises(LLMError, match="stream broke"):
        await collect(chat_for(make_client(llm_request_timeout_s=0.3)), pieces)

    assert pieces == ["one ", "two "]  # what was shown stays shown; no retry once text has been streamed
    assert len(fake.requests) == 1
    assert time.monotonic() - started < 1.5


# -- embeddings ----------------------------------------------------------------------------------------------------


async def test_embeddings_are_batched_and_returned_in_input_order(
    fake: FakeAzureOpenAI, make_client: MakeClient
) -> None:
    fake.reverse_embeddings = True  # the service may list items in any order; the index decides
    texts = ["sepsis fluids", "hand hygiene", "insulin hypoglycaemia", "falls", "낙상 예방"]
    embedder = AzureEmbedder(make_client(), batch=2)

    vectors = await embedder.embed(texts)

    assert [r.json["input"] for r in fake.requests] == [texts[0:2], texts[2:4], texts[4:5]]
    assert all(r.path == "/openai/deployments/embed/embeddings" for r in fake.requests)
    assert len(vectors) == len(texts)
    for text, vector in zip(texts, vectors, strict=True):
        assert len(vector) == fake.dimensions
        assert vector == pytest.approx(fake.embed(text), abs=1e-6)
    assert vectors[0] != pytest.approx(vectors[1], abs=1e-6)


async def test_embeddings_of_nothing_make_no_request(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    assert await AzureEmbedder(make_client()).embed([]) == []
    assert fake.requests == []


async def test_embedder_identity(make_client: MakeClient) -> None:
    embedder = AzureEmbedder(make_client())
    assert embedder.name == "azure:embed"
    assert embedder.languages is None


async def test_embeddings_retry_honours_retry_after_ms(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    fake.script("embeddings", [Fail(429, retry_after_ms=200)])
    vectors = await AzureEmbedder(make_client(), batch=8).embed(["a", "b"])
    assert len(vectors) == 2
    assert len(fake.requests) == 2
    assert fake.requests[1].at - fake.requests[0].at >= 0.19


@pytest.mark.usefixtures("no_jitter")
async def test_embeddings_that_keep_failing_raise_llm_error(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    fake.script("embeddings", [Fail(500)] * 5)
    with pytest.raises(LLMError, match="embeddings failed"):
        await AzureEmbedder(make_client(llm_max_attempts=2)).embed(["a"])
    assert len(fake.requests) == 2


async def test_embeddings_with_a_wrong_key_fail_without_retries(fake: FakeAzureOpenAI, make_client: MakeClient) -> None:
    with pytest.raises(LLMError, match="401"):
        await AzureEmbedder(make_client(openai_api_key="nope")).embed(["a"])
    assert len(fake.requests) == 1
