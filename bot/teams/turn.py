"""The Turn and Stream ports on a botbuilder TurnContext, plus Activity -> Message conversion."""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity, ActivityTypes, ResourceResponse
from tenacity import AsyncRetrying, RetryCallState, retry_if_exception, stop_after_attempt

from bot.teams.connector import ConnectorError
from bot.teams.render import StreamInfoEntity, reply_activity
from skills.core.i18n import is_korean
from skills.core.ports import Notifier, Priority, Store
from skills.core.types import Card, Conversation, ConversationKind, Message, Reply, User

log = logging.getLogger(__name__)

REPLIES = "teams.replies"  # sent activity id -> the skill record it shows (for feedback)
LATEST_REPLY = "teams.latest_reply"  # conversation id -> the newest such record (clients that omit replyToId)
UNDELIVERED = {
    "en": "Sorry, Teams would not take my answer just now. Please ask again in a minute.",
    "ko": "죄송합니다. 지금 Teams가 답변 전송을 받지 않습니다. 잠시 후 다시 질문해 주세요.",
}
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


def _without_bot_mentions(activity: Activity) -> str:
    """The text without `<at>Bot</at>` mentions of this bot; botbuilder's own version crashes on odd entities."""
    text = activity.text if isinstance(activity.text, str) else ""
    bot_id = activity.recipient.id if activity.recipient else None
    for entity in activity.entities or []:
        properties = getattr(entity, "additional_properties", None) or {}
        mentioned = properties.get("mentioned")
        if str(getattr(entity, "type", "") or "").lower() != "mention" or not isinstance(mentioned, dict):
            continue
        if mentioned.get("id") != bot_id:
            continue
        markup = properties.get("text")
        if not isinstance(markup, str) or not markup:
            name = mentioned.get("name")
            markup = f"<at>{name}</at>" if isinstance(name, str) and name else ""
        if markup:
            text = text.replace(markup, " ")
    return text


def to_message(activity: Activity) -> Message:
    """The skills' view of an inbound message activity."""
    text = _without_bot_mentions(activity)
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


@dataclass(frozen=True, slots=True)
class Inbound:
    """What the route established before the turn: whether a verified caller vouched for it, and when it arrived."""

    trusted: bool
    received: float  # time.monotonic() when the request reached /api/messages


class ReplyWindow:
    """The time in which a turn may still deliver its replies itself; past it, replies go to the outbox."""

    def __init__(self, seconds: float, *, start: float | None = None) -> None:
        self.deadline = (time.monotonic() if start is None else start) + seconds

    def left(self) -> float:
        return self.deadline - time.monotonic()


class OutsideWindow(Exception):
    """Delivering now would take the turn past its window (a long Retry-After, or retries that ran out of time)."""


_MIN_ATTEMPT_S = 2.0  # even a turn that spent its window on the answer gets one honest attempt at sending it
_TYPING_TIMEOUT_S = 2.0


def _transient(error: BaseException) -> bool:
    return isinstance(error, ConnectorError) and error.transient


def _wait_within(window: ReplyWindow, base: float = 0.25, cap: float = 2.0) -> Callable[[RetryCallState], float]:
    """Honour Retry-After, else exponential backoff with full jitter; refuse any wait that ends past the window."""

    def wait(state: RetryCallState) -> float:
        error = state.outcome.exception() if state.outcome else None
        asked = error.retry_after if isinstance(error, ConnectorError) else None
        delay = asked if asked is not None else random.uniform(0, min(cap, base * 2 ** (state.attempt_number - 1)))  # noqa: S311
        if delay + 0.5 >= window.left():
            raise OutsideWindow(f"asked to wait {delay:.1f}s with {max(0.0, window.left()):.1f}s left")
        log.warning("connector asked to retry", extra={"status": getattr(error, "status", None), "delay_s": delay})
        return max(0.0, delay)

    return wait


async def send_with_retry(
    context: TurnContext, activity: Activity, window: ReplyWindow, *, attempts: int = 4
) -> ResourceResponse | None:
    """Send one activity, retrying what Teams asks to retry (429, 412, 5xx, no answer) inside the reply window."""
    retrying = AsyncRetrying(
        stop=stop_after_attempt(attempts),
        wait=_wait_within(window),
        retry=retry_if_exception(_transient),
        reraise=True,
    )
    async for attempt in retrying:
        with attempt:
            return await _attempt(context, activity, max(_MIN_ATTEMPT_S, window.left()))
    raise AssertionError("unreachable")  # pragma: no cover - AsyncRetrying always yields once


async def _attempt(context: TurnContext, activity: Activity, seconds: float) -> ResourceResponse | None:
    try:
        async with asyncio.timeout(seconds):
            response: ResourceResponse | None = await context.send_activity(activity)
            return response
    except TimeoutError:
        raise ConnectorError(0, None, "turn window") from None


