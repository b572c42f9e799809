"""The skills' shared vocabulary: plain types, ports, the skill contract, the router and test fakes."""

from skills.core.ports import LLM, ChatMessage, Clock, Embedder, LLMError, Notifier, Store, Stream, Turn
from skills.core.router import Router
from skills.core.skill import CardAction, Command, Context, Handler, Job, Skill
from skills.core.types import (
    Card,
    ChatTurn,
    Citation,
    Conversation,
    ConversationKind,
    Feedback,
    Message,
    Reply,
    User,
)

__all__ = [
    "LLM",
    "Card",
    "CardAction",
    "ChatMessage",
    "ChatTurn",
    "Citation",
    "Clock",
    "Command",
    "Context",
    "Conversation",
    "ConversationKind",
    "Embedder",
    "Feedback",
    "Handler",
    "Job",
    "LLMError",
    "Message",
    "Notifier",
    "Reply",
    "Router",
    "Skill",
    "Store",
    "Stream",
    "Turn",
    "User",
]
