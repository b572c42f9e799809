"""A host-provided skill: admins link a unit to the channel they write in (`link unit 7W`), audited."""

from __future__ import annotations

import re

from bot.channels_texts import TEXTS
from bot.outbox import Outbox
from bot.teams.conversations import ConversationBook, channel_id_of
from skills.core.i18n import is_korean
from skills.core.ports import Directory, Turn
from skills.core.skill import Command, Skill
from skills.core.types import ConversationKind, Message, Reply

_UNIT_ARGUMENT = re.compile(r"^(?:unit|병동)?\s*([A-Za-z0-9][\w.-]{0,63})$", re.IGNORECASE)
ADMIN = frozenset({"admin"})


def _language(message: Message) -> str:
    return "ko" if is_korean(message.text) or (message.locale or "").lower().startswith("ko") else "en"


def create_channels_skill(book: ConversationBook, outbox: Outbox, directory: Directory | None = None) -> Skill:
    """`link unit 7W` / `unlink unit 7W` for admins, and the outbox's state for /readyz."""

    def unit_of(message: Message) -> str | None:
        match = _UNIT_ARGUMENT.match(message.argument.strip())
        return match.group(1) if match else None

    def actor(message: Message) -> str:
        return message.user.aad_object_id or message.user.id

    async def link(message: Message, turn: Turn) -> None:
        texts = TEXTS[_language(message)]
        unit = unit_of(message)
        if unit is None:
            await turn.send(Reply(text=texts["usage_link"]))
            return
        if message.conversation.kind != ConversationKind.CHANNEL:
            await turn.send(Reply(text=texts["not_channel"]))
            return
        if directory is not None and directory.unit(unit) is None:
            await turn.send(Reply(text=texts["unknown_unit"].format(unit=unit)))
            return
        record = await book.get(message.conversation.id)
        channel = (record or {}).get("channel") or channel_id_of(message.conversation.id)
        previous = await book.link(unit, channel, by=actor(message))
        key = "relinked" if previous not in (None, channel) else "linked"
        await turn.send(Reply(text=texts[key].format(unit=unit)))

    async def unlink(message: Message, turn: Turn) -> None:
        texts = TEXTS[_language(message)]
        unit = unit_of(message)
        if unit is None:
            await turn.send(Reply(text=texts["usage_unlink"]))
            return
        previous = await book.unlink(unit, by=actor(message))
        await turn.send(Reply(text=texts["unlinked" if previous else "not_linked"].format(unit=unit)))

    async def health() -> dict[str, object]:
        counts = await outbox.counts()
        status: dict[str, object] = {"ready": True, **counts}
        if counts["unrouted"]:
            status["unrouted_reasons"] = await outbox.waiting_reasons()
        return status

    return Skill(
        name="channels",
        description="Link units to Teams channels (admins)",
        commands=[
            Command(
                name="link",
                aliases=("연결",),
                description="Send a unit's posts to this channel (admins)",
                description_ko="병동 알림을 이 채널로 보냅니다 (관리자)",
                usage="unit 7W",
                handler=link,
                roles=ADMIN,
            ),
            Command(
                name="unlink",
                aliases=("연결해제",),
                description="Stop sending a unit's posts to its channel (admins)",
                description_ko="병동 알림의 채널 연결을 해제합니다 (관리자)",
                usage="unit 7W",
                handler=unlink,
                roles=ADMIN,
            ),
        ],
        health=health,
    )
