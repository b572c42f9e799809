"""Manager broadcasts: parsing, role refusal, fan-out to 50 units, acknowledgements, scheduling, reminders, reports."""

from __future__ import annotations

import csv
import io
import time

from skills.broadcast import Broadcasts, create_skill, parse, report_csv
from skills.broadcast.service import ITEMS, SEND_TIMER
from skills.broadcast.texts import TEXTS
from skills.core.fakes import StaticDirectory
from skills.core.ports import Priority, Unit
from skills.core.router import Router
from skills.core.types import ConversationKind, User
from tests.skills.handover.conftest import STAFF, UNITS, World, kst, message, snapshot


def test_every_text_exists_in_both_languages() -> None:
    assert set(TEXTS["en"]) == set(TEXTS["ko"])


def test_parse() -> None:
    request = parse("all ack: Fire drill at 14:00")
    assert request is not None and request.targets == ("all",) and request.ack and request.at is None
    assert request.text == "Fire drill at 14:00"
    request = parse("7W, icu ack at 14:00: Drill")
    assert request is not None and request.targets == ("7W", "icu") and request.ack
    assert request.at is not None and (request.at.hour, request.at.minute) == (14, 0)
    request = parse("전체 확인: 소방 훈련")
    assert request is not None and request.targets == ("all",) and request.ack
    for bad in ("7W", "7W:", ": text", "7W at 25:00: x", "7W lol: x"):
        assert parse(bad) is None, bad


async def test_only_managers_broadcast_and_nothing_is_posted_otherwise(world: World) -> None:
    router = Router([create_skill(world.context())])
    for text in ("broadcast all: Fire drill", "공지 전체: 소방 훈련"):
        sent = message(text, who="aad-charge")
        turn = world.turn(sent)
        await router.dispatch(sent, turn)
        assert "manager" in turn.replies[0].text
    sent = message("broadcast all: Fire drill", who="aad-nurse")
    turn = world.turn(sent)
    await Broadcasts(world.context()).on_command(sent, turn)  # even when called directly
    assert "manager" in turn.replies[0].text
    assert world.notifier.posts == [] and await world.store.scan(ITEMS) == []


async def test_unknown_units_send_nothing(world: World) -> None:
    sent = message("broadcast 7W,9Z: Hello", who="aad-manager")
    turn = world.turn(sent)
    await Broadcasts(world.context()).on_command(sent, turn)
    assert "9Z" in turn.replies[0].text and world.notifier.posts == []


async def test_fan_out_to_fifty_units_then_acknowledge_remind_and_report(world: World) -> None:
    units = [Unit(id=f"U{n:02d}") for n in range(1, 51)]
    world.directory = StaticDirectory(units, STAFF)
    broadcasts = Broadcasts(world.context())
    sent = message("broadcast all ack: Fire drill at 14:00", who="aad-manager")
    turn = world.turn(sent)
    started = time.perf_counter()
    await broadcasts.on_command(sent, turn)
    elapsed = time.perf_counter() - started
    assert elapsed < 2.0, f"fan-out to 50 units took {elapsed:.2f}s in memory"
    assert turn.replies[0].text == "Broadcast B1 sent to 50 units, asking for acknowledgement."
    assert [p[0] for p in world.notifier.posts] == [f"unit:U{n:02d}" for n in range(1, 51)]
    assert len({p[2] for p in world.notifier.posts}) == 50
    assert set(world.notifier.priorities.values()) == {Priority.BULK}
    card = world.notifier.posts[6][1].card
    assert card is not None
    snapshot("broadcast_card_en", card.content)

    outsider = message(value={"verb": "broadcast.ack", "id": "B1", "unit": "U07"}, kind=ConversationKind.CHANNEL)
    turn = world.turn(outsider)
    await broadcasts.on_ack(outsider, turn)
    assert "only staff on U07" in turn.replies[0].text
    world.clock.advance(120)
    press = message(
        value={"verb": "broadcast.ack", "id": "B1", "unit": "U07"},
        sender=User("29:u07", "Han U07", "aad-u07", frozenset({"nurse"}), frozenset({"U07"})),
        kind=ConversationKind.CHANNEL,
    )
    turn = world.turn(press)
    await broadcasts.on_ack(press, turn)
    await broadcasts.on_ack(press, world.turn(press))  # a double tap counts once
    assert "Acknowledged by Han U07 at 20:02" in str(turn.refreshed[0].content)
    assert "Acknowledged by Han U07" in str(world.notifier.latest("broadcast:B1:U07").card.content)  # type: ignore[union-attr]

    status = message("broadcast status", who="aad-manager")
    turn = world.turn(status)
    await broadcasts.on_command(status, turn)
    assert "acknowledged 1/50" in turn.replies[0].text and "U01" in turn.replies[0].text

    remind = message("broadcast remind B1", who="aad-manager")
    turn = world.turn(remind)
    await broadcasts.on_command(remind, turn)
    reminders = [p for p in world.notifier.posts if p[2].startswith("broadcast.remind:B1:")]
    assert len(reminders) == 49 and "unit:U07" not in {p[0] for p in reminders}
    await broadcasts.on_command(remind, world.turn(remind))  # a second round is a second nudge, not a duplicate
    assert len([p for p in world.notifier.posts if p[2].startswith("broadcast.remind:B1:")]) == 98

    report = await broadcasts.report("B1")
    assert report["ack_requested"] and report["reminders"] == 2
    rows = {r["unit"]: r for r in report["units"]}
    assert rows["U07"]["acknowledged_by"] == "Han U07" and not rows["U08"]["acknowledged"]
    parsed = list(csv.DictReader(io.StringIO(report_csv(report))))
    assert len(parsed) == 50 and parsed[6]["acknowledged"] == "True"


async def test_scheduled_broadcast_waits_for_its_timer_and_sends_once(world: World) -> None:
    broadcasts = Broadcasts(world.context())
    world.set_time(kst(2026, 11, 29, 15, 0))
    sent = message("broadcast 7W,ICU at 14:00: 내일 소방 훈련이 있습니다", who="aad-manager", locale="ko-KR")
    turn = world.turn(sent)
    await broadcasts.on_command(sent, turn)
    assert "2026-11-30 14:00" in turn.replies[0].text and world.notifier.posts == []
    (timer,) = world.timers.pending.values()
    assert timer.kind == SEND_TIMER and timer.due == kst(2026, 11, 30, 14, 0)
    world.set_time(kst(2026, 11, 30, 14, 0))
    for event in world.timers.due(world.clock.now()):
        await broadcasts.on_send_timer(event)
        await broadcasts.on_send_timer(event)  # a timer fired twice still sends once
    assert [p[0] for p in world.notifier.posts] == ["unit:7W", "unit:ICU"]
    assert "공지" in str(world.notifier.posts[0][1].card.content)  # type: ignore[union-attr]
    assert "Action.Execute" not in str(world.notifier.posts[0][1].card.content)  # type: ignore[union-attr]


async def test_units_in_the_fixture_are_the_handover_ones(world: World) -> None:
    assert [u.id for u in world.directory.units()] == [u.id for u in UNITS]
