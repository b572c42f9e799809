"""The Alert Manager: stores each report before it is acknowledged, then posts, updates, escalates and closes cards.

Durability: a report is written to the inbox (one commit, idempotent by sender and message id) before the consumer
returns, so the host acknowledges only what is stored. One worker applies inbox entries in arrival order; a report
is marked done only after its effects, and every effect is idempotent (posts by key, records by compare-and-set,
timers by (kind, key)), so a crash at any point is repaired by re-applying the entries not yet done at start-up.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import zlib
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from skills.alerts.cards import alert_card, local_time, notice_card
from skills.alerts.hl7 import parse_oru_r40
from skills.alerts.mdc import event_words
from skills.alerts.model import Alert, AlertFormatError
from skills.alerts.texts import text
from skills.core.ports import Clock, Directory, Notifier, Priority, Store, TimerEvent, Timers, Turn, Unit
from skills.core.skill import ErrorKind, Outcome
from skills.core.types import Message, Reply, User

log = logging.getLogger(__name__)

INBOX = "alerts.inbox"  # "source|message id" -> the report as received, and whether it has been applied
ALERTS = "alerts.alerts"  # "source|alert id" -> the alert's state (versioned: one winner per change)
OPEN = "alerts.open"  # "unit|alert key" -> {} for every posted alarm not yet ended
DIGEST = "alerts.digest"  # "unit|time|alert key|message id" -> an advisory alert waiting for the digest
LINKS = "alerts.links"  # sending system -> heartbeat liveness
AUDIT = "alerts.audit"  # append-only stream of every step
TIMER_HOLDOFF = "alerts.holdoff"
TIMER_ESCALATE = "alerts.escalate"
TIMER_LINK = "alerts.link"
_KEEP_MESSAGE_IDS = 50  # message ids remembered per alert, to drop re-applied reports
_CAS_ATTEMPTS = 20
_WORKERS = 4

EscalationLevels = tuple[tuple[int, str], ...]  # (seconds after posting, target template)


@dataclass(frozen=True, slots=True)
class AlertSettings:
    """Defaults for every unit; a unit overrides them in its directory options."""

    holdoff_s: Mapping[str, int] = field(default_factory=lambda: {"PH": 0, "PM": 10, "PL": 30})
    escalation: Mapping[str, EscalationLevels] = field(
        default_factory=lambda: {
            "PH": ((30, "role:charge@{unit}"), (60, "{escalation_target}")),
            "PM": ((120, "role:charge@{unit}"),),
            "PL": (),
        }
    )
    heartbeat_interval_s: int = 60  # used when a gateway does not announce its interval
    silence_factor: int = 3  # a link is down after this many intervals without a heartbeat
    biomed_target: str = ""  # e.g. "unit:BIOMED"; technical alerts about device links also go there
    locale: str = "en"
    timezone: str = "Asia/Seoul"
    retention_days: int = 7  # how long applied reports (and ended alerts) are kept for de-duplication

    def holdoff_for(self, unit: Unit | None, priority: str) -> int:
        override = (unit.options.get("alerts_holdoff_s") if unit else None) or {}
        return int(override.get(priority, self.holdoff_s.get(priority, 0)))

    def levels_for(self, unit: Unit | None, priority: str) -> EscalationLevels:
        override = (unit.options.get("alerts_escalation") if unit else None) or {}
        if priority in override:
            return tuple((int(after), str(target)) for after, target in override[priority])
        return tuple(self.escalation.get(priority, ()))


def may_respond(user: User, unit: str, directory: Directory | None) -> bool:
    """Staff of the alarm's unit (and admins) may accept or decline; without a directory, channel members may."""
    if "admin" in user.roles or unit in user.units:
        return True
    if directory is None:
        return True
    person = user.aad_object_id or user.id
    return any(member.aad_object_id == person for member in directory.staff(unit=unit))


