"""The skill contract: what a skill offers the host (routes, jobs) and what the host hands it (ports)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from skills.core.ports import LLM, Clock, Directory, Embedder, Notifier, Store, TimerEvent, Timers, Turn
from skills.core.types import Feedback, Message

Handler = Callable[[Message, Turn], Awaitable[None]]
FeedbackHandler = Callable[[Feedback], Awaitable[None]]
JobFunc = Callable[[], Awaitable[None]]
TimerFunc = Callable[[TimerEvent], Awaitable[None]]
HealthFunc = Callable[[], Awaitable[Mapping[str, Any]]]


@dataclass(frozen=True, slots=True)
class Command:
    """A command word such as `help`; `aliases` may hold other languages (e.g. Korean)."""

    name: str
    description: str
    handler: Handler
    aliases: tuple[str, ...] = ()
    description_ko: str = ""
    usage: str = ""
    roles: frozenset[str] = frozenset()  # empty: anyone may use it

    def matches(self, word: str) -> bool:
        return word == self.name or word in self.aliases


@dataclass(frozen=True, slots=True)
class CardAction:
    """A handler for Adaptive Card submits whose data carries `{"verb": verb}`."""

    verb: str
    handler: Handler
    roles: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class Job:
    """A scheduled job the host binds to its scheduler. `cron` fields are in the host's timezone."""

    id: str
    func: JobFunc
    cron: Mapping[str, str] | None = None  # e.g. {"hour": "6,14,22", "minute": "30"}
    interval_seconds: int | None = None
    misfire_grace_seconds: int = 300
    every_replica: bool = False  # False: only the leader runs it; True: each replica (e.g. reloading an index)
    timezone: str | None = None  # cron fields in this zone instead of the host's (a unit's own clock)


@dataclass(frozen=True, slots=True)
class TimerHandler:
    """Runs when a durable timer of `kind` comes due (on the leader, exactly once)."""

    kind: str
    handler: TimerFunc


@dataclass(slots=True)
class Skill:
    """One capability of the bot. Commands and card actions match first; the fallback takes free text."""

    name: str
    description: str
    commands: list[Command] = field(default_factory=list)
    card_actions: list[CardAction] = field(default_factory=list)
    fallback: Handler | None = None
    on_feedback: FeedbackHandler | None = None
    jobs: list[Job] = field(default_factory=list)
    timers: list[TimerHandler] = field(default_factory=list)
    startup: Callable[[], Awaitable[None]] | None = None
    health: HealthFunc | None = None  # what /readyz shows for this skill; {"ready": False, ...} holds readiness


@dataclass(frozen=True, slots=True)
class Context:
    """What the host hands each skill factory: its ports and its settings section."""

    store: Store
    clock: Clock
    notifier: Notifier | None = None
    llm: LLM | None = None
    embedder: Embedder | None = None
    directory: Directory | None = None
    timers: Timers | None = None
    options: Mapping[str, Any] = field(default_factory=dict)
