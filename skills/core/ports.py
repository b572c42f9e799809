"""Ports: the only ways a skill reaches the outside world. The host (bot/) implements them."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import IntEnum
from typing import Any, Literal, Protocol

from skills.core.types import Card, Reply

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

    async def get_versioned(self, namespace: str, key: str) -> tuple[dict[str, Any], int] | None:
        """A record with its version (1 for the first write, +1 for every later one), or None."""
        ...

    async def put_if_version(
        self, namespace: str, key: str, value: Mapping[str, Any], *, expected: int | None
    ) -> int | None:
        """Compare-and-set: write only if the record's version is `expected` (None: only if absent).

        Returns the new version, or None when another writer got there first (nothing is written then).
        """
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

    async def refresh(self, card: Card) -> None:
        """Replace the card the user just acted on (an Action.Execute answer, or updateActivity for Action.Submit)."""
        ...


class Priority(IntEnum):
    """Outbox order: a lower value is sent first, so an alarm overtakes queued bulletins."""

    URGENT = 0  # high-priority alarms and their escalations
    HIGH = 1  # other alarms, technical alerts
    NORMAL = 2  # handovers, reminders, replies moved to the outbox
    BULK = 3  # broadcasts, digests


class Notifier(Protocol):
    """Posts to logical targets; the host maps them to Teams conversations through a durable outbox.

    Targets: ``unit:7W`` (the unit's channel), ``role:charge@7W`` (the unit channel with an @mention of the unit's
    charge nurses, plus a 1:1 message to each of them), ``user:<aad object id>`` (a 1:1 chat).
    """

    async def post(self, target: str, reply: Reply, *, key: str, priority: Priority = Priority.NORMAL) -> str:
        """Commit a message to the outbox before returning, idempotent by key; return its message reference."""
        ...

    async def update(self, message_ref: str, reply: Reply) -> None:
        """Replace a posted message in place (merged into the post when it has not been sent yet)."""
        ...

    async def delete(self, message_ref: str) -> None:
        """Remove a posted message (cancelled when it has not been sent yet)."""
        ...


@dataclass(frozen=True, slots=True)
class TimerEvent:
    """A durable one-off timer that came due: fired once, by the leader, even after a restart."""

    kind: str
    key: str
    due: datetime
    payload: Mapping[str, Any] = field(default_factory=dict)


class Timers(Protocol):
    """Durable one-off timers (an escalation in 30 s, a reminder at 07:30); the skill declares their handlers."""

    async def schedule_at(self, kind: str, key: str, when: datetime, payload: Mapping[str, Any]) -> None:
        """Schedule (or move) the timer (kind, key) to fire at `when` (timezone-aware) with `payload`."""
        ...

    async def cancel(self, kind: str, key: str) -> bool:
        """Cancel a pending timer; False when there was none."""
        ...


@dataclass(frozen=True, slots=True)
class Unit:
    """A ward or unit from the hospital's directory."""

    id: str
    name: str = ""
    timezone: str = "Asia/Seoul"
    shifts: tuple[str, ...] = ("07:00", "15:00", "23:00")  # shift starts, "HH:MM" local time
    handover_lead_minutes: int = 30
    options: Mapping[str, Any] = field(default_factory=dict)  # per-unit overrides a skill reads (e.g. hold-offs)


@dataclass(frozen=True, slots=True)
class StaffMember:
    """A person in the directory; roles are nurse, charge, doctor, manager, admin."""

    aad_object_id: str
    name: str = ""
    roles: frozenset[str] = frozenset()
    units: frozenset[str] = frozenset()


class Directory(Protocol):
    """Units, shifts, staff and roles; skills see units and roles, never Teams or Entra ids other than a user's."""

    def units(self) -> Sequence[Unit]: ...

    def unit(self, unit_id: str) -> Unit | None: ...

    def staff(self, *, unit: str | None = None, role: str | None = None) -> Sequence[StaffMember]: ...

    def known_names(self) -> frozenset[str]:
        """Names of people the directory knows, for masking before text leaves the process."""
        ...
