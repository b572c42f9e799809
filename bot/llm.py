"""Azure OpenAI behind the LLM and Embedder ports: key or Entra ID auth, tenacity retries, a time budget."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any, TypeVar

import msal
import openai
from openai import AsyncAzureOpenAI
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from bot.retry import retry_after_seconds
from bot.settings import Settings, SettingsError
from skills.core.ports import ChatMessage, LLMError

log = logging.getLogger(__name__)
T = TypeVar("T")

COGNITIVE_SCOPE = "https://cognitiveservices.azure.com/.default"
_RETRY_STATUSES = frozenset({408, 409, 429, 500, 502, 503, 504})


class EntraTokenProvider:
    """Client-credential tokens for Azure OpenAI from msal, fetched off the event loop, one refresh at a time."""

    def __init__(self, settings: Settings, *, http_client: Any = None, instance_discovery: bool | None = None) -> None:
        if not (settings.azure_tenant_id and settings.azure_client_id and settings.azure_client_secret):
            raise SettingsError("Azure OpenAI needs AZURE_OPENAI_API_KEY or AZURE_TENANT_ID/CLIENT_ID/CLIENT_SECRET")
        options: dict[str, Any] = {}
        if http_client is not None:
            options["http_client"] = http_client
        if instance_discovery is not None:
            options["instance_discovery"] = instance_discovery
        self._app = msal.ConfidentialClientApplication(
            settings.azure_client_id,
            client_credential=settings.azure_client_secret,
            authority=f"{settings.azure_authority_host}/{settings.azure_tenant_id}",
            **options,
        )
        self._lock = asyncio.Lock()

    async def __call__(self) -> str:
        async with self._lock:  # single flight: msal's cache serves the others once one refresh lands
            result: dict[str, Any] = await asyncio.to_thread(self._app.acquire_token_for_client, [COGNITIVE_SCOPE])
        token = result.get("access_token")
        if not isinstance(token, str):
            raise LLMError(f"Entra ID token request failed: {result.get('error', 'unknown error')}")
        return token


def is_transient(exc: BaseException) -> bool:
    if isinstance(exc, openai.APITimeoutError | openai.APIConnectionError):
        return True
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in _RETRY_STATUSES
    return False


class Budget:
    """A deadline shared by every attempt of one call."""

    def __init__(self, seconds: float) -> None:
        self.deadline = time.monotonic() + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


def _wait(budget: Budget, base: float = 0.5, cap: float = 4.0) -> Callable[[RetryCallState], float]:
    """Honour Retry-After when given, else exponential backoff with full jitter; never past the deadline."""

    def wait(state: RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = retry_after_seconds(getattr(getattr(exc, "response", None), "headers", None))
        delay = asked if asked is not None else random.uniform(0, min(cap, base * 2 ** (state.attempt_number - 1)))  # noqa: S311
        if delay >= budget.left() - 0.2:
            raise LLMError(f"retry would overrun the time budget (asked to wait {delay:.1f}s)")
        return max(0.0, delay)

    return wait


class AzureOpenAIClient:
    """Chat completions and embeddings on one AsyncAzureOpenAI client; its own retries are off."""

    def __init__(self, settings: Settings, *, client: AsyncAzureOpenAI | None = None) -> None:
        self.settings = settings
        if client is None:
            auth: dict[str, Any] = (
                {"api_key": settings.openai_api_key}
                if settings.openai_api_key
                else {"azure_ad_token_provider": EntraTokenProvider(settings)}
            )
            client = AsyncAzureOpenAI(
                azure_endpoint=settings.openai_endpoint,
                api_version=settings.openai_api_version,
                max_retries=0,  # tenacity owns retries so Retry-After and our budget are honoured
                timeout=settings.llm_request_timeout_s,
                **auth,
            )
        self.client = client

    async def close(self) -> None:
        await self.client.close()

    async def _call(self, make: Callable[[float], Awaitable[T]], budget: Budget, what: str) -> T:
        retrying = AsyncRetrying(
            stop=stop_after_attempt(self.settings.llm_max_attempts),
            wait=_wait(budget),
            retry=retry_if_exception(is_transient),
            reraise=True,
        )
        try:
            async for attempt in retrying:
                with attempt:
                    timeout = min(self.settings.llm_request_timeout_s, budget.left())
                    if timeout <= 0.1:
                        raise LLMError(f"{what}: time budget spent")
                    return await make(timeout)
        except LLMError:
            raise
        except (openai.OpenAIError, ValueError) as exc:  # openai raises ValueError on some malformed bodies
            status = getattr(exc, "status_code", None)
            log.warning("azure openai call failed", extra={"call": what, "error": type(exc).__name__, "status": status})
            raise LLMError(f"{what} failed: {type(exc).__name__}{f' {status}' if status else ''}") from exc
        raise LLMError(f"{what}: no attempt made")  # pragma: no cover - AsyncRetrying always yields once


class AzureChat:
    """The LLM port on an Azure OpenAI chat deployment."""

    def __init__(self, azure: AzureOpenAIClient, *, budget_s: float) -> None:
        self.azure = azure
        self.deployment = azure.settings.openai_chat_deployment
        self.budget_s = budget_s

    @staticmethod
    def _messages(messages: Sequence[ChatMessage]) -> list[Any]:
        return [{"role": m.role, "content": m.content} for m in messages]

    async def complete(self, messages: Sequence[ChatMessage], *, max_tokens: int = 600) -> str:
        budget = Budget(self.budget_s)

        async def make(seconds: float) -> str:
            response = await self.azure.client.chat.completions.create(
                model=self.deployment,
                messages=self._messages(messages),
                max_tokens=max_tokens,
                temperature=0.0,
                timeout=seconds,
            )
            choice = response.choices[0] if response.choices else None
            if choice is not None and choice.finish_reason == "content_filter":
                raise LLMError("completion cut short by the content filter")
            content = choice.message.content if choice is not None else None
            if not content:
                raise LLMError("empty completion (possibly filtered)")
            return content

        return await self.azure._call(make, budget, "chat")

    async def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int = 600) -> AsyncIterator[str]:
        budget = Budget(self.budget_s)

        async def make(seconds: float) -> Any:
            return await self.azure.client.chat.completions.create(
                model=self.deployment,
                messages=self._messages(messages),
                max_tokens=max_tokens,
                temperature=0.0,
                stream=True,
                timeout=seconds,
            )

        # Retries happen only until the stream opens; once text has been shown, a failure ends the stream.
        response = await self.azure._call(make, budget, "chat stream")
        try:
            async for chunk in response:
                for choice in chunk.choices:
                    if choice.delta and choice.delta.content:
                        yield choice.delta.content
                    if choice.finish_reason == "content_filter":
                        # What was shown so far is incomplete; the caller replaces it with a quoted answer.
                        raise LLMError("stream cut short by the content filter")
        except openai.OpenAIError as exc:
            raise LLMError(f"chat stream broke: {type(exc).__name__}") from exc
        finally:
            await response.close()


class AzureEmbedder:
    """The Embedder port on an Azure OpenAI embedding deployment (multilingual, so Korean benefits too)."""

    def __init__(self, azure: AzureOpenAIClient, *, budget_s: float = 30.0, batch: int = 64) -> None:
        self.azure = azure
        self.deployment = azure.settings.openai_embedding_deployment
        self.budget_s = budget_s
        self.batch = batch

    @property
    def name(self) -> str:
        return f"azure:{self.deployment}"

    @property
    def languages(self) -> frozenset[str] | None:
        return None

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors: list[list[float]] = []
        for start in range(0, len(texts), self.batch):
            batch = list(texts[start : start + self.batch])
            budget = Budget(self.budget_s)

            async def make(seconds: float, batch: list[str] = batch) -> list[list[float]]:
                response = await self.azure.client.embeddings.create(
                    model=self.deployment, input=batch, timeout=seconds
                )
                ordered = sorted(response.data, key=lambda d: d.index)
                if len(ordered) != len(batch):
                    raise LLMError(f"embeddings: {len(ordered)} vectors for {len(batch)} texts")
                return [list(d.embedding) for d in ordered]

            vectors.extend(await self.azure._call(make, budget, "embeddings"))
        return vectors
