"""Test doubles for the ports, shipped with the package so every skill's tests use the same ones."""

from __future__ import annotations

import copy
import hashlib
import math
from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

from skills.core.ports import ChatMessage, LLMError, Priority, StaffMember, TimerEvent, Unit
from skills.core.types import Card, Reply


class MemoryStore:
    """A Store kept in a dict: same semantics as the SQL store, nothing durable."""

    def __init__(self) -> None:
        self._records: dict[tuple[str, str], dict[str, Any]] = {}
        self._versions: dict[tuple[str, str], int] = {}
        self._streams: dict[str, list[dict[str, Any]]] = {}

    async def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        value = self._records.get((namespace, key))
        return copy.deepcopy(value) if value is not None else None

    async def put(self, namespace: str, key: str, value: Mapping[str, Any]) -> None:
        self._records[(namespace, key)] = copy.deepcopy(dict(value))
        self._versions[(namespace, key)] = self._versions.get((namespace, key), 0) + 1

    async def get_versioned(self, namespace: str, key: str) -> tuple[dict[str, Any], int] | None:
        value = self._records.get((namespace, key))
        return (copy.deepcopy(value), self._versions[(namespace, key)]) if value is not None else None

    async def put_if_version(
        self, namespace: str, key: str, value: Mapping[str, Any], *, expected: int | None
    ) -> int | None:
        current = self._versions.get((namespace, key)) if (namespace, key) in self._records else None
        if current != expected:
            return None
        await self.put(namespace, key, value)
        return self._versions[(namespace, key)]

    async def put_many(self, namespace: str, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        for key, value in items:
            await self.put(namespace, key, value)

    async def delete(self, namespace: str, key: str) -> bool:
        self._versions.pop((namespace, key), None)
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
        self.refreshed: list[Card] = []
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

    async def refresh(self, card: Card) -> None:
        self.refreshed.append(card)


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
    """A Notifier that records posts; like the outbox, posting one key twice keeps the first."""

    def __init__(self) -> None:
        self.posts: list[tuple[str, Reply, str]] = []
        self.priorities: dict[str, Priority] = {}
        self.updates: list[tuple[str, Reply]] = []
        self.deleted: list[str] = []

    async def post(self, target: str, reply: Reply, *, key: str, priority: Priority = Priority.NORMAL) -> str:
        if key not in self.priorities:
            self.posts.append((target, reply, key))
            self.priorities[key] = priority
        return key

    async def update(self, message_ref: str, reply: Reply) -> None:
        self.updates.append((message_ref, reply))

    async def delete(self, message_ref: str) -> None:
        self.deleted.append(message_ref)

    def latest(self, message_ref: str) -> Reply:
        """The message as a reader would see it now: the newest update, else the post."""
        for ref, reply in reversed(self.updates):
            if ref == message_ref:
                return reply
        for _target, reply, key in self.posts:
            if key == message_ref:
                return reply
        raise KeyError(message_ref)


class ManualTimers:
    """Timers kept in a dict; `due(clock)` pops what is due so a test fires it by hand."""

    def __init__(self) -> None:
        self.pending: dict[tuple[str, str], TimerEvent] = {}

    async def schedule_at(self, kind: str, key: str, when: datetime, payload: Mapping[str, Any]) -> None:
        self.pending[(kind, key)] = TimerEvent(kind, key, when, copy.deepcopy(dict(payload)))

    async def cancel(self, kind: str, key: str) -> bool:
        return self.pending.pop((kind, key), None) is not None

    def due(self, now: datetime) -> list[TimerEvent]:
        """Remove and return the timers due at `now`, oldest first."""
        ready = sorted((t for t in self.pending.values() if t.due <= now), key=lambda t: (t.due, t.kind, t.key))
        for timer in ready:
            del self.pending[(timer.kind, timer.key)]
        return ready


class StaticDirectory:
    """A Directory built from lists, for tests."""

    def __init__(self, units: Sequence[Unit] = (), staff: Sequence[StaffMember] = ()) -> None:
        self._units = {unit.id: unit for unit in units}
        self._staff = list(staff)

    def units(self) -> Sequence[Unit]:
        return list(self._units.values())

    def unit(self, unit_id: str) -> Unit | None:
        return self._units.get(unit_id)

    def staff(self, *, unit: str | None = None, role: str | None = None) -> Sequence[StaffMember]:
        return [
            member
            for member in self._staff
            if (unit is None or unit in member.units) and (role is None or role in member.roles)
        ]

    def known_names(self) -> frozenset[str]:
        return frozenset(member.name for member in self._staff if member.name)
