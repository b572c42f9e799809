"""Handover and broadcast records on the real stores: two leaders post once; concurrent acknowledgements all count."""

from __future__ import annotations

import asyncio

from bot.storage import SqlStore
from skills.broadcast import Broadcasts
from skills.broadcast.service import BroadcastRequest
from skills.core.fakes import ManualClock, ManualTimers, RecordingNotifier, StaticDirectory
from skills.core.ports import StaffMember
from skills.core.skill import Context
from skills.core.types import Conversation, ConversationKind, Message, User
from skills.handover.service import POSTS, Handovers
from tests.bot.test_storage import store  # the SQLite and PostgreSQL store fixture
from tests.skills.handover.conftest import STAFF, UNITS, kst, message
from tests.skills.handover.test_form import filled

__all__ = ["store"]

NURSES = [StaffMember(f"aad-{n}", f"Nurse {n}", frozenset({"nurse"}), frozenset({"7W"})) for n in range(10)]


class _Turn:
    async def send(self, reply: object) -> None:
        return None

    async def refresh(self, card: object) -> None:
        return None


def context(store: SqlStore, clock: ManualClock, notifier: RecordingNotifier) -> Context:
    directory = StaticDirectory(UNITS, [*STAFF, *NURSES])
    return Context(store=store, clock=clock, notifier=notifier, directory=directory, timers=ManualTimers())


def press(value: dict[str, object], member: StaffMember, n: int) -> Message:
    sender = User(f"29:{member.aad_object_id}", member.name, member.aad_object_id, member.roles, member.units)
    return Message(f"m{n}", "", sender, Conversation("c", ConversationKind.CHANNEL), "en-US", value)


async def test_two_leaders_post_once_and_no_acknowledgement_is_lost(store: SqlStore) -> None:
    clock = ManualClock(kst(2026, 11, 29, 20, 0))
    notifier = RecordingNotifier()  # one outbox, as in production: the key makes a repeat post a no-op
    first, second = Handovers(context(store, clock, notifier)), Handovers(context(store, clock, notifier))
    for bed in range(1, 11):
        await first.on_save(message(value=filled(bed=str(bed))), _Turn())
    clock.advance(2.5 * 3600)
    await asyncio.gather(first.run_due("7W"), second.run_due("7W"), first.sweep(), second.sweep())
    assert len([p for p in notifier.posts if p[0] == "unit:7W"]) == 1
    acks = [
        first.on_ack(
            press(
                {"verb": "handover.ack", "unit": "7W", "shift": "2026-11-29/E", "scope": "beds", "beds": str(n + 1)},
                nurse,
                n,
            ),
            _Turn(),
        )
        for n, nurse in enumerate(NURSES)
    ]
    await asyncio.gather(*acks)
    state = await store.get(POSTS, "7W/2026-11-29/E")
    assert state is not None and state["status"] == "posted"
    assert sorted(state["acks"], key=int) == [str(n) for n in range(1, 11)]
    assert {a["name"] for a in state["acks"].values()} == {n.name for n in NURSES}


async def test_concurrent_broadcast_acknowledgements_all_count(store: SqlStore) -> None:
    notifier = RecordingNotifier()
    broadcasts = Broadcasts(context(store, ManualClock(kst(2026, 11, 29, 9, 0)), notifier))
    manager = User("29:m", "Choi Manager", "aad-manager", frozenset({"manager"}), frozenset({"7W"}))
    confirmation = await broadcasts.create(manager, BroadcastRequest(("7W", "ICU"), "Drill", True, None), "en")
    broadcast_id = confirmation.split()[1]
    await asyncio.gather(
        *(
            broadcasts.on_ack(press({"verb": "broadcast.ack", "id": broadcast_id, "unit": "7W"}, nurse, n), _Turn())
            for n, nurse in enumerate(NURSES)
        )
    )
    report = await broadcasts.report(broadcast_id)
    assert report["units"][0]["acknowledgements"] == 10 and not report["units"][1]["acknowledged"]
