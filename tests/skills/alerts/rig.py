"""A test rig for the alerts skill: the real desk over the port fakes, with a hand-moved clock and timers."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime
from typing import Any

from skills.alerts import create_skill
from skills.alerts.desk import AlertDesk, AlertSettings
from skills.alerts.hl7 import build_oru_r40
from skills.core.fakes import ManualClock, ManualTimers, MemoryStore, RecordingNotifier, RecordingTurn, StaticDirectory
from skills.core.ports import StaffMember, Store, Unit
from skills.core.skill import Context, Outcome, Skill
from skills.core.types import Conversation, ConversationKind, Message, User

START = datetime(2026, 11, 30, 7, 0, tzinfo=UTC)  # 16:00 in Seoul
UNITS = [
    Unit("7W", name="Ward 7 West", options={"escalation_target": "unit:RRT"}),
    Unit("5E", name="Ward 5 East", options={"locale": "ko", "alerts_holdoff_s": {"PM": 0}}),
]
STAFF = [
    StaffMember("aad-nurse", "Kim Nurse", frozenset({"nurse"}), frozenset({"7W"})),
    StaffMember("aad-other", "Lee Nurse", frozenset({"nurse"}), frozenset({"7W"})),
    StaffMember("aad-charge", "Park Charge", frozenset({"nurse", "charge"}), frozenset({"7W"})),
    StaffMember("aad-5e", "Choi Nurse", frozenset({"nurse"}), frozenset({"5E"})),
]
_ids = itertools.count(1)


def alarm(
    *,
    priority: str = "PH",
    phase: str = "start",
    state: str = "active",
    alert_id: str = "A1",
    message_id: str | None = None,
    unit: str = "7W",
    event_code: str = "MDC_EVT_ECG_V_TACHY",
    alert_type: str = "SP",
    at: datetime = START,
) -> str:
    return build_oru_r40(
        source="GW1",
        message_id=message_id or f"M{next(_ids)}",
        alert_id=alert_id,
        unit=unit,
        room="712",
        bed="B",
        event_code=event_code,
        event_text="VTach",
        priority=priority,
        phase=phase,
        state=state,
        occurred_at=at,
        alert_type=alert_type,
        value="160 bpm",
    )


class Rig:
    """One replica of the alerts skill; `restart()` builds a fresh one over the same store, timers and outbox."""

    def __init__(self, store: Store | None = None, settings: AlertSettings | None = None) -> None:
        self.store: Store = store or MemoryStore()
        self.clock = ManualClock(START)
        self.notifier = RecordingNotifier()
        self.timers = ManualTimers()
        self.directory = StaticDirectory(UNITS, STAFF)
        self.settings = settings or AlertSettings(biomed_target="unit:BIOMED")
        self.desk, self.skill = self._build()

    def _build(self) -> tuple[AlertDesk, Skill]:
        desk = AlertDesk(self.store, self.clock, self.notifier, self.timers, self.directory, self.settings)
        context = Context(store=self.store, clock=self.clock)
        return desk, create_skill(context, desk)

    async def restart(self) -> None:
        await self.desk.stop()
        self.desk, self.skill = self._build()
        await self.desk.start()
        await self.desk.drain()

    async def send(self, text: str) -> Outcome:
        outcome = await self.desk.receive_hl7(text)
        if outcome.after_reply is not None:
            await outcome.after_reply()
        await self.desk.drain()
        return outcome

    async def tick(self, seconds: float) -> None:
        """Move the clock and fire every durable timer that came due, as the leader would."""
        self.clock.advance(seconds)
        handlers = {handler.kind: handler.handler for handler in self.skill.timers}
        for event in self.timers.due(self.clock.now()):
            await handlers[event.kind](event)
        await self.desk.drain()

    async def press(
        self, verb: str, who: str, alert_key: str, *, name: str = "", channel: str | None = None
    ) -> RecordingTurn:
        member = next((m for m in STAFF if m.aad_object_id == who), None)
        user = User(
            id=f"29:{who}",
            name=name or (member.name if member else who),
            aad_object_id=who,
            roles=member.roles if member else frozenset(),
            units=member.units if member else frozenset(),
        )
        message = Message(
            id=f"act-{next(_ids)}",
            text="",
            user=user,
            conversation=Conversation("19:channel", ConversationKind.CHANNEL, channel=channel),
            value={"verb": verb, "alert": alert_key},
        )
        turn = RecordingTurn()
        action = next(a for a in self.skill.card_actions if a.verb == verb)
        await action.handler(message, turn)
        return turn

    async def audit(self) -> list[dict[str, Any]]:
        return [event for _, event in await self.store.read("alerts.audit")]

    async def steps(self) -> list[str]:
        return [event["step"] for event in await self.audit()]

    def card_text(self, ref: str) -> str:
        import json

        card = self.notifier.latest(ref).card
        return json.dumps(card.content if card else {}, ensure_ascii=False)


KEY = "GW1|A1&GW1&0000000000000001&EUI-64"
