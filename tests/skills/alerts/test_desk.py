"""Alarm handling over the port fakes: one card per alarm, hold-off, escalation across restarts, one owner."""

from __future__ import annotations

import asyncio

from skills.alerts.desk import ALERTS, INBOX, AlertSettings, may_respond
from skills.core.fakes import StaticDirectory
from skills.core.ports import Priority
from skills.core.types import User
from tests.skills.alerts.rig import KEY, STAFF, UNITS, Rig, alarm


async def test_start_continue_end_is_one_card_updated_in_place() -> None:
    rig = Rig()
    assert (await rig.send(alarm(phase="start"))).accepted
    [(target, reply, ref)] = rig.notifier.posts
    assert target == "unit:7W"
    assert rig.notifier.priorities[ref] == Priority.URGENT
    assert "VTach" in rig.card_text(ref) and "Ventricular tachycardia" in rig.card_text(ref)
    assert "Active - not yet accepted" in rig.card_text(ref)
    assert reply.text == "HIGH · Ventricular tachycardia · 7W 712 B"

    await rig.send(alarm(phase="continue"))
    await rig.tick(5)
    await rig.send(alarm(phase="end", state="inactive"))
    assert len(rig.notifier.posts) == 1
    assert [r for r, _ in rig.notifier.updates] == [ref, ref]
    assert "Ended 16:00 (nobody accepted)" in rig.card_text(ref)  # 07:00:05 UTC is 16:00 in Seoul
    assert '"actions"' not in rig.card_text(ref)
    assert rig.timers.pending == {}  # the escalation was cancelled
    steps = await rig.steps()
    assert steps.count("received") == 3 and steps.count("ack sent") == 3
    assert [s for s in steps if s in ("posted", "updated", "ended")] == ["posted", "updated", "ended"]


async def test_exact_duplicate_is_acknowledged_and_ignored() -> None:
    rig = Rig()
    text = alarm(message_id="SAME")
    assert (await rig.send(text)).accepted
    assert (await rig.send(text)).accepted
    assert len(rig.notifier.posts) == 1 and rig.notifier.updates == []
    assert (await rig.steps()).count("duplicate") == 1


async def test_medium_alarm_is_held_and_ending_inside_the_hold_off_posts_nothing() -> None:
    rig = Rig()
    await rig.send(alarm(priority="PM"))
    assert rig.notifier.posts == []
    await rig.tick(9)
    await rig.send(alarm(priority="PM", phase="end", state="inactive"))
    await rig.tick(60)
    assert rig.notifier.posts == []
    record = await rig.store.get(ALERTS, KEY)
    assert record is not None and record["status"] == "suppressed"
    events = await rig.audit()
    assert [e["step"] for e in events if e["step"] in ("held", "ended")] == ["held", "ended"]
    assert [e.get("detail") for e in events if e["step"] == "ended"] == ["inside hold-off, not posted"]


async def test_medium_alarm_still_on_after_its_hold_off_is_posted_with_high_priority() -> None:
    rig = Rig()
    await rig.send(alarm(priority="PM"))
    await rig.tick(9.9)
    assert rig.notifier.posts == []
    await rig.tick(0.1)
    [(target, _, ref)] = rig.notifier.posts
    assert target == "unit:7W" and rig.notifier.priorities[ref] == Priority.HIGH


async def test_unit_override_of_the_hold_off() -> None:
    rig = Rig()
    await rig.send(alarm(priority="PM", unit="5E"))
    assert [t for t, _, _ in rig.notifier.posts] == ["unit:5E"]
    assert "중간" in rig.card_text(rig.notifier.posts[0][2])  # 5E reads its cards in Korean


async def test_escalation_timeline_and_a_restart_neither_skips_nor_repeats_a_level() -> None:
    rig = Rig()
    await rig.send(alarm(priority="PH"))
    await rig.tick(29)
    assert len(rig.notifier.posts) == 1
    await rig.tick(1)
    assert [t for t, _, _ in rig.notifier.posts] == ["unit:7W", "role:charge@7W"]
    assert "not accepted yet" in rig.notifier.posts[1][1].text

    await rig.restart()  # a new process over the same store and durable timers
    assert len(rig.notifier.posts) == 2
    # the level-1 timer firing again (a replay after a crash) must not post twice
    await rig.desk.escalate(KEY, 1, reason="replayed")
    assert len(rig.notifier.posts) == 2

    await rig.tick(29)
    assert len(rig.notifier.posts) == 2
    await rig.tick(1)
    assert [t for t, _, _ in rig.notifier.posts] == ["unit:7W", "role:charge@7W", "unit:RRT"]
    await rig.tick(600)
    assert len(rig.notifier.posts) == 3
    assert [e["level"] for e in await rig.audit() if e["step"] == "escalated"] == [1, 2]


