"""Test doubles for the ports, shipped with the package so every skill's tests use the same ones."""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from skills.core.ports import ChatMessage, LLMError
from skills.core.types import Reply


class MemoryStore:
    """A Store kept in a dict: same semantics as the SQL store, nothing durable."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], dict[str, Any]] = {}
        self._streams: dict[str, list[dict[str, Any]]] = {}

    async def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        value = self._records.get((namespace, key))
        return copy.deepcopy(value) if value is not None else None

    async def put(self, namespace: str, key: str, value: Mapping[str, Any]) -> None:
        self._records[(namespace, key)] = copy.deepcopy(dict(value))

    async def put_many(self, namespace: str, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        for key, value in items:
            await self.put(namespace, key, value)

    async def delete(self, namespace: str, key: str) -> bool:
        return self._records.pop((namespace, key), None) is not None

    async def scan(self, namespace: str, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        return sorted(
            (key, copy.deepcopy(value))
            for (ns, key), value in self._records.items()
            if ns == namespace and key.startswith(prefix)
        )

    async def replace_prefix(self, namespace: str, prefix: str, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        for ns, key in [k for k in self._records if k[0] == namespace and k[1].startswith(prefix)]:
            del self._records[(ns, key)]
        for key, value in items:
            self._records[(namespace, key)] = copy.deepcopy(dict(value))

    async def append(self, stream: str, event: Mapping[str, Any]) -> int:
        events = self._streams.setdefault(stream, [])
        events.append(copy.deepcopy(dict(event)))
        return len(events)

    async def read(self, stream: str, *, after: int = 0, limit: int = 1000) -> list[tuple[int, dict[str, Any]]]:
        events = self._streams.get(stream, [])
        return [(i + 1, copy.deepcopy(e)) for i, e in enumerate(events)][after : after + limit]


class ManualClock:
    """A clock that moves only when told to."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 1, tzinfo=UTC)

    def now(self) -> datetime:
        return self._now

    def advance(self, seconds: float) -> None:
        self._now += timedelta(seconds=seconds)


class RecordingTurn:
    """A Turn that records what a handler sends."""

    def __init__(self, *, can_stream: bool = False) -> None:
        self._can_stream = can_stream
        self.replies: list[Reply] = []
        self.stream_updates: list[str] = []
        self.typing_count = 0

    @property
    def can_stream(self) -> bool:
        return self._can_stream

    async def send(self, reply: Reply) -> None:
        self.replies.append(reply)

    async def typing(self) -> None:
        self.typing_count += 1

    async def start_stream(self, informative: str) -> RecordingStream:
        self.stream_updates.append(informative)
        return RecordingStream(self)


class RecordingStream:
    """The stream of a RecordingTurn."""

    def __init__(self, turn: RecordingTurn) -> None:
        self._turn = turn

    async def update(self, text_so_far: str) -> None:
        self._turn.stream_updates.append(text_so_far)

    async def finish(self, reply: Reply) -> None:
        self._turn.replies.append(reply)

    async def abandon(self) -> None:
        return None


class ScriptedLLM:
    """An LLM that answers from a script, or fails with LLMError when `fail` is set."""

    def __init__(self, answer: str = "", *, fail: bool = False) -> None:
        self.answer = answer
        self.fail = fail
        self.prompts: list[list[ChatMessage]] = []

    async def complete(self, messages: Sequence[ChatMessage], *, max_tokens: int = 600) -> str:
        self.prompts.append(list(messages))
        if self.fail:
            raise LLMError("scripted failure")
        return self.answer

    async def stream(self, messages: Sequence[ChatMessage], *, max_tokens: int = 600) -> AsyncIterator[str]:
        self.prompts.append(list(messages))
        if self.fail:
            raise LLMError("scripted failure")
        for word in self.answer.split(" "):
            yield word + " "


class HashEmbedder:
    """A deterministic bag-of-words embedder: similar words give similar vectors, no model needed."""

    def __init__(self, dim: int = 64) -> None:
        self.dim = dim

    @property
    def name(self) -> str:
        return f"hash-{self.dim}"

    @property
    def languages(self) -> frozenset[str] | None:
        return None

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = []
        for text in texts:
            vector = [0.0] * self.dim
            for word in text.lower().split():
                digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
                vector[int.from_bytes(digest, "big") % self.dim] += 1.0
            norm = math.sqrt(sum(v * v for v in vector)) or 1.0
            vectors.append([v / norm for v in vector])
        return vectors


class RecordingNotifier:
    """A Notifier that records posts."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Reply, str]] = []
        self.updates: list[tuple[str, Reply]] = []

    async def post(self, channel: str, reply: Reply, *, key: str) -> str:
        self.posts.append((channel, reply, key))
        return f"msg-{len(self.posts)}"

    async def update(self, message_ref: str, reply: Reply) -> None:
        self.updates.append((message_ref, reply))
