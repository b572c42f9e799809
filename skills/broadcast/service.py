"""Manager broadcasts: one card per unit channel, optional acknowledgement per unit, scheduling, reminders."""

from __future__ import annotations

import asyncio
import csv
import io
import logging
import random
import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from skills.broadcast.texts import t
from skills.core.i18n import is_korean
from skills.core.ports import Priority, TimerEvent, Turn, Unit
from skills.core.skill import Context
from skills.core.types import Card, Message, Reply, User

log = logging.getLogger(__name__)

ITEMS = "broadcast.items"  # id -> the broadcast, where it went and who acknowledged it
IDS = "broadcast.ids"  # an append-only stream whose sequence numbers name broadcasts (B12)
AUDIT = "broadcast.audit"
SEND_TIMER = "broadcast.send"
_CAS_ATTEMPTS = 50
MANAGER = "manager"
MAX_TEXT = 4000
_COMMAND = re.compile(
    r"^\s*(?P<targets>[A-Za-z0-9_\-]+(?:\s*,\s*[A-Za-z0-9_\-]+)*|전체)"
    r"(?P<options>(?:\s+(?:ack|확인|at\s+\d{1,2}:\d{2}))*)\s*:\s*(?P<text>\S.*)$",
    re.DOTALL | re.IGNORECASE,
)
_AT = re.compile(r"at\s+(\d{1,2}):(\d{2})", re.IGNORECASE)


@dataclass(frozen=True, slots=True)
class BroadcastRequest:
    """What a `broadcast ...: text` command asks for."""

    targets: tuple[str, ...]  # unit ids as typed, or ("all",)
    text: str
    ack: bool
    at: time | None


def parse(argument: str) -> BroadcastRequest | None:
    """Read `7W,8E ack at 14:00: text`; None when it does not have that shape."""
    match = _COMMAND.match(argument)
    if match is None:
        return None
    options = match["options"].lower()
    at = _AT.search(options)
    when = None
    if at is not None:
        hours, minutes = int(at[1]), int(at[2])
        if hours > 23 or minutes > 59:
            return None
        when = time(hours, minutes)
    targets = tuple(p.strip() for p in match["targets"].split(","))
    if len(targets) == 1 and targets[0].lower() in ("all", "전체"):
        targets = ("all",)
    return BroadcastRequest(targets, match["text"].strip()[:MAX_TEXT], "ack" in options or "확인" in options, when)


def _lang(text: str) -> str:
    return "ko" if is_korean(text) else "en"


def _user_ref(user: User) -> str:
    return user.aad_object_id or user.id


