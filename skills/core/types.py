"""Plain message, reply, card and citation types shared by the host and every skill."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any


class ConversationKind(StrEnum):
    """Where a message was written: a 1:1 chat, a group chat or a team channel."""

    PERSONAL = "personal"
    GROUP = "groupChat"
    CHANNEL = "channel"


@dataclass(frozen=True, slots=True)
class User:
    """The person behind a message. `id` is stable per tenant; roles come from Wardline's own directory."""

    id: str
    name: str = ""
    aad_object_id: str | None = None
    roles: frozenset[str] = frozenset()
    units: frozenset[str] = frozenset()  # units the directory puts this person on


@dataclass(frozen=True, slots=True)
class Conversation:
    """A logical conversation; skills never see Teams ids other than this opaque `id`."""

    id: str
    kind: ConversationKind = ConversationKind.PERSONAL
    tenant_id: str | None = None
    channel: str | None = None  # logical channel such as "unit:7W" when the host knows it


@dataclass(frozen=True, slots=True)
class Message:
    """An inbound message or card action, already stripped of @mentions."""

    id: str
    text: str
    user: User
    conversation: Conversation
    locale: str | None = None
    value: Mapping[str, Any] | None = None  # card action data, if any

    @property
    def command_word(self) -> str:
        """The first word, lower-cased, without a leading slash."""
        first = self.text.strip().split(maxsplit=1)
        return first[0].lstrip("/").lower() if first else ""

    @property
    def argument(self) -> str:
        """The text after the first word."""
        parts = self.text.strip().split(maxsplit=1)
        return parts[1].strip() if len(parts) > 1 else ""


@dataclass(frozen=True, slots=True)
class Citation:
    """One numbered source of an answer: `[position]` in the reply text refers to it."""

    position: int
    title: str
    section: str
    source: str  # document path or URL, as the hospital knows it
    excerpt: str = ""
    url: str | None = None
    keywords: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Card:
    """An Adaptive Card (version 1.5 at most), as plain JSON."""

    content: Mapping[str, Any]


@dataclass(slots=True)
class Reply:
    """What a skill sends back. The host renders it for Teams (AI label, citations, feedback buttons)."""

    text: str
    citations: list[Citation] = field(default_factory=list)
    ai_generated: bool = False
    feedback: bool = False
    card: Card | None = None
    record_id: str | None = None  # the skill's own record of this reply, for feedback and audit
    skill: str | None = None


@dataclass(frozen=True, slots=True)
class ChatTurn:
    """One earlier exchange in a conversation, for follow-up questions."""

    question: str
    answer: str


@dataclass(frozen=True, slots=True)
class Feedback:
    """A thumbs up/down on an earlier reply."""

    record_id: str
    reaction: str  # "like" or "dislike"
    text: str
    user: User