class TeamsTurn:
    """Sends a skill's replies into the conversation the message came from; what cannot go now goes to the outbox."""

    def __init__(
        self,
        context: TurnContext,
        store: Store,
        *,
        streaming: bool,
        notifier: Notifier | None = None,
        window: ReplyWindow | None = None,
    ) -> None:
        self.context = context
        self.store = store
        self.notifier = notifier
        self.window = window or ReplyWindow(12.0)
        self.kind = conversation_kind(context.activity)
        self._can_stream = streaming and self.kind == ConversationKind.PERSONAL
        self.refreshed_card: Card | None = None  # an Action.Execute invoke answers with this card
        self._replies = 0  # numbers replies within the turn: a redelivered activity maps to the same outbox keys

    @property
    def can_stream(self) -> bool:
        return self._can_stream

    async def send(self, reply: Reply) -> None:
        await self.deliver(reply_activity(reply), reply)

    async def deliver(self, activity: Activity, reply: Reply) -> str | None:
        """Send a reply now, or hand it to the durable outbox when the connector cannot take it within the window."""
        self._replies += 1
        number = self._replies
        try:
            return await self.send_activity(activity, reply)
        except (ConnectorError, OutsideWindow) as error:
            if isinstance(error, ConnectorError) and not error.transient:
                raise  # a refusal (400, 403, 404) would fail the same way from the outbox
            await self._defer(reply, number, error)
            return None

    async def send_activity(self, activity: Activity, reply: Reply | None = None) -> str | None:
        response = await send_with_retry(self.context, activity, self.window)
        activity_id = response.id if response is not None else None
        if reply is not None and reply.record_id:
            record = {"skill": reply.skill, "record_id": reply.record_id}
            if activity_id:
                await self.store.put(REPLIES, activity_id, record)
            conversation = self.context.activity.conversation
            if conversation is not None and conversation.id:
                await self.store.put(LATEST_REPLY, conversation.id, {**record, "activity_id": activity_id})
        return activity_id

    async def _defer(self, reply: Reply, number: int, error: BaseException) -> None:
        activity = self.context.activity
        conversation_id = activity.conversation.id if activity.conversation else ""
        ids = {"activity_id": activity.id, "conversation_id": conversation_id, "reason": type(error).__name__}
        if self.notifier is not None:
            key = f"reply:{activity.id}:{number}"
            await self.notifier.post(f"conversation:{conversation_id}", reply, key=key, priority=Priority.NORMAL)
            log.warning("reply handed to the outbox", extra=ids)
            return
        log.error("reply could not be delivered and there is no outbox", extra=ids)
        korean = is_korean(activity.text or "") or (activity.locale or "").lower().startswith("ko")
        text = UNDELIVERED["ko" if korean else "en"]
        try:  # best effort: Teams may take a short message where it refused a long one a moment ago
            await _attempt(self.context, Activity(type=ActivityTypes.message, text=text), _MIN_ATTEMPT_S)
        except Exception:
            log.warning("could not tell the user the reply was lost", extra=ids)

    async def typing(self) -> None:
        if self.kind == ConversationKind.CHANNEL:
            return  # Teams shows no typing indicator in channels; it would only cost a request
        await self.best_effort(Activity(type=ActivityTypes.typing))

    async def best_effort(self, activity: Activity) -> ResourceResponse | None:
        """One short attempt for what only decorates a turn (typing, stream updates): failure never fails the turn."""
        try:
            return await _attempt(self.context, activity, min(_TYPING_TIMEOUT_S, max(0.5, self.window.left())))
        except ConnectorError as error:
            log.info("typing update not delivered", extra={"status": error.status})
            return None

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
        self.broken = False

    async def _typing(self, text: str, stream_type: str) -> str | None:
        self.sequence += 1
        entity = StreamInfoEntity(stream_type=stream_type, stream_id=self.stream_id, sequence=self.sequence)
        activity = Activity(type=ActivityTypes.typing, text=text, entities=[entity])
        response = await self.turn.best_effort(activity)
        if response is None:
            self.broken = True  # a throttled stream stops updating; the final message still carries the answer
            return None
        return response.id or None

    async def start(self, informative: str) -> None:
        self.stream_id = await self._typing(informative, "informative")

    async def update(self, text_so_far: str) -> None:
        if self.stream_id and not self.finished and not self.broken:
            await self._typing(text_so_far, "streaming")

    async def finish(self, reply: Reply) -> None:
        self.finished = True
        extra: list[Any] = []
        if self.stream_id:
            extra.append(StreamInfoEntity(stream_type="final", stream_id=self.stream_id))
        await self.turn.deliver(reply_activity(reply, extra_entities=extra), reply)

    async def abandon(self) -> None:
        self.finished = True
