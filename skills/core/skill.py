"""The skill contract: what a skill offers the host (routes, jobs) and what the host hands it (ports)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from skills.core.ports import LLM, Clock, Directory, Embedder, Notifier, Store, TimerEvent, Timers, Turn
from skills.core.types import Feedback, Message

Handler = Callable[[Message, Turn], Awaitable[None]]
FeedbackHandler = Callable[[Feedback], Awaitable[None]]
JobFunc = Callable[[], Awaitable[None]]
TimerFunc = Callable[[TimerEvent], Awaitable[None]]
HealthFunc = Callable[[], Awaitable[Mapping[str, Any]]]
IngressKind = Literal["hl7v2", "alerts.json"]
ErrorKind = Literal["missing", "invalid", "unsupported", "internal"]


@dataclass(frozen=True, slots=True)
class Outcome:
    """What a consumer made of one inbound message: accepted (durably stored) or an error naming the field."""

    accepted: bool
    reason: str = ""
    field: str = ""  # where the problem is: "OBR-29" for HL7, "priority" for JSON
    error: ErrorKind | None = None
    after_reply: Callable[[], Awaitable[None]] | None = None  # the host calls it once the answer (ACK) is sent

    @classmethod
    def ok(cls, after_reply: Callable[[], Awaitable[None]] | None = None) -> Outcome:
        return cls(True, after_reply=after_reply)

    @classmethod
    def fail(cls, error: ErrorKind, reason: str, field: str = "") -> Outcome:
        return cls(False, reason=reason, field=field, error=error)


ConsumerFunc = Callable[[Any], Awaitable[Outcome]]


@dataclass(frozen=True, slots=True)
class Consumer:
    """Takes messages the host received outside Teams: "hl7v2" gets the message text, "alerts.json" a JSON object.

    The handler returns only after the message is durably stored (or with an error); the host answers the sender
    (an HL7 ACK, an HTTP status) from the outcome and never waits for Teams.
    """

    kind: IngressKind
    handle: ConsumerFunc


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
    consumers: list[Consumer] = field(default_factory=list)
    startup: Callable[[], Awaitable[None]] | None = None
    health: HealthFunc | None = None  # what /readyz shows under the skill's name (informational)
    shutdown: Callable[[], Awaitable[None]] | None = None  # the host awaits it before closing the store


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