class AlertDesk:
    """Everything the alerts skill does, over the ports."""

    def __init__(
        self,
        store: Store,
        clock: Clock,
        notifier: Notifier,
        timers: Timers,
        directory: Directory | None = None,
        settings: AlertSettings | None = None,
    ) -> None:
        self.store = store
        self.clock = clock
        self.notifier = notifier
        self.timers = timers
        self.directory = directory
        self.settings = settings or AlertSettings()
        self.zone = ZoneInfo(self.settings.timezone)
        # Reports of one alert are applied in arrival order by one worker; different alerts go side by side, so a
        # slow database round trip does not hold up every other alarm (throughput, not only order).
        self._queues: list[asyncio.Queue[Callable[[], Awaitable[None]]]] = [asyncio.Queue() for _ in range(_WORKERS)]
        self._workers: list[asyncio.Task[None]] = []
        self.applied = 0  # reports applied since start (health, benchmarks)

    @property
    def backlog(self) -> int:
        """Reports stored and acknowledged but not yet applied."""
        return sum(queue.qsize() for queue in self._queues)

    # ---- ingress -------------------------------------------------------------------------------------------

    async def receive_hl7(self, message: str) -> Outcome:
        """The "hl7v2" consumer: parse, store, return; the host ACKs from the outcome."""
        try:
            alert = parse_oru_r40(message, default_zone=self.zone)
        except AlertFormatError as error:
            kind: ErrorKind = "unsupported" if error.unsupported else "missing" if error.missing else "invalid"
            return Outcome.fail(kind, error.reason, error.field)
        return await self._receive(alert, "hl7v2")

    async def receive_json(self, body: Any) -> Outcome:
        """The "alerts.json" consumer: validate, store, return."""
        try:
            alert = Alert.from_json(body)
        except AlertFormatError as error:
            return Outcome.fail("missing" if error.missing else "invalid", error.reason, error.field)
        return await self._receive(alert, "webhook")

    async def _receive(self, alert: Alert, via: str) -> Outcome:
        key = f"{alert.source}|{alert.message_id}"
        received_at = self.clock.now().isoformat()
        entry: dict[str, Any] = {"alert": alert.to_json(), "received_at": received_at, "via": via, "done": False}
        try:
            version = await self.store.put_if_version(INBOX, key, entry, expected=None)
        except Exception:
            log.exception("could not store an alert report")
            return Outcome.fail("internal", "the alert could not be stored; send it again")
        queue = self._queue_for(entry["alert"])
        if version is None:  # the same message again (a resend after a lost ACK): acknowledge, do nothing
            step = {"step": "duplicate", "alert": alert.key, "unit": alert.unit, "message": alert.message_id}
            queue.put_nowait(lambda: self.audit(step))
        else:
            queue.put_nowait(lambda: self._apply_entry(key, entry))

        async def acknowledged() -> None:
            step = {"step": "ack sent", "alert": alert.key, "unit": alert.unit, "message": alert.message_id}
            queue.put_nowait(lambda: self.audit(step))

        return Outcome.ok(after_reply=acknowledged)

    # ---- the worker ------------------------------------------------------------------------------------------

    def _queue_for(self, alert: Mapping[str, Any]) -> asyncio.Queue[Callable[[], Awaitable[None]]]:
        """The worker queue of an alert (heartbeats: of their gateway); starts the workers on first use."""
        if not self._workers or any(worker.done() for worker in self._workers):
            loop = asyncio.get_running_loop()
            self._workers = [
                loop.create_task(self._work(queue), name=f"alerts-worker-{n}") for n, queue in enumerate(self._queues)
            ]
        ordering = alert["source"] if alert["priority"] == "PN" else f"{alert['source']}|{alert['alert_id']}"
        return self._queues[zlib.crc32(ordering.encode()) % len(self._queues)]

    async def _work(self, queue: asyncio.Queue[Callable[[], Awaitable[None]]]) -> None:
        while True:
            job = await queue.get()
            try:
                await job()
            except asyncio.CancelledError:
                raise
            except Exception:  # one bad report must not stop the others; start-up re-applies what is not done
                log.exception("applying an alert report failed")
            finally:
                queue.task_done()

    async def start(self) -> None:
        """Re-apply every stored report not marked done (a crash between the ACK and its effects)."""
        pending = [(e["received_at"], key, e) for key, e in await self.store.scan(INBOX) if not e["done"]]
        for _received, key, entry in sorted(pending, key=lambda item: (item[0], item[1])):
            self._queue_for(entry["alert"]).put_nowait(lambda key=key: self._apply_entry(key))  # type: ignore[misc]
        if pending:
            log.warning("re-applying alert reports after a restart", extra={"count": len(pending)})

    async def drain(self) -> None:
        """Wait until every queued report has been applied (tests, orderly shutdown)."""
        for queue in self._queues:
            await queue.join()

    async def stop(self) -> None:
        for worker in self._workers:
            worker.cancel()
        for worker in self._workers:
            with contextlib.suppress(asyncio.CancelledError):
                await worker
        self._workers = []

    async def audit(self, step: Mapping[str, Any], *, actor: str = "wardline") -> None:
        """Append one step to the audit stream, with its actor and UTC time."""
        await self.store.append(AUDIT, {"at": self.clock.now().isoformat(), "actor": actor, **step})

    async def _apply_entry(self, key: str, entry: dict[str, Any] | None = None) -> None:
        if entry is None:  # recovery reads it; a live report hands over what it just stored
            entry = await self.store.get(INBOX, key)
        if entry is None or entry["done"]:
            return
        alert = Alert.from_json(entry["alert"])
        step = {"step": "received", "alert": alert.key, "unit": alert.unit, "message": alert.message_id}
        await self.audit({**step, "phase": alert.phase, "priority": alert.priority, "via": entry["via"]})
        if alert.heartbeat:
            await self._heartbeat(alert)
        elif alert.alert_type == "SA":
            await self._advisory(alert)
        else:
            await self._apply(alert)
        await self.store.put(INBOX, key, {**entry, "done": True})
        self.applied += 1

    # ---- alarms ----------------------------------------------------------------------------------------------

    def unit(self, unit_id: str) -> Unit | None:
        return self.directory.unit(unit_id) if self.directory is not None else None

    def locale_for(self, unit_id: str) -> str:
        unit = self.unit(unit_id)
        return str(unit.options.get("locale", self.settings.locale)) if unit else self.settings.locale

    def zone_for(self, unit_id: str) -> ZoneInfo:
        unit = self.unit(unit_id)
        return ZoneInfo(unit.timezone) if unit else self.zone

    def card_for(self, record: Mapping[str, Any]) -> Reply:
        """The message showing an alarm record: a one-line summary (notification preview) and the card."""
        alert = record["alert"]
        locale = self.locale_for(alert["unit"])
        words = event_words(alert["event_code"], alert.get("event_text", ""), locale)
        summary = f"{text(locale, 'priority.' + alert['priority'])} · {words} · {alert['unit']} {alert['room']}"
        return Reply(
            text=f"{summary} {alert['bed']}".strip(),
            card=alert_card(record, locale, self.zone_for(alert["unit"])),
            skill="alerts",
            record_id=record["key"],
        )

    async def _apply(self, alert: Alert) -> None:
        for _ in range(_CAS_ATTEMPTS):
            current = await self.store.get_versioned(ALERTS, alert.key)
            if current is None:
                if await self._open(alert):
                    return
                continue
            record, version = current
            if alert.message_id in record["messages"]:
                if record["status"] in ("posting", "posted"):
                    await self._post(alert.key)  # finish what a crash interrupted; every step is idempotent
                return
            updated = _merge(record, alert)
            if record["status"] in ("ended", "suppressed"):
                if await self.store.put_if_version(ALERTS, alert.key, updated, expected=version) is None:
                    continue
                await self.audit({"step": "after end", "alert": alert.key, "unit": record["alert"]["unit"]})
                return
            if alert.ends:
                await self._close(alert, updated, version)
                return
            if await self.store.put_if_version(ALERTS, alert.key, updated, expected=version) is None:
                continue
            if updated["status"] == "posted":
                await self._refresh_everywhere(updated)
            await self.audit({"step": "updated", "alert": alert.key, "unit": updated["alert"]["unit"]})
            return
        raise RuntimeError("too many concurrent changes to one alert")

    async def _open(self, alert: Alert) -> bool:
        now = self.clock.now()
        if alert.ends:  # an end without a start we saw: remember it so a late start stays closed
            record = _new_record(alert, "ended", now) | {"ended_at": now.isoformat()}
            if await self.store.put_if_version(ALERTS, alert.key, record, expected=None) is None:
                return False
            await self.audit({"step": "ended", "alert": alert.key, "unit": alert.unit, "detail": "never started"})
            return True
        holdoff = self.settings.holdoff_for(self.unit(alert.unit), alert.priority)
        if holdoff > 0:
            record = _new_record(alert, "held", now)
            if await self.store.put_if_version(ALERTS, alert.key, record, expected=None) is None:
                return False
            await self.timers.schedule_at(TIMER_HOLDOFF, alert.key, now + timedelta(seconds=holdoff), {})
            await self.audit({"step": "held", "alert": alert.key, "unit": alert.unit, "seconds": holdoff})
            return True
        # No hold-off: post first (idempotent by key), then create the record as posted, saving a round trip.
        # A crash in between re-applies the report at start-up: the post is found by its key, not repeated.
        record = _new_record(alert, "posting", now)
        ref = await self.notifier.post(
            f"unit:{alert.unit}", self.card_for(record), key=f"alerts:{alert.key}", priority=_priority(alert.priority)
        )
        posted = {**record, "status": "posted", "message_ref": ref, "posted_at": now.isoformat()}
        if await self.store.put_if_version(ALERTS, alert.key, posted, expected=None) is None:
            return False
        await self._after_post(posted)
        return True

    async def on_holdoff(self, event: TimerEvent) -> None:
        """The hold-off passed and the alarm is still on: post it."""
        current = await self.store.get_versioned(ALERTS, event.key)
        if current is None or current[0]["status"] != "held":
            return
        record, version = current
        if await self.store.put_if_version(ALERTS, event.key, {**record, "status": "posting"}, expected=version):
            await self._post(event.key)
        else:
            await self.on_holdoff(event)

    async def _post(self, key: str) -> None:
        """Post the card (idempotent by key), mark it posted, and make sure its first escalation is scheduled."""
        for _ in range(_CAS_ATTEMPTS):
            current = await self.store.get_versioned(ALERTS, key)
            if current is None:
                return
            record, version = current
            if record["status"] == "posting":
                alert = record["alert"]
                ref = await self.notifier.post(
                    f"unit:{alert['unit']}",
                    self.card_for(record),
                    key=f"alerts:{key}",
                    priority=_priority(alert["priority"]),
                )
                posted = {**record, "status": "posted", "message_ref": ref, "posted_at": self.clock.now().isoformat()}
                if await self.store.put_if_version(ALERTS, key, posted, expected=version) is None:
                    continue
                await self._after_post(posted)
            elif record["status"] == "posted" and not record.get("accepted"):
                await self._after_post(record, replayed=True)  # a crash may have cut these steps short
            return

    async def _after_post(self, record: Mapping[str, Any], *, replayed: bool = False) -> None:
        """List the alarm as open, audit the post, and schedule its next escalation (all idempotent but the audit)."""
        unit = record["alert"]["unit"]
        await self.store.put(OPEN, f"{unit}|{record['key']}", {})
        step = {"step": "posted", "alert": record["key"], "unit": unit, "target": f"unit:{unit}"}
        await self.audit({**step, "detail": "re-applied after a restart"} if replayed else step)
        await self._schedule_escalation(record, record["level"] + 1)

    async def _close(self, alert: Alert, updated: dict[str, Any], version: int) -> None:
        now = self.clock.now().isoformat()
        was = updated["status"]
        closed = {**updated, "status": "suppressed" if was == "held" else "ended", "ended_at": now}
        if await self.store.put_if_version(ALERTS, alert.key, closed, expected=version) is None:
            await self._apply(alert)  # someone changed it meanwhile: start over from the stored state
            return
        await self.timers.cancel(TIMER_HOLDOFF, alert.key)
        await self.timers.cancel(TIMER_ESCALATE, alert.key)
        unit = closed["alert"]["unit"]
        if was == "held":
            detail = "inside hold-off, not posted"
            await self.audit({"step": "ended", "alert": alert.key, "unit": unit, "detail": detail})
            return
        if was == "posting":  # ended while a post was half done: finish the post, then show it ended
            await self.notifier.post(f"unit:{unit}", self.card_for(closed), key=f"alerts:{alert.key}")
        await self._refresh_everywhere(closed)
        await self.store.delete(OPEN, f"{unit}|{alert.key}")
        await self.audit({"step": "ended", "alert": alert.key, "unit": unit, "accepted": bool(closed.get("accepted"))})

    async def _refresh_everywhere(self, record: Mapping[str, Any]) -> None:
        """Show the record's current state on the channel card and on every escalation message."""
        reply = self.card_for(record)
        for ref in [record.get("message_ref"), *record.get("escalation_refs", [])]:
            if ref:
                await self.notifier.update(ref, reply)

    # ---- escalation ------------------------------------------------------------------------------------------

    async def _schedule_escalation(self, record: Mapping[str, Any], level: int) -> None:
        alert = record["alert"]
        levels = self.settings.levels_for(self.unit(alert["unit"]), alert["priority"])
        if level > len(levels) or not record.get("posted_at"):
            return
        due = datetime.fromisoformat(record["posted_at"]) + timedelta(seconds=levels[level - 1][0])
        await self.timers.schedule_at(TIMER_ESCALATE, record["key"], due, {"level": level})

    async def on_escalate(self, event: TimerEvent) -> None:
        """A level's time came with nobody accepting: tell its target, then schedule the next level."""
        await self.escalate(event.key, int(event.payload.get("level", 1)), reason="not accepted")

    async def escalate(self, key: str, level: int, *, reason: str, actor: str = "wardline") -> None:
        """Run escalation `level` once (a repeat after a restart is a no-op) and schedule the next one."""
        for _ in range(_CAS_ATTEMPTS):
            current = await self.store.get_versioned(ALERTS, key)
            if current is None:
                return
            record, version = current
            if record["status"] != "posted" or record.get("accepted"):
                return
            alert = record["alert"]
            unit = self.unit(alert["unit"])
            levels = self.settings.levels_for(unit, alert["priority"])
            if record["level"] >= level:  # done before a restart: only make sure the next one is pending
                await self._schedule_escalation(record, record["level"] + 1)
                return
            if level > len(levels):
                await self.audit({"step": "escalation exhausted", "alert": key, "unit": alert["unit"]}, actor=actor)
                return
            target = _target(levels[level - 1][1], alert["unit"], unit)
            refs = list(record.get("escalation_refs", []))
            if target:
                reply = self.card_for({**record, "level": level})
                locale = self.locale_for(alert["unit"])
                reply.text = text(
                    locale,
                    "escalation.text",
                    priority=text(locale, "priority." + alert["priority"]),
                    unit=alert["unit"],
                    room=alert["room"] or "-",
                    bed=alert["bed"] or "-",
                )
                ref = await self.notifier.post(
                    target, reply, key=f"alerts:{key}:level{level}", priority=_priority(alert["priority"])
                )
                refs.append(ref)
            targets = [*record.get("targets", []), *([target] if target else [])]
            refs = sorted(set(refs), key=refs.index)
            escalated = {**record, "level": level, "escalation_refs": refs, "targets": targets}
            if await self.store.put_if_version(ALERTS, key, escalated, expected=version) is None:
                continue
            if record.get("message_ref"):
                await self.notifier.update(record["message_ref"], self.card_for(escalated))
            step = {"step": "escalated", "alert": key, "unit": alert["unit"], "level": level, "reason": reason}
            await self.audit({**step, "target": target or "(none configured)"}, actor=actor)
            await self._schedule_escalation(escalated, level + 1)
            return

    # ---- people ----------------------------------------------------------------------------------------------

    async def respond(self, message: Message, turn: Turn, verb: str) -> None:
        """Accept, accept as a false alarm, or decline, from a card button; one winner when two press at once."""
        key = str((message.value or {}).get("alert", ""))
        user = message.user
        person = user.aad_object_id or user.id
        for _ in range(_CAS_ATTEMPTS):
            current = await self.store.get_versioned(ALERTS, key) if key else None
            locale = message.locale or self.settings.locale
            if current is None:
                await turn.send(Reply(text=text(locale, "reply.unknown")))
                return
            record, version = current
            unit = record["alert"]["unit"]
            locale = message.locale or self.locale_for(unit)
            # Unit staff may respond, and so may anyone in a channel the alarm was escalated to (a rapid-response team).
            escalated_here = message.conversation.channel in record.get("targets", [])
            if not escalated_here and not may_respond(user, unit, self.directory):
                await turn.send(Reply(text=text(locale, "reply.not_allowed", unit=unit)))
                return
            if record["status"] in ("ended", "suppressed") or record.get("accepted"):
                await turn.refresh(self.card_for(record).card)  # type: ignore[arg-type]
                return
            now = self.clock.now().isoformat()
            if verb == "decline":
                declined = [d for d in record.get("declined", []) if d["id"] != person]
                declined.append({"id": person, "name": user.name or person, "at": now})
                changed = {**record, "declined": declined}
            else:
                owner = {"id": person, "name": user.name or person, "at": now, "false_alarm": verb == "false_alarm"}
                changed = {**record, "accepted": owner}
            if await self.store.put_if_version(ALERTS, key, changed, expected=version) is None:
                continue  # someone else changed it first: look again
            step = {"accept": "accepted", "false_alarm": "false alarm", "decline": "declined"}[verb]
            await self.audit({"step": step, "alert": key, "unit": unit}, actor=person)
            if verb == "decline":
                await self.timers.cancel(TIMER_ESCALATE, key)
                await self.escalate(key, record["level"] + 1, reason="declined", actor=person)
                current = await self.store.get_versioned(ALERTS, key)
                changed = current[0] if current else changed
            else:
                await self.timers.cancel(TIMER_ESCALATE, key)
            await self._refresh_everywhere(changed)
            await turn.refresh(self.card_for(changed).card)  # type: ignore[arg-type]
            return

    async def open_alarms(self, unit: str) -> list[dict[str, Any]]:
        """Posted alarms of a unit that have not ended, oldest first."""
        records = []
        for key, _ in await self.store.scan(OPEN, f"{unit}|"):
            record = await self.store.get(ALERTS, key.split("|", 1)[1])
            if record is not None and record["status"] == "posted":
                records.append(record)
        return sorted(records, key=lambda r: r["alert"]["occurred_at"])

    # ---- advisories, heartbeats, housekeeping --------------------------------------------------------------

    async def _advisory(self, alert: Alert) -> None:
        if alert.ends:
            await self.audit({"step": "ended", "alert": alert.key, "unit": alert.unit, "detail": "advisory"})
            return
        if alert.phase not in ("start", "present"):  # later phases of an advisory add nothing to the digest
            await self.audit({"step": "updated", "alert": alert.key, "unit": alert.unit, "detail": "advisory"})
            return
        key = f"{alert.unit}|{alert.occurred_at.isoformat()}|{alert.key}|{alert.message_id}"
        await self.store.put(DIGEST, key, alert.to_json())
        await self.audit({"step": "held", "alert": alert.key, "unit": alert.unit, "detail": "advisory digest"})

    async def post_digest(self) -> None:
        """Post the advisory alerts collected since the last digest, one message per unit (the 15-minute job)."""
        by_unit: dict[str, list[tuple[str, dict[str, Any]]]] = {}
        for key, alert in await self.store.scan(DIGEST):
            by_unit.setdefault(alert["unit"], []).append((key, alert))
        for unit, items in by_unit.items():
            locale = self.locale_for(unit)
            zone = self.zone_for(unit)
            lines = [
                text(
                    locale,
                    "digest.line",
                    time=local_time(a["occurred_at"], zone),
                    room=a["room"] or "-",
                    bed=a["bed"] or "-",
                    event=event_words(a["event_code"], a.get("event_text", ""), locale),
                )
                for _key, a in items
            ]
            digest_id = hashlib.sha256("\n".join(k for k, _ in items).encode()).hexdigest()[:24]
            card = notice_card(text(locale, "digest.title", unit=unit), "", colour="accent", lines=lines)
            reply = Reply(text=text(locale, "digest.title", unit=unit), card=card, skill="alerts")
            await self.notifier.post(f"unit:{unit}", reply, key=f"alerts.digest:{digest_id}", priority=Priority.BULK)
            for key, _ in items:
                await self.store.delete(DIGEST, key)
            await self.audit({"step": "posted", "unit": unit, "detail": "advisory digest", "count": len(items)})

    async def _heartbeat(self, alert: Alert) -> None:
        now = self.clock.now()
        interval = alert.interval_s or self.settings.heartbeat_interval_s
        link = await self.store.get(LINKS, alert.source) or {}
        due = now + timedelta(seconds=interval * self.settings.silence_factor)
        await self.timers.schedule_at(TIMER_LINK, alert.source, due, {})
        if link.get("down"):
            locale = self.locale_for(link.get("unit") or alert.unit)
            restored = text(locale, "link.restored", source=alert.source, time=local_time(now.isoformat(), self.zone))
            for ref in link.get("refs", []):
                await self.notifier.update(ref, Reply(text=restored, card=notice_card(restored, "", colour="good")))
            await self.audit({"step": "link restored", "source": alert.source, "unit": link.get("unit", "")})
        unit = alert.unit or link.get("unit", "")
        await self.store.put(
            LINKS,
            alert.source,
            {"unit": unit, "interval_s": interval, "last_seen": now.isoformat(), "down": False, "refs": []},
        )

    async def on_link_silence(self, event: TimerEvent) -> None:
        """No heartbeat for `silence_factor` intervals: a technical alert to the unit and biomedical engineering."""
        link = await self.store.get(LINKS, event.key)
        if link is None or link.get("down"):
            return
        silent = self.settings.silence_factor * int(link["interval_s"])
        if datetime.fromisoformat(link["last_seen"]) + timedelta(seconds=silent) > self.clock.now():
            return  # a heartbeat came in after this timer was due; its own timer is pending
        unit = link.get("unit", "")
        locale = self.locale_for(unit) if unit else self.settings.locale
        title = text(locale, "link.title", source=event.key)
        body = text(locale, "link.body", source=event.key, seconds=silent)
        reply = Reply(text=title, card=notice_card(title, body), skill="alerts")
        targets = [t for t in (f"unit:{unit}" if unit else "", self.settings.biomed_target) if t]
        refs = [
            await self.notifier.post(
                target, reply, key=f"alerts.link:{event.key}:{link['last_seen']}:{target}", priority=Priority.HIGH
            )
            for target in targets
        ]
        await self.store.put(LINKS, event.key, {**link, "down": True, "refs": refs})
        await self.audit({"step": "link down", "source": event.key, "unit": unit, "targets": targets})

    async def purge(self) -> None:
        """Forget applied reports and ended alerts older than the retention (the de-duplication window)."""
        horizon = self.clock.now() - timedelta(days=self.settings.retention_days)
        for key, entry in await self.store.scan(INBOX):
            if entry["done"] and datetime.fromisoformat(entry["received_at"]) < horizon:
                await self.store.delete(INBOX, key)
        for key, record in await self.store.scan(ALERTS):
            ended = record.get("ended_at")
            if ended and datetime.fromisoformat(ended) < horizon:
                await self.store.delete(ALERTS, key)


