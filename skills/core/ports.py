"""Ports: the only ways a skill reaches the outside world. The host (bot/) implements them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol

from skills.core.types import Reply

Role = Literal["system", "user", "assistant"]


@dataclass(frozen=True, slots=True)
class ChatMessage:
    """One message of a chat-completion prompt."""

    role: Role
    content: str


class LLMError(Exception):
    """The language model could not answer in time or at all; callers fall back."""


class LLM(Protocol):
    """A chat-completion model."""

    async def complete(self, messages: Sequence[ChatMessage], *, max_tokens: int = 600) -> str:
        """Return the whole answer, or raise LLMError."""
        ...

    def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int = 600) -> AsyncIterator[str]:
        """Yield the answer in pieces; raise LLMError (possibly after some pieces)."""
        ...


class Embedder(Protocol):
    """Turns texts into dense vectors; `name` identifies the model so stored vectors are not mixed."""

    @property
    def name(self) -> str: ...

    @property
    def languages(self) -> frozenset[str] | None:
        """Languages the model handles well ("en", "ko"); None means all."""
        ...

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        """Embed texts in order; raise LLMError when the service fails."""
        ...


class Store(Protocol):
    """Namespaced JSON records plus append-only streams. Writes are durable when the call returns."""

    async def get(self, namespace: str, key: str) -> dict[str, Any] | None: ...

    async def put(self, namespace: str, key: str, value: Mapping[str, Any]) -> None: ...

    async def put_many(self, namespace: str, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Write several records in one transaction."""
        ...

    async def delete(self, namespace: str, key: str) -> bool: ...

    async def scan(self, namespace: str, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        """All records of a namespace whose key starts with prefix, ordered by key."""
        ...

    async def replace_prefix(self, namespace: str, prefix: str, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        """Atomically delete every key with prefix and write items."""
        ...

    async def append(self, stream: str, event: Mapping[str, Any]) -> int:
        """Append an event to an append-only stream; return its sequence number."""
        ...

    async def read(self, stream: str, *, after: int = 0, limit: int = 1000) -> list[tuple[int, dict[str, Any]]]:
        """Events of a stream after a sequence number, oldest first."""
        ...


class Clock(Protocol):
    """Time, so tests can control it."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC."""
        ...


class Stream(Protocol):
    """A reply that grows while it is written (Teams streaming in 1:1 chats)."""

    async def update(self, text_so_far: str) -> None: ...

    async def finish(self, reply: Reply) -> None: ...

    async def abandon(self) -> None:
        """End the stream without a final message (the caller will send one normally)."""
        ...


class Turn(Protocol):
    """The conversation a handler is answering in."""

    @property
    def can_stream(self) -> bool: ...

    async def send(self, reply: Reply) -> None: ...

    async def typing(self) -> None: ...

    async def start_stream(self, informative: str) -> Stream: ...


class Notifier(Protocol):
    """Posts to logical channels such as "unit:7W"; the host maps them to Teams conversations."""

    async def post(self, channel: str, reply: Reply, *, key: str) -> str:
        """Queue a message for a channel, idempotent by key; return a message reference."""
        ...

    async def update(self, message_ref: str, reply: Reply) -> None:
        """Replace a posted message in place."""
        ...