async def test_accept_stops_escalation_and_shows_the_owner_everywhere() -> None:
    rig = Rig()
    await rig.send(alarm(priority="PH"))
    await rig.tick(30)
    turn = await rig.press("alerts.accept", "aad-nurse", KEY)
    [card] = turn.refreshed
    assert "Accepted by Kim Nurse at 16:00" in str(card.content)
    assert "actions" not in card.content
    main, escalation = (ref for _, _, ref in rig.notifier.posts)
    assert "Accepted by Kim Nurse" in rig.card_text(main)
    assert "Accepted by Kim Nurse" in rig.card_text(escalation)
    await rig.tick(600)
    assert len(rig.notifier.posts) == 2
    await rig.send(alarm(phase="end", state="inactive"))
    assert "Ended 16:10" in rig.card_text(main) and "Accepted by Kim Nurse" in rig.card_text(main)
    actors = {e["step"]: e["actor"] for e in await rig.audit()}
    assert actors["accepted"] == "aad-nurse"


async def test_false_alarm_is_recorded_as_such() -> None:
    rig = Rig()
    await rig.send(alarm())
    turn = await rig.press("alerts.false_alarm", "aad-charge", KEY)
    assert "false alarm by Park Charge" in str(turn.refreshed[0].content)
    assert "false alarm" in await rig.steps()


async def test_decline_escalates_at_once() -> None:
    rig = Rig()
    await rig.send(alarm(priority="PH"))
    await rig.tick(3)
    turn = await rig.press("alerts.decline", "aad-nurse", KEY)
    assert [t for t, _, _ in rig.notifier.posts] == ["unit:7W", "role:charge@7W"]
    assert "Declined by Kim Nurse" in str(turn.refreshed[0].content)
    await rig.tick(57)  # level 2 stays at 60 s after the post
    assert [t for t, _, _ in rig.notifier.posts][-1] == "unit:RRT"
    assert [e.get("reason") for e in await rig.audit() if e["step"] == "escalated"] == ["declined", "not accepted"]


async def test_two_accepts_at_once_have_one_winner() -> None:
    rig = Rig()
    await rig.send(alarm())
    first, second = await asyncio.gather(
        rig.press("alerts.accept", "aad-nurse", KEY), rig.press("alerts.accept", "aad-other", KEY)
    )
    record = await rig.store.get(ALERTS, KEY)
    assert record is not None
    winner = record["accepted"]["name"]
    assert winner in ("Kim Nurse", "Lee Nurse")
    for turn in (first, second):
        assert f"Accepted by {winner}" in str(turn.refreshed[0].content)
    assert (await rig.steps()).count("accepted") == 1


async def test_staff_of_another_unit_are_refused_politely() -> None:
    rig = Rig()
    await rig.send(alarm())
    turn = await rig.press("alerts.accept", "aad-5e", KEY)
    assert turn.refreshed == []
    assert "Only staff of unit 7W" in turn.replies[0].text
    record = await rig.store.get(ALERTS, KEY)
    assert record is not None and record["accepted"] is None


async def test_the_team_an_alarm_was_escalated_to_may_accept_it() -> None:
    rig = Rig()
    await rig.send(alarm(priority="PH"))
    early = await rig.press("alerts.accept", "aad-rrt-doctor", KEY, name="Dr Yoon", channel="unit:RRT")
    assert "Only staff of unit 7W" in early.replies[0].text  # not escalated there yet
    await rig.tick(30)
    await rig.tick(30)
    assert rig.notifier.posts[-1][0] == "unit:RRT"
    turn = await rig.press("alerts.accept", "aad-rrt-doctor", KEY, name="Dr Yoon", channel="unit:RRT")
    assert "Accepted by Dr Yoon" in str(turn.refreshed[0].content)


