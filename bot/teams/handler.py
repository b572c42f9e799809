"""The Bot: turns Teams activities into skill calls through the router."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import replace
from http import HTTPStatus
from typing import Any

from botbuilder.core import Bot, InvokeResponse, TurnContext
from botbuilder.schema import Activity, ActivityTypes

from bot.logs import bind, unbind
from bot.teams.conversations import CONVERSATIONS, ConversationBook
from bot.teams.render import ADAPTIVE_CARD
from bot.teams.turn import (
    LATEST_REPLY,
    REPLIES,
    Inbound,
    ReplyWindow,
    TeamsTurn,
    conversation_kind,
    to_message,
)
from skills.core.i18n import is_korean
from skills.core.ports import Notifier, Store
from skills.core.router import Router
from skills.core.types import ConversationKind, Feedback, Message, User

log = logging.getLogger(__name__)

__all__ = ["CONVERSATIONS", "WardlineBot", "apologise"]  # CONVERSATIONS moved to bot.teams.conversations

FEEDBACK_INVOKE = "message/submitAction"
CARD_INVOKE = "adaptiveCard/action"

WELCOME = (
    "Hi, I'm **Wardline**. Ask me about the hospital's protocols (e.g. *what MAP do we target in septic shock?*) "
    "and I'll answer with numbered sources. Type `help` to see everything I can do.\n\n"
    "안녕하세요, **Wardline**입니다. 병원 프로토콜에 대해 한국어로도 질문할 수 있습니다."
)


class WardlineBot(Bot):  # type: ignore[misc]
    """Dispatches messages, card actions, feedback votes and installs; never lets an activity type crash a turn."""

    def __init__(
        self,
        router: Router,
        store: Store,
        *,
        streaming: bool,
        notifier: Notifier | None = None,
        reply_window_s: float = 12.0,
    ) -> None:
        self.router = router
        self.store = store
        self.streaming = streaming
        self.notifier = notifier  # the durable outbox, for replies the connector cannot take within the turn
        self.reply_window_s = reply_window_s
        self.conversations = ConversationBook(store)

    async def on_turn(self, context: TurnContext, inbound: Inbound | None = None) -> None:
        """Run one turn; `inbound` says whether the route trusted the caller (untrusted turns change no reference)."""
        activity = context.activity
        inbound = inbound or Inbound(trusted=False, received=time.monotonic())
        token = bind(
            activity_id=activity.id,
            conversation_id=activity.conversation.id if activity.conversation else None,
        )
        try:
            await self._dispatch(context, inbound)
        finally:
            unbind(token)

    async def _dispatch(self, context: TurnContext, inbound: Inbound) -> None:
        activity = context.activity
        if activity.type == ActivityTypes.message:
            if inbound.trusted:  # only a verified (or loopback, when anonymous) caller may redirect proactive posts
                await self._remember_conversation(activity)
            await self._on_message(context, inbound)
        elif activity.type == ActivityTypes.invoke:
            await self._on_invoke(context, inbound)
        elif activity.type in (ActivityTypes.conversation_update, ActivityTypes.installation_update):
            if inbound.trusted:
                await self._remember_conversation(activity)
            await self._on_install(context)

    def _turn(self, context: TurnContext, inbound: Inbound, *, streaming: bool) -> TeamsTurn:
        window = ReplyWindow(self.reply_window_s, start=inbound.received)
        return TeamsTurn(context, self.store, streaming=streaming, notifier=self.notifier, window=window)

    async def _on_message(self, context: TurnContext, inbound: Inbound) -> None:
        message = await self._in_unit_channel(to_message(context.activity))
        if not message.text and message.value is None:
            return  # e.g. a message with only an image: nothing to answer
        turn = self._turn(context, inbound, streaming=self.streaming)
        skill = await self.router.dispatch(message, turn)
        log.info("message handled", extra={"skill": skill, "conversation_kind": message.conversation.kind.value})

    async def _on_invoke(self, context: TurnContext, inbound: Inbound) -> None:
        activity = context.activity
        if activity.name == FEEDBACK_INVOKE:
            await self._on_feedback(context)
            await _invoke_response(context, InvokeResponse(status=HTTPStatus.OK))
        elif activity.name == CARD_INVOKE:
            action = _dict(_dict(activity.value).get("action"))
            data = _dict(action.get("data"))
            if "verb" not in data and action.get("verb"):
                data["verb"] = action["verb"]
            message = await self._in_unit_channel(replace(to_message(activity), text="", value=data))
            turn = self._turn(context, inbound, streaming=False)
            await self.router.dispatch(message, turn)
            body: dict[str, Any]
            if turn.refreshed_card is not None:
                body = {"statusCode": 200, "type": ADAPTIVE_CARD, "value": dict(turn.refreshed_card.content)}
            else:
                body = {"statusCode": 200, "type": "application/vnd.microsoft.activity.message", "value": "OK"}
            await _invoke_response(context, InvokeResponse(status=HTTPStatus.OK, body=body))
        else:
            await _invoke_response(context, InvokeResponse(status=HTTPStatus.NOT_IMPLEMENTED))

    async def _on_feedback(self, context: TurnContext) -> None:
        activity = context.activity
        action = _dict(_dict(activity.value).get("actionValue"))
        reaction = str(action.get("reaction", "")).lower()
        if reaction not in ("like", "dislike"):
            log.warning("feedback without a like/dislike reaction ignored")
            return
        feedback_text = _feedback_text(action.get("feedback"))
        if activity.reply_to_id:
            sent = await self.store.get(REPLIES, activity.reply_to_id)
        else:
            # Teams always says which message was rated; some clients (Agents Playground) do not. Then the vote
            # can only be about the newest rated answer in this conversation, and it is stored as such.
            sent = await self.store.get(LATEST_REPLY, activity.conversation.id)
        if sent is None:
            log.warning("feedback for a message this bot has no record of")
            return
        sender = activity.from_property
        feedback = Feedback(
            record_id=str(sent["record_id"]),
            reaction=reaction,
            text=feedback_text,
            user=User(id=(sender.id if sender else "") or "", name=(sender.name if sender else "") or ""),
        )
        await self.router.feedback(str(sent.get("skill")), feedback)
        log.info("feedback stored", extra={"reaction": reaction})

    async def _on_install(self, context: TurnContext) -> None:
        activity = context.activity
        added = activity.members_added or []
        bot_id = activity.recipient.id if activity.recipient else None
        bot_added = any(m.id == bot_id for m in added) or (
            activity.type == ActivityTypes.installation_update and activity.action == "add"
        )
        personal = conversation_kind(activity) == ConversationKind.PERSONAL
        if bot_added and personal and activity.type == ActivityTypes.conversation_update:
            await context.send_activity(Activity(type=ActivityTypes.message, text=WELCOME, text_format="markdown"))

    async def _in_unit_channel(self, message: Message) -> Message:
        """Skills see a linked unit channel as `unit:<id>` (e.g. where an alarm was posted or escalated to)."""
        if message.conversation.kind == ConversationKind.PERSONAL or not message.conversation.id:
            return message
        unit = await self.conversations.unit_of(message.conversation.id)
        if unit is None:
            return message
        return replace(message, conversation=replace(message.conversation, channel=f"unit:{unit}"))

    async def _remember_conversation(self, activity: Activity, *, trusted: bool = True) -> None:
        await self.conversations.remember(activity, trusted=trusted)


def _dict(value: Any) -> dict[str, Any]:
    """JSON objects from the wire, or an empty dict for anything else."""
    return dict(value) if isinstance(value, dict) else {}


def _feedback_text(raw: Any) -> str:
    """Teams sends the free-text part as a JSON string like {"feedbackText": "..."}; keep just the text."""
    if isinstance(raw, dict):
        return str(raw.get("feedbackText", ""))
    if isinstance(raw, str):
        try:
            parsed = json.loads(raw)
        except ValueError:
            return raw
        if isinstance(parsed, dict):
            return str(parsed.get("feedbackText", ""))
        return raw
    return ""


async def _invoke_response(context: TurnContext, response: InvokeResponse) -> None:
    await context.send_activity(Activity(type=ActivityTypes.invoke_response, value=response))


async def apologise(context: TurnContext, error: Exception) -> None:
    """The one turn-error handler: log the failure with ids only, tell the user plainly, leak nothing."""
    activity = context.activity
    log.error(
        "turn failed",
        exc_info=error,
        extra={
            "activity_id": activity.id,
            "activity_type": activity.type,
            "conversation_id": activity.conversation.id if activity.conversation else None,
        },
    )
    if activity.type != ActivityTypes.message:
        return
    korean = is_korean(activity.text or "")
    text = (
        "죄송합니다. 처리 중 문제가 발생했습니다. 다시 시도해 주세요. 계속되면 IT 담당자에게 알려주세요"
        if korean
        else "Sorry, something went wrong on my side. Please try again; if it keeps happening, tell IT"
    )
    try:
        await context.send_activity(f"{text} (ref {activity.id or 'unknown'}).")
    except Exception:  # the connector itself may be what failed; the log above has the cause
        log.warning("could not send the apology", extra={"activity_id": activity.id})
