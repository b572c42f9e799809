"""Replies to Teams activities: Markdown text, the AI label and citations in one root entity, feedback buttons."""

from __future__ import annotations

from typing import Any, ClassVar

from botbuilder.schema import Activity, ActivityTypes, Attachment, Entity

from skills.core.types import Citation, Reply

MAX_CITATIONS = 20
MAX_NAME = 80
MAX_ABSTRACT = 160
MAX_KEYWORDS = 3
MAX_KEYWORD = 28
ADAPTIVE_CARD = "application/vnd.microsoft.card.adaptive"


class MessageEntity(Entity):  # type: ignore[misc]  # botbuilder ships no type hints
    """The schema.org Message entity Teams reads for the AI label and citations (Entity alone serialises `type`)."""

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        "type": {"key": "type", "type": "str"},
        "at_type": {"key": "@type", "type": "str"},
        "at_context": {"key": "@context", "type": "str"},
        "at_id": {"key": "@id", "type": "str"},
        "additional_type": {"key": "additionalType", "type": "[str]"},
        "citation": {"key": "citation", "type": "[object]"},
    }

    def __init__(self, *, ai_generated: bool, citation: list[dict[str, Any]] | None = None) -> None:
        super().__init__(type="https://schema.org/Message")
        self.at_type = "Message"
        self.at_context = "https://schema.org"
        self.at_id = ""
        self.additional_type = ["AIGeneratedContent"] if ai_generated else None
        self.citation = citation or None


class StreamInfoEntity(Entity):  # type: ignore[misc]
    """Teams streaming metadata carried on typing and final message activities."""

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        "type": {"key": "type", "type": "str"},
        "stream_id": {"key": "streamId", "type": "str"},
        "stream_type": {"key": "streamType", "type": "str"},
        "stream_sequence": {"key": "streamSequence", "type": "int"},
    }

    def __init__(self, *, stream_type: str, stream_id: str | None = None, sequence: int | None = None) -> None:
        super().__init__(type="streaminfo")
        self.stream_id = stream_id
        self.stream_type = stream_type
        self.stream_sequence = sequence


def _clip(text: str, limit: int) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"


def citation_json(citation: Citation) -> dict[str, Any]:
    """One Claim in the shape and within the limits Teams accepts."""
    name = citation.title if citation.section in ("", citation.title) else f"{citation.title} - {citation.section}"
    appearance: dict[str, Any] = {
        "@type": "DigitalDocument",
        "name": _clip(name, MAX_NAME),
        "abstract": _clip(citation.excerpt or citation.section, MAX_ABSTRACT),
    }
    if citation.url:
        appearance["url"] = citation.url
    keywords = [_clip(k, MAX_KEYWORD) for k in citation.keywords[:MAX_KEYWORDS] if k.strip()]
    if keywords:
        appearance["keywords"] = keywords
    return {"@type": "Claim", "position": citation.position, "appearance": appearance}


def message_entity(reply: Reply) -> MessageEntity | None:
    """The single root Message entity, or None when the reply has neither AI label nor citations."""
    cited = [c for c in reply.citations if f"[{c.position}]" in reply.text][:MAX_CITATIONS]
    if not reply.ai_generated and not cited:
        return None
    return MessageEntity(ai_generated=reply.ai_generated, citation=[citation_json(c) for c in cited])


def reply_activity(reply: Reply, *, extra_entities: list[Entity] | None = None) -> Activity:
    """A message activity for a reply."""
    entities: list[Entity] = list(extra_entities or [])
    entity = message_entity(reply)
    if entity is not None:
        entities.append(entity)
    channel_data: dict[str, Any] | None = {"feedbackLoop": {"type": "default"}} if reply.feedback else None
    attachments = None
    if reply.card is not None:
        attachments = [Attachment(content_type=ADAPTIVE_CARD, content=dict(reply.card.content))]
    return Activity(
        type=ActivityTypes.message,
        text=reply.text,
        text_format="markdown",
        entities=entities or None,
        channel_data=channel_data,
        attachments=attachments,
    )
