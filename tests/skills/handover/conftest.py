"""A hospital in memory for the handover and broadcast skills: units in two zones, staff, and a privacy scan.

Every test that uses `world` ends with a scan of what it produced: channel posts, channel replies and logs must not
contain the patient names or numbers the tests use, and every card must be a valid Adaptive Card 1.5.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from skills.core.fakes import ManualClock, ManualTimers, MemoryStore, RecordingNotifier, RecordingTurn, StaticDirectory
from skills.core.ports import StaffMember, Unit
from skills.core.skill import Context
from skills.core.types import Card, Conversation, ConversationKind, Message, Reply, User
from tests.manifests.adaptive_card_schema import validate_card

# Patient identifiers the suite writes into notes; none may reach a channel, a log or a model.
PATIENT_NAMES = ("김민수", "Jane Roe")
PATIENT_NUMBERS = ("12345678", "900101-1234567", "010-1234-5678")
SNAPSHOTS = Path(__file__).parent / "snapshots"

UNITS = (
    Unit(
        id="7W",
        name="Ward 7 West",
        timezone="Asia/Seoul",
        shifts=("07:00", "15:00", "23:00"),
        options={"language": "en"},
    ),
    Unit(id="ICU", name="Medical ICU", timezone="Asia/Seoul", shifts=("07:00", "19:00"), options={"language": "ko"}),
    Unit(
        id="NY4",
        name="New York 4",
        timezone="America/New_York",
        shifts=("07:00", "15:00", "23:00"),
        handover_lead_minutes=15,
        options={"language": "en", "beds": ["1", "2"]},
    ),
)
STAFF = (
    StaffMember("aad-nurse", "Park Nurse", frozenset({"nurse"}), frozenset({"7W"})),
    StaffMember("aad-charge", "Lee Charge", frozenset({"nurse", "charge"}), frozenset({"7W"})),
    StaffMember("aad-manager", "Choi Manager", frozenset({"manager"}), frozenset({"7W", "ICU"})),
    StaffMember("aad-icu", "Kang ICU", frozenset({"nurse"}), frozenset({"ICU"})),
)


def kst(year: int, month: int, day: int, hour: int, minute: int = 0) -> datetime:
    """A Seoul wall-clock time as UTC (Seoul is UTC+9 all year)."""
    from zoneinfo import ZoneInfo

    return datetime(year, month, day, hour, minute, tzinfo=ZoneInfo("Asia/Seoul")).astimezone(UTC)


def user(member_id: str = "aad-nurse") -> User:
    member = next(s for s in STAFF if s.aad_object_id == member_id)
    return User(id=f"29:{member_id}", name=member.name, aad_object_id=member_id, roles=member.roles, units=member.units)


def message(
    text: str = "",
    *,
    who: str = "aad-nurse",
    kind: ConversationKind = ConversationKind.PERSONAL,
    value: Mapping[str, Any] | None = None,
    locale: str = "en-US",
    message_id: str = "m1",
    sender: User | None = None,
) -> Message:
    return Message(
        id=message_id,
        text=text,
        user=sender or user(who),
        conversation=Conversation(id=f"conv-{kind.value}", kind=kind),
        locale=locale,
        value=value,
    )


class World:
    """The ports of one test plus everything the skills produced through them."""

    def __init__(self) -> None:
        self.store = MemoryStore()
        self.clock = ManualClock(kst(2026, 11, 29, 20, 0))
        self.notifier = RecordingNotifier()
        self.timers = ManualTimers()
        self.directory = StaticDirectory(UNITS, STAFF)
        self.turns: list[tuple[Message, RecordingTurn]] = []

    def context(self, **overrides: Any) -> Context:
        ports: dict[str, Any] = {
            "store": self.store,
            "clock": self.clock,
            "notifier": self.notifier,
            "directory": self.directory,
            "timers": self.timers,
        }
        ports.update(overrides)
        return Context(**ports)

    def turn(self, for_message: Message) -> RecordingTurn:
        turn = RecordingTurn()
        self.turns.append((for_message, turn))
        return turn

    def set_time(self, moment: datetime) -> None:
        self.clock.advance((moment - self.clock.now()).total_seconds())

    def public_output(self) -> list[str]:
        """Everything a channel's members (or a log reader) could see, as JSON text."""
        seen: list[str] = []
        for target, reply, _key in self.notifier.posts:
            if not target.startswith("user:"):
                seen.append(_dump(reply))
        refs = {key for target, _reply, key in self.notifier.posts if not target.startswith("user:")}
        seen += [_dump(reply) for ref, reply in self.notifier.updates if ref in refs]
        for sent, turn in self.turns:
            if sent.conversation.kind != ConversationKind.PERSONAL:
                seen += [_dump(r) for r in turn.replies] + [
                    json.dumps(c.content, ensure_ascii=False) for c in turn.refreshed
                ]
        return seen

    def all_cards(self) -> list[Card]:
        cards = [r.card for _t, r, _k in self.notifier.posts if r.card] + [
            r.card for _ref, r in self.notifier.updates if r.card
        ]
        for _m, turn in self.turns:
            cards += [r.card for r in turn.replies if r.card] + list(turn.refreshed)
        return cards


def _dump(reply: Reply) -> str:
    return json.dumps(
        {"text": reply.text, "card": dict(reply.card.content) if reply.card else None}, ensure_ascii=False
    )


@pytest.fixture
def world(caplog: pytest.LogCaptureFixture) -> Iterator[World]:
    caplog.set_level(logging.DEBUG)
    hospital = World()
    yield hospital
    logs = "\n".join(f"{r.getMessage()} {r.__dict__}" for r in caplog.records)
    for text in [*hospital.public_output(), logs]:
        for secret in PATIENT_NAMES + PATIENT_NUMBERS:
            assert secret not in text, f"patient identifier {secret!r} leaked into: {text[:300]}"
    for produced in hospital.all_cards():
        validate_card(dict(produced.content))


def snapshot(name: str, content: Mapping[str, Any]) -> None:
    """Compare a card's JSON with tests/.../snapshots/<name>.json (WARDLINE_UPDATE_SNAPSHOTS=1 rewrites it)."""
    path = SNAPSHOTS / f"{name}.json"
    text = json.dumps(content, ensure_ascii=False, indent=1, sort_keys=True) + "\n"
    if os.environ.get("WARDLINE_UPDATE_SNAPSHOTS") == "1" or not path.exists():
        SNAPSHOTS.mkdir(exist_ok=True)
        path.write_text(text, encoding="utf-8")
    assert path.read_text(encoding="utf-8") == text, f"card {name} changed; rerun with WARDLINE_UPDATE_SNAPSHOTS=1"