async def audit_events(store: Store, *, since: datetime, unit: str | None = None) -> list[dict[str, Any]]:
    """Audit steps at or after `since` (aware), optionally of one unit, oldest first."""
    found: list[dict[str, Any]] = []
    after = 0
    while True:
        page = await store.read(AUDIT, after=after, limit=1000)
        for sequence, event in page:
            after = sequence
            if datetime.fromisoformat(event["at"]) >= since and (unit is None or event.get("unit") == unit):
                found.append({"seq": sequence, **event})
        if len(page) < 1000:
            return found


def _priority(alarm_priority: str) -> Priority:
    """High-priority alarms overtake everything in the outbox; the others come right after."""
    return Priority.URGENT if alarm_priority == "PH" else Priority.HIGH


def _new_record(alert: Alert, status: str, now: datetime) -> dict[str, Any]:
    return {
        "key": alert.key,
        "alert": alert.to_json(),
        "status": status,
        "opened_at": now.astimezone(UTC).isoformat(),
        "posted_at": None,
        "ended_at": None,
        "message_ref": None,
        "escalation_refs": [],
        "accepted": None,
        "declined": [],
        "level": 0,
        "messages": [alert.message_id],
    }


def _merge(record: Mapping[str, Any], alert: Alert) -> dict[str, Any]:
    """A later phase of the same alert: new phase, state and reading; where it is stays as first reported."""
    previous = record["alert"]
    latest = alert.to_json()
    for place in ("unit", "room", "bed", "device"):
        latest[place] = latest[place] or previous[place]
    latest["priority"] = previous["priority"] if alert.ends else latest["priority"]
    messages = [*record["messages"], alert.message_id][-_KEEP_MESSAGE_IDS:]
    return {**record, "alert": latest, "messages": messages}


def _target(template: str, unit_id: str, unit: Unit | None) -> str:
    """A level's target with {unit} and {escalation_target} filled in; "" when the unit has no such target."""
    target = str(unit.options.get("escalation_target", "")) if unit else ""
    if "{escalation_target}" in template and not target:
        return ""
    return template.replace("{unit}", unit_id).replace("{escalation_target}", target)
