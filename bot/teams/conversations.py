"""Conversation references (kept when the bot is installed or spoken to) and the links from units to channels."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import Any

from botbuilder.core import TurnContext
from botbuilder.schema import Activity

from bot.teams.turn import conversation_kind, tenant_of
from skills.core.ports import Store
from skills.core.types import ConversationKind

log = logging.getLogger(__name__)

CONVERSATIONS = "teams.conversations"  # conversation id -> reference and what Teams told us about it
PERSONAL_CHATS = "teams.personal_chats"  # aad object id -> the 1:1 conversation id with that person
UNIT_LINKS = "teams.unit_links"  # unit id -> the channel its posts go to
META = "teams.meta"  # "first_channel": the first team channel the bot was installed in (the default fallback)
AUDIT = "audit.channels"  # append-only: linked, unlinked, link broken


def channel_id_of(conversation_id: str) -> str:
    """A channel post's conversation is `<channel>;messageid=<root>`; new posts go to the channel itself."""
    return conversation_id.split(";messageid=", 1)[0]


def _dict(value: Any) -> dict[str, Any]:
    return dict(value) if isinstance(value, dict) else {}


class ConversationBook:
    """Where the bot may post: conversation references, personal chats, unit links; every change audited."""

    def __init__(self, store: Store, *, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    async def remember(self, activity: Activity, *, trusted: bool = True) -> None:
        """Keep the reference of the conversation an activity came from (only when the activity is trusted)."""
        if not trusted or not activity.conversation or not activity.conversation.id:
            return
        reference = TurnContext.get_conversation_reference(activity).serialize()
        channel_data = _dict(activity.channel_data)
        team = _dict(channel_data.get("team"))
        channel = _dict(channel_data.get("channel"))
        kind = conversation_kind(activity)
        record: dict[str, Any] = {
            "reference": reference,
            "service_url": activity.service_url,
            "tenant_id": tenant_of(activity),
            "conversation_type": kind.value,
            "team": team.get("id"),
            "team_name": team.get("name"),
            "channel": channel.get("id"),
            "channel_name": channel.get("name"),
        }
        conversation_id = activity.conversation.id
        await self._keep(conversation_id, record)
        if kind == ConversationKind.CHANNEL:
            channel_key = channel.get("id") or channel_id_of(conversation_id)
            channel_reference = {**reference, "conversation": {**_dict(reference.get("conversation"))}}
            channel_reference["conversation"]["id"] = channel_key
            channel_record = {**record, "reference": channel_reference, "channel": channel_key}
            if channel_key != conversation_id:
                await self._keep(channel_key, channel_record)
            if await self.store.get(META, "first_channel") is None:
                await self.store.put_if_version(META, "first_channel", {"conversation_id": channel_key}, expected=None)
        elif kind == ConversationKind.PERSONAL:
            sender = activity.from_property
            aad = getattr(sender, "aad_object_id", None) if sender else None
            if aad:
                entry = {"conversation_id": conversation_id, "user_id": sender.id, "name": sender.name or ""}
                if await self.store.get(PERSONAL_CHATS, aad) != entry:
                    await self.store.put(PERSONAL_CHATS, aad, entry)

    async def _keep(self, conversation_id: str, record: dict[str, Any]) -> None:
        existing = await self.store.get(CONVERSATIONS, conversation_id)
        if existing is not None:
            # Names arrive only on some activities: keep what we learnt. A new activity proves the bot is back.
            for name in ("team_name", "channel_name"):
                if record.get(name) is None and existing.get(name):
                    record[name] = existing[name]
        if existing != record:
            await self.store.put(CONVERSATIONS, conversation_id, record)

    async def get(self, conversation_id: str) -> dict[str, Any] | None:
        return await self.store.get(CONVERSATIONS, conversation_id)

    async def personal_chat(self, aad_object_id: str) -> dict[str, Any] | None:
        """The 1:1 chat with a person (`conversation_id`, `user_id`), when they ever talked to or installed the bot."""
        return await self.store.get(PERSONAL_CHATS, aad_object_id)

    async def link(self, unit: str, conversation_id: str, *, by: str) -> str | None:
        """Send unit's posts to this conversation; return the conversation it was linked to before."""
        conversation_id = channel_id_of(conversation_id)
        previous = await self.store.get(UNIT_LINKS, unit)
        await self.store.put(UNIT_LINKS, unit, {"conversation_id": conversation_id, "by": by, "at": self.clock()})
        await self.store.append(
            AUDIT,
            {
                "event": "linked",
                "unit": unit,
                "conversation_id": conversation_id,
                "previous": previous.get("conversation_id") if previous else None,
                "by": by,
                "at": self.clock(),
            },
        )
        return str(previous["conversation_id"]) if previous else None

    async def unlink(self, unit: str, *, by: str) -> str | None:
        """Remove a unit's link; return the conversation it pointed to (None: there was none)."""
        previous = await self.store.get(UNIT_LINKS, unit)
        if previous is None:
            return None
        await self.store.delete(UNIT_LINKS, unit)
        await self.store.append(
            AUDIT,
            {
                "event": "unlinked",
                "unit": unit,
                "conversation_id": previous["conversation_id"],
                "by": by,
                "at": self.clock(),
            },
        )
        return str(previous["conversation_id"])

    async def linked(self, unit: str) -> str | None:
        link = await self.store.get(UNIT_LINKS, unit)
        return str(link["conversation_id"]) if link else None

    async def links(self) -> dict[str, dict[str, Any]]:
        return dict(await self.store.scan(UNIT_LINKS))

    async def unit_of(self, conversation_id: str) -> str | None:
        """The unit whose channel this conversation is (a post or a reply thread in it), or None."""
        channel = channel_id_of(conversation_id)
        for unit, link in await self.store.scan(UNIT_LINKS):
            if link.get("conversation_id") == channel:
                return unit
        return None

    async def conversations(self) -> list[tuple[str, dict[str, Any]]]:
        return await self.store.scan(CONVERSATIONS)

    async def first_channel(self) -> str | None:
        first = await self.store.get(META, "first_channel")
        return str(first["conversation_id"]) if first else None

    async def mark_broken(self, conversation_id: str, status: int) -> None:
        """Teams answered 403/404: the bot was removed or the conversation is gone. Audited once per break."""
        record = await self.store.get(CONVERSATIONS, conversation_id)
        if record is None or record.get("broken"):
            return
        record["broken"] = {"status": status, "at": self.clock()}
        await self.store.put(CONVERSATIONS, conversation_id, record)
        units = [unit for unit, link in (await self.links()).items() if link.get("conversation_id") == conversation_id]
        await self.store.append(
            AUDIT,
            {
                "event": "link_broken",
                "conversation_id": conversation_id,
                "units": units,
                "status": status,
                "at": self.clock(),
            },
        )
        log.warning("conversation gone; its posts go to the fallback", extra={"status": status, "units": units})

    async def audit(self, *, after: int = 0) -> list[tuple[int, dict[str, Any]]]:
        return await self.store.read(AUDIT, after=after)