class Broadcasts:
    """Everything the broadcast skill does, over the ports in its Context."""

    def __init__(self, context: Context) -> None:
        self.context = context
        self.store = context.store
        self.clock = context.clock

    def _units(self) -> list[Unit]:
        return list(self.context.directory.units()) if self.context.directory is not None else []

    def _zone(self, unit_ids: Sequence[str]) -> ZoneInfo:
        units = {u.id: u for u in self._units()}
        for unit_id in unit_ids:
            if unit_id in units:
                try:
                    return ZoneInfo(units[unit_id].timezone)
                except (ZoneInfoNotFoundError, ValueError):
                    continue
        return ZoneInfo(str(self.context.options.get("timezone", "Asia/Seoul")))

    def _local(self, moment: datetime, unit_ids: Sequence[str], fmt: str = "%m-%d %H:%M") -> str:
        return moment.astimezone(self._zone(unit_ids)).strftime(fmt)

    async def _audit(self, event: str, broadcast_id: str, **fields: Any) -> None:
        await self.store.append(
            AUDIT, {"event": event, "id": broadcast_id, "at": self.clock.now().isoformat(), **fields}
        )

    # --- the command ------------------------------------------------------------------------------------------

    async def on_command(self, message: Message, turn: Turn) -> None:
        """`broadcast UNITS [ack] [at HH:MM]: text`, `broadcast status [ID]`, `broadcast remind ID`."""
        lang = "ko" if (message.locale or "").lower().startswith("ko") or is_korean(message.text) else "en"
        if MANAGER not in message.user.roles:  # the router refuses first; this keeps a direct call just as safe
            await turn.send(Reply(text=t(lang, "managers_only")))
            return
        if self.context.directory is None or not self.context.directory.units() or self.context.notifier is None:
            await turn.send(Reply(text=t(lang, "not_configured")))
            return
        words = message.argument.split()
        if words and words[0].lower() in ("status", "상태") and ":" not in message.argument:
            await turn.send(Reply(text=await self.status_text(lang, words[1] if len(words) > 1 else None)))
            return
        if words and words[0].lower() in ("remind", "알림") and ":" not in message.argument and len(words) == 2:
            await turn.send(Reply(text=await self.remind(lang, words[1].upper())))
            return
        request = parse(message.argument)
        if request is None:
            await turn.send(Reply(text=t(lang, "usage")))
            return
        await turn.send(Reply(text=await self.create(message.user, request, lang, mine=sorted(message.user.units))))

    async def create(self, author: User, request: BroadcastRequest, lang: str, *, mine: Sequence[str] = ()) -> str:
        """Store the broadcast, then send it now or schedule it; returns the confirmation for the manager."""
        known = {u.id.lower(): u.id for u in self._units()}
        if request.targets == ("all",):
            units = sorted(known.values())
        else:
            unknown = [u for u in request.targets if u.lower() not in known]
            if unknown:
                return t(lang, "unknown_units", units=", ".join(unknown))
            units = list(dict.fromkeys(known[u.lower()] for u in request.targets))
        if not units:
            return t(lang, "no_units")
        now = self.clock.now()
        when: datetime | None = None
        zone = self._zone([*mine, *units])
        if request.at is not None:
            if self.context.timers is None:
                return t(lang, "cannot_schedule")
            local = now.astimezone(zone)
            when = datetime.combine(local.date(), request.at, tzinfo=zone)
            if when <= local:
                when += timedelta(days=1)
        sequence = await self.store.append(IDS, {"at": now.isoformat()})
        broadcast_id = f"B{sequence}"
        record = {
            "id": broadcast_id,
            "author_id": _user_ref(author),
            "author_name": author.name,
            "text": request.text,
            "ack": request.ack,
            "units": units,
            "created_at": now.isoformat(),
            "scheduled_for": when.astimezone(now.tzinfo).isoformat() if when else None,
            "status": "scheduled" if when else "sending",
            "posts": {},
            "acks": {},
            "reminders": 0,
        }
        await self.store.put(ITEMS, broadcast_id, record)
        await self._audit("created", broadcast_id, actor=record["author_id"], units=len(units), ack=request.ack)
        ack = t(lang, "sent_ack") if request.ack else ""
        if when is not None:
            assert self.context.timers is not None
            await self.context.timers.schedule_at(SEND_TIMER, broadcast_id, when, {"id": broadcast_id})
            return t(
                lang,
                "scheduled",
                id=broadcast_id,
                when=when.strftime("%Y-%m-%d %H:%M"),
                zone=str(zone),
                count=len(units),
                ack=ack,
            )
        await self.send(broadcast_id)
        return t(lang, "sent", id=broadcast_id, count=len(units), ack=ack)

    # --- sending ----------------------------------------------------------------------------------------------

    def card(self, record: Mapping[str, Any], unit: str) -> Card:
        """The card one unit's channel sees: the text, and its own acknowledgement state."""
        lang = _lang(str(record["text"]))
        sent_at = datetime.fromisoformat(str(record.get("sent_at") or record["created_at"]))
        body: list[dict[str, Any]] = [
            {
                "type": "TextBlock",
                "text": t(lang, "card_title", author=record["author_name"] or "Wardline"),
                "weight": "Bolder",
                "size": "Medium",
                "wrap": True,
            },
            {
                "type": "TextBlock",
                "text": t(lang, "card_meta", id=record["id"], when=self._local(sent_at, [unit])),
                "isSubtle": True,
                "spacing": "None",
                "wrap": True,
            },
            {"type": "TextBlock", "text": str(record["text"]), "wrap": True},
        ]
        content: dict[str, Any] = {
            "type": "AdaptiveCard",
            "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
            "version": "1.5",
            "body": body,
        }
        if record.get("ack"):
            acks = list((record.get("acks") or {}).get(unit) or [])
            if acks:
                first = acks[0]
                more = t(lang, "acked_more", more=len(acks) - 1) if len(acks) > 1 else ""
                at = self._local(datetime.fromisoformat(first["at"]), [unit], "%H:%M")
                body.append(
                    {
                        "type": "TextBlock",
                        "text": t(lang, "acked_by", name=first["name"], at=at) + more,
                        "color": "Good",
                        "weight": "Bolder",
                        "wrap": True,
                    }
                )
            else:
                body.append({"type": "TextBlock", "text": t(lang, "ack_requested"), "color": "Attention", "wrap": True})
            data = {"verb": "broadcast.ack", "id": record["id"], "unit": unit}
            content["actions"] = [
                {
                    "type": "Action.Execute",
                    "title": t(lang, "ack"),
                    "verb": "broadcast.ack",
                    "data": data,
                    "style": "positive",
                    "fallback": {"type": "Action.Submit", "title": t(lang, "ack"), "data": data},
                }
            ]
        return Card(content)

    def _reply(self, record: Mapping[str, Any], unit: str) -> Reply:
        lang = _lang(str(record["text"]))
        return Reply(
            text=t(lang, "card_title", author=record["author_name"] or "Wardline"),
            card=self.card(record, unit),
            skill="broadcast",
        )

    async def _change(
        self, broadcast_id: str, change: Callable[[dict[str, Any]], dict[str, Any] | None]
    ) -> dict[str, Any] | None:
        """Read-modify-write one broadcast with compare-and-set (acknowledgements arrive from many units at once)."""
        for attempt in range(_CAS_ATTEMPTS):
            if attempt:  # fifty units acknowledging at once: spread the retries out
                await asyncio.sleep(random.uniform(0, 0.005 * attempt))  # noqa: S311 - jitter, not security
            found = await self.store.get_versioned(ITEMS, broadcast_id)
            if found is None:
                return None
            updated = change(dict(found[0]))
            if updated is None:
                return found[0]
            if await self.store.put_if_version(ITEMS, broadcast_id, updated, expected=found[1]) is not None:
                return updated
        raise RuntimeError(f"broadcast {broadcast_id} is changing too fast to update")

    async def send(self, broadcast_id: str) -> None:
        """Post one card per unit; idempotent per (broadcast, unit), so a crash halfway resends nothing twice."""
        now = self.clock.now().isoformat()
        record = await self._change(
            broadcast_id,
            lambda r: (
                {**r, "status": "sending", "sent_at": r.get("sent_at") or now}
                if r.get("status") in ("scheduled", "sending")
                else None
            ),
        )
        if record is None or record.get("status") != "sending" or self.context.notifier is None:
            return
        posts: dict[str, str] = {}
        for unit in record["units"]:
            posts[unit] = await self.context.notifier.post(
                f"unit:{unit}",
                self._reply(record, unit),
                key=f"broadcast:{broadcast_id}:{unit}",
                priority=Priority.BULK,
            )
        await self._change(broadcast_id, lambda r: {**r, "status": "sent", "posts": {**r.get("posts", {}), **posts}})
        await self._audit("sent", broadcast_id, units=len(posts))
        log.info("broadcast sent", extra={"broadcast": broadcast_id, "units": len(posts)})

    async def on_send_timer(self, event: TimerEvent) -> None:
        """A scheduled broadcast came due."""
        await self.send(str(event.payload.get("id") or event.key))

    # --- acknowledgements -------------------------------------------------------------------------------------

    async def on_ack(self, message: Message, turn: Turn) -> None:
        """Someone on the unit acknowledges for it; every reader's card shows who, and when."""
        data = message.value or {}
        broadcast_id, unit = str(data.get("id", "")), str(data.get("unit", ""))
        record = await self.store.get(ITEMS, broadcast_id)
        lang = _lang(str(record["text"])) if record else "en"
        if record is None or unit not in record.get("units", []):
            await turn.send(Reply(text=t(lang, "unknown_id", id=broadcast_id[:20])))
            return
        if unit not in message.user.units:
            await turn.send(Reply(text=t(lang, "not_on_unit", unit=unit)))
            return
        entry = {"by": _user_ref(message.user), "name": message.user.name, "at": self.clock.now().isoformat()}

        def acknowledge(current: dict[str, Any]) -> dict[str, Any] | None:
            acks = {k: list(v) for k, v in (current.get("acks") or {}).items()}
            if any(a["by"] == entry["by"] for a in acks.get(unit, [])):
                return None
            acks.setdefault(unit, []).append(entry)
            return {**current, "acks": acks}

        updated = await self._change(broadcast_id, acknowledge)
        if updated is None:
            return
        await self._audit("acknowledged", broadcast_id, unit=unit, actor=entry["by"])
        reply = self._reply(updated, unit)
        reference = (updated.get("posts") or {}).get(unit)
        if reference and self.context.notifier is not None:
            await self.context.notifier.update(str(reference), reply)
        if reply.card is not None:
            await turn.refresh(reply.card)

    # --- status, reminders, reports ---------------------------------------------------------------------------

    async def status_text(self, lang: str, broadcast_id: str | None) -> str:
        """One line per broadcast (the newest ten), or the one asked for."""
        if broadcast_id:
            record = await self.store.get(ITEMS, broadcast_id.upper())
            if record is None:
                return t(lang, "unknown_id", id=broadcast_id[:20])
            records = [record]
        else:
            rows = [r for _k, r in await self.store.scan(ITEMS)]
            records = sorted(rows, key=lambda r: r["created_at"], reverse=True)[:10]
        if not records:
            return t(lang, "no_broadcasts")
        lines = []
        for record in records:
            units = list(record["units"])
            when = self._local(datetime.fromisoformat(str(record.get("sent_at") or record["created_at"])), units)
            if record.get("status") == "scheduled":
                state = t(
                    lang, "status_scheduled", when=self._local(datetime.fromisoformat(record["scheduled_for"]), units)
                )
            elif record.get("ack"):
                pending = [u for u in units if not (record.get("acks") or {}).get(u)]
                names = ", ".join(pending[:12]) + ("…" if len(pending) > 12 else "")
                state = t(
                    lang,
                    "status_acks",
                    acked=len(units) - len(pending),
                    units=len(units),
                    pending=t(lang, "status_pending", names=names) if pending else "",
                )
            else:
                state = t(lang, "status_no_ack")
            lines.append(t(lang, "status_line", id=record["id"], when=when, units=len(units), state=state))
        return "\n".join(lines)

    async def remind(self, lang: str, broadcast_id: str) -> str:
        """Nudge the units that have not acknowledged; each reminder is its own idempotent post."""
        record = await self.store.get(ITEMS, broadcast_id)
        if record is None:
            return t(lang, "unknown_id", id=broadcast_id[:20])
        if not record.get("ack"):
            return t(lang, "remind_no_ack", id=broadcast_id)
        if record.get("status") != "sent" or self.context.notifier is None:
            return t(lang, "remind_not_sent", id=broadcast_id)
        pending = [u for u in record["units"] if not (record.get("acks") or {}).get(u)]
        if not pending:
            return t(lang, "nothing_to_remind", id=broadcast_id)
        updated = await self._change(broadcast_id, lambda r: {**r, "reminders": int(r.get("reminders", 0)) + 1})
        round_ = int((updated or record).get("reminders", 1))
        text_lang = _lang(str(record["text"]))
        for unit in pending:
            await self.context.notifier.post(
                f"unit:{unit}",
                Reply(text=t(text_lang, "remind_text", id=broadcast_id, unit=unit), skill="broadcast"),
                key=f"broadcast.remind:{broadcast_id}:{unit}:{round_}",
                priority=Priority.BULK,
            )
        await self._audit("reminded", broadcast_id, units=pending)
        return t(lang, "reminded", id=broadcast_id, count=len(pending), units=", ".join(pending))

    async def report(self, broadcast_id: str) -> dict[str, Any]:
        """Where a broadcast went and who acknowledged it, per unit; LookupError when there is no such broadcast."""
        record = await self.store.get(ITEMS, broadcast_id.upper())
        if record is None:
            raise LookupError(broadcast_id)
        units = []
        for unit in record["units"]:
            acks = list((record.get("acks") or {}).get(unit) or [])
            units.append(
                {
                    "unit": unit,
                    "posted": unit in (record.get("posts") or {}),
                    "acknowledged": bool(acks),
                    "acknowledged_by": acks[0]["name"] if acks else None,
                    "acknowledged_at": acks[0]["at"] if acks else None,
                    "acknowledgements": len(acks),
                }
            )
        return {
            "id": record["id"],
            "author": record["author_name"],
            "created_at": record["created_at"],
            "scheduled_for": record.get("scheduled_for"),
            "sent_at": record.get("sent_at"),
            "status": record.get("status"),
            "ack_requested": bool(record.get("ack")),
            "reminders": int(record.get("reminders", 0)),
            "units": units,
        }


def report_csv(report: Mapping[str, Any]) -> str:
    """The per-unit rows of a report as CSV (for a spreadsheet)."""
    out = io.StringIO()
    columns = ["broadcast", "unit", "posted", "acknowledged", "acknowledged_by", "acknowledged_at", "acknowledgements"]
    writer = csv.DictWriter(out, fieldnames=columns, lineterminator="\n")
    writer.writeheader()
    for row in report["units"]:
        writer.writerow({"broadcast": report["id"], **row})
    return out.getvalue()