def test_role_logic() -> None:
    directory = StaticDirectory(UNITS, STAFF)
    assert may_respond(User("x", aad_object_id="aad-nurse"), "7W", directory)  # listed on the unit
    assert not may_respond(User("x", aad_object_id="aad-5e"), "7W", directory)
    assert may_respond(User("x", units=frozenset({"7W"})), "7W", directory)  # filled in by the host
    assert may_respond(User("x", roles=frozenset({"admin"})), "7W", directory)
    assert not may_respond(User("x", aad_object_id="stranger"), "7W", directory)
    assert may_respond(User("x"), "7W", None)  # no directory: the channel's members are the gate


async def test_a_crash_after_the_ack_is_repaired_at_start_up() -> None:
    rig = Rig()
    outcome = await rig.desk.receive_hl7(alarm())  # stored and acknowledged ...
    assert outcome.accepted
    await rig.desk.stop()  # ... and the process dies before applying it
    assert rig.notifier.posts == []
    entries = await rig.store.scan(INBOX)
    assert [e["done"] for _, e in entries] == [False]
    await rig.restart()
    assert len(rig.notifier.posts) == 1
    await rig.restart()
    assert len(rig.notifier.posts) == 1  # applied once


async def test_advisories_go_to_a_digest() -> None:
    rig = Rig()
    await rig.send(alarm(alert_type="SA", priority="PL", alert_id="S1", event_code="MDC_EVT_BATT_LO"))
    await rig.send(alarm(alert_type="SA", priority="PL", alert_id="S2", event_code="MDC_EVT_INFUS_NEAR_END"))
    await rig.send(alarm(alert_type="SA", priority="PL", alert_id="S2", phase="continue"))  # not listed twice
    assert rig.notifier.posts == []
    [job] = [j for j in rig.skill.jobs if j.id == "alerts.digest"]
    assert job.interval_seconds == 900
    await job.func()
    [(target, _, ref)] = rig.notifier.posts
    assert target == "unit:7W" and rig.notifier.priorities[ref] == Priority.BULK
    assert "Battery low" in rig.card_text(ref) and "Infusion near end" in rig.card_text(ref)
    assert rig.card_text(ref).count("room 712 bed B") == 2
    await job.func()
    assert len(rig.notifier.posts) == 1


async def test_heartbeat_silence_raises_a_technical_alert_and_its_return_clears_it() -> None:
    rig = Rig(settings=AlertSettings(biomed_target="unit:BIOMED", heartbeat_interval_s=20))
    beat = {"priority": "PN", "event_code": "MDC_EVT_STAT_WATCHDOG", "alert_id": "WD"}
    await rig.send(alarm(**beat))  # type: ignore[arg-type]
    await rig.tick(50)
    await rig.send(alarm(**beat))  # type: ignore[arg-type]
    await rig.tick(59)
    assert rig.notifier.posts == []  # heartbeats are never posted
    await rig.tick(1)
    assert sorted(t for t, _, _ in rig.notifier.posts) == ["unit:7W", "unit:BIOMED"]
    assert "Device link down: GW1" in rig.notifier.posts[0][1].text
    await rig.send(alarm(**beat))  # type: ignore[arg-type]
    assert {ref for ref, _ in rig.notifier.updates} == {ref for _, _, ref in rig.notifier.posts}
    assert "restored" in rig.notifier.updates[-1][1].text
    assert [s for s in await rig.steps() if s.startswith("link")] == ["link down", "link restored"]


async def test_alerts_command_lists_open_alarms_of_the_unit() -> None:
    from skills.core.fakes import RecordingTurn
    from skills.core.types import Conversation, ConversationKind, Message

    rig = Rig()
    await rig.send(alarm(alert_id="A1"))
    await rig.send(alarm(alert_id="A2", priority="PM"))  # still held: not listed
    await rig.press("alerts.accept", "aad-nurse", KEY)
    [command] = rig.skill.commands
    turn = RecordingTurn()
    user = User("29:x", name="x", units=frozenset({"7W"}))
    channel = Conversation("19:c", ConversationKind.CHANNEL, channel="unit:7W")
    await command.handler(Message("1", "alerts", user, channel), turn)
    [reply] = turn.replies
    assert reply.text.splitlines() == [
        "Open alarms in 7W:",
        "- HIGH Ventricular tachycardia - room 712 bed B, since 16:00 (accepted by Kim Nurse)",
    ]
    turn = RecordingTurn()
    await command.handler(Message("2", "alerts 5E", user, channel, locale="ko-KR"), turn)
    assert turn.replies[0].text == "5E 병동에 진행 중인 알람이 없습니다."
