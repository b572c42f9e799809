"""The Turn and Stream ports on a botbuilder TurnContext, plus Activity -> Message conversion."""

from __future__ import annotations

import asyncio
import logging
import random
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ActivityTypes

from bot.teams.render import StreamInfoEntity, reply_activity
from skills.core.ports import Store
from skills.core.types import Card, Conversation, ConversationKind, Message, Reply, User

log = logging.getLogger(__name__)

REPLIES = "teams.replies"  # sent activity id -> the skill record it shows (for feedback)
LATEST_REPLY = "teams.latest_reply"  # conversation id -> the newest such record (clients that omit replyToId)
_KINDS = {
    "personal": ConversationKind.PERSONAL,
    "groupChat": ConversationKind.GROUP,
    "channel": ConversationKind.CHANNEL,
}


def tenant_of(activity: Activity) -> str | None:
    """Teams puts the tenant in channelData.tenant.id (botbuilder drops conversation.tenantId)."""
    data = activity.channel_data if isinstance(activity.channel_data, dict) else {}
    tenant = data.get("tenant") if isinstance(data.get("tenant"), dict) else None
    return str(tenant["id"]) if tenant and tenant.get("id") else None


def conversation_kind(activity: Activity) -> ConversationKind:
    """personal, groupChat or channel; Teams leaves conversationType out of some personal-chat activities."""
    raw = getattr(activity.conversation, "conversation_type", None) or "personal"
    return _KINDS.get(raw, ConversationKind.PERSONAL)


def to_message(activity: Activity) -> Message:
    """The skills' view of an inbound message activity."""
    text = TurnContext.remove_recipient_mention(activity) if activity.entities else (activity.text or "")
    sender = activity.from_property
    conversation = activity.conversation
    value = activity.value if isinstance(activity.value, dict) else None
    return Message(
        id=activity.id or "",
        text=(text or "").strip(),
        user=User(
            id=(sender.id if sender else "") or "",
            name=(sender.name if sender else "") or "",
            aad_object_id=getattr(sender, "aad_object_id", None),
        ),
        conversation=Conversation(
            id=(conversation.id if conversation else "") or "",
            kind=conversation_kind(activity),
            tenant_id=tenant_of(activity),
        ),
        locale=activity.locale,
        value=value,
    )


_RETRY_STATUSES = frozenset({412, 429, 502, 503, 504})


def _status_of(error: BaseException) -> int | None:
    response = getattr(error, "response", None)
    status = getattr(response, "status_code", None) or getattr(response, "status", None)
    return int(status) if isinstance(status, int) else None


def _retry_after(error: BaseException) -> float | None:
    headers = getattr(getattr(error, "response", None), "headers", None) or {}
    try:
        return float(headers.get("Retry-After", "")) if headers.get("Retry-After") else None
    except ValueError:
        return None


async def send_with_retry(context: TurnContext, activity: Activity, *, attempts: int = 4) -> Any:
    """Send one activity, retrying what Teams asks to retry (429, 412, 502-504) with jitter and Retry-After."""
    for attempt in range(1, attempts + 1):
        try:
            return await context.send_activity(activity)
        except Exception as error:  # msrest raises HttpOperationError subclasses with the response attached
            status = _status_of(error)
            if status not in _RETRY_STATUSES or attempt == attempts:
                raise
            asked = _retry_after(error)
            delay = min(asked if asked is not None else random.uniform(0, 0.5 * 2**attempt), 10.0)  # noqa: S311
            log.warning("connector asked to retry", extra={"status": status, "attempt": attempt, "delay_s": delay})
            await asyncio.sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover


class TeamsTurn:
    """Sends a skill's replies into the conversation the message came from."""

    def __init__(self, context: TurnContext, store: Store, *, streaming: bool) -> None:
        self.context = context
        self.store = store
        self.kind = conversation_kind(context.activity)
        self._can_stream = streaming and self.kind == ConversationKind.PERSONAL
        self.refreshed_card: Card | None = None  # an Action.Execute invoke answers with this card

    @property
    def can_stream(self) -> bool:
        return self._can_stream

    async def send(self, reply: Reply) -> None:
        await self.send_activity(reply_activity(reply), reply)

    async def send_activity(self, activity: Activity, reply: Reply | None = None) -> str | None:
        response = await send_with_retry(self.context, activity)
        activity_id = response.id if response is not None else None
        if reply is not None and reply.record_id:
            record = {"skill": reply.skill, "record_id": reply.record_id}
            if activity_id:
                await self.store.put(REPLIES, activity_id, record)
            conversation = self.context.activity.conversation
            if conversation is not None and conversation.id:
                await self.store.put(LATEST_REPLY, conversation.id, {**record, "activity_id": activity_id})
        return activity_id

    async def typing(self) -> None:
        if self.kind == ConversationKind.CHANNEL:
            return  # Teams shows no typing indicator in channels; it would only cost a request
        await send_with_retry(self.context, Activity(type=ActivityTypes.typing), attempts=1)

    async def start_stream(self, informative: str) -> TeamsStream:
        stream = TeamsStream(self)
        await stream.start(informative)
        return stream

    async def refresh(self, card: Card) -> None:
        activity = self.context.activity
        if activity.type == ActivityTypes.invoke:
            self.refreshed_card = card  # the invoke response carries it (Universal Actions refresh)
            return
        if activity.reply_to_id:  # Action.Submit: replace the message the button was on
            updated = reply_activity(Reply(text="", card=card))
            updated.id = activity.reply_to_id
            await self.context.update_activity(updated)


class TeamsStream:
    """Teams streaming: an informative typing update, growing typing updates, then the final message."""

    def __init__(self, turn: TeamsTurn) -> None:
        self.turn = turn
        self.stream_id: str | None = None
        self.sequence = 0
        self.finished = False

    async def _typing(self, text: str, stream_type: str) -> str | None:
        self.sequence += 1
        entity = StreamInfoEntity(stream_type=stream_type, stream_id=self.stream_id, sequence=self.sequence)
        activity = Activity(type=ActivityTypes.typing, text=text, entities=[entity])
        response = await send_with_retry(self.turn.context, activity)
        return response.id if response is not None else None

    async def start(self, informative: str) -> None:
        self.stream_id = await self._typing(informative, "informative")

    async def update(self, text_so_far: str) -> None:
        if self.stream_id and not self.finished:
            await self._typing(text_so_far, "streaming")

    async def finish(self, reply: Reply) -> None:
        self.finished = True
        extra: list[Any] = []
        if self.stream_id:
            extra.append(StreamInfoEntity(stream_type="final", stream_id=self.stream_id))
        await self.turn.send_activity(reply_activity(reply, extra_entities=extra), reply)

    async def abandon(self) -> None:
        self.finished = True
