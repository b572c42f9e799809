"""The scheduled handover on the unit's clock: one card per unit, restarts, acknowledgements, details, reminders."""

from __future__ import annotations

import json
from typing import Any

from skills.core.fakes import ScriptedLLM, StaticDirectory
from skills.core.ports import Unit
from skills.core.types import ConversationKind
from skills.handover.notes import AUDIT
from skills.handover.service import ACK_TIMER, POSTS, Handovers
from tests.skills.handover.conftest import PATIENT_NAMES, PATIENT_NUMBERS, World, kst, message, snapshot
from tests.skills.handover.test_form import filled, save


async def write_notes(world: World, handovers: Handovers) -> None:
    await save(world, handovers, filled(bed="12"))
    await save(
        world,
        handovers,
        filled(
            bed="3",
            severity="unstable",
            summary="GI bleed, Jane Roe, 010-1234-5678",
            patient="Jane Roe",
            record_number="900101-1234567",
        ),
    )
    await save(
        world,
        handovers,
        filled(
            bed="20",
            severity="stable",
            summary="Ready for discharge",
            action_1_item="",
            action_2_item="",
            patient="",
            record_number="",
        ),
    )


async def press(
    world: World,
    handovers: Handovers,
    verb: str,
    who: str = "aad-nurse",
    kind: ConversationKind = ConversationKind.CHANNEL,
    **data: Any,
) -> Any:
    sent = message(
        value={"verb": verb, "unit": "7W", "shift": "2026-11-29/E", **data},
        who=who,
        kind=kind,
        message_id=f"press-{len(world.turns)}",
    )
    turn = world.turn(sent)
    await getattr(handovers, {"handover.ack": "on_ack", "handover.details": "on_details"}[verb])(sent, turn)
    return turn


async def test_the_job_posts_one_summary_card_sickest_first(world: World) -> None:
    handovers = Handovers(world.context())
    await write_notes(world, handovers)
    jobs = {job.id: job for job in handovers.jobs()}
    world.set_time(kst(2026, 11, 29, 22, 30))
    await jobs["handover.post.7W.N"].func()
    await jobs["handover.post.7W.N"].func()  # a second firing (or a second replica) posts nothing new
    await handovers.sweep()
    posts = [p for p in world.notifier.posts if p[0] == "unit:7W"]
    assert len(posts) == 1
    _target, reply, key = posts[0]
    assert key == "handover:7W/2026-11-29/E"
    assert reply.card is not None
    snapshot("handover_summary_en", reply.card.content)
    body = str(reply.card.content)
    assert body.index("'3'") < body.index("'12'") < body.index("'20'")  # unstable, watcher, stable
    assert "unstable 1, watcher 1, stable 1" in body
    state = await world.store.get(POSTS, "7W/2026-11-29/E")
    assert state is not None and state["status"] == "posted" and not state["late"]
    assert (ACK_TIMER, "7W/2026-11-29/E") in world.timers.pending
    assert world.timers.pending[(ACK_TIMER, "7W/2026-11-29/E")].due == kst(2026, 11, 29, 23, 30)


async def test_a_unit_without_notes_gets_a_reminder_and_an_unrecorded_card(world: World) -> None:
    handovers = Handovers(world.context())
    jobs = {job.id: job for job in handovers.jobs()}
    world.set_time(kst(2026, 11, 29, 22, 0))
    await jobs["handover.remind.7W.N"].func()
    await jobs["handover.remind.NY4.N"].func()  # fired hours late (New York is mid-morning): no stale nag
    reminders = [p for p in world.notifier.posts if p[0].startswith("role:charge@")]
    assert [p[0] for p in reminders] == ["role:charge@7W"]
    assert "22:30" in reminders[0][1].text
    world.set_time(kst(2026, 11, 29, 22, 30))
    await handovers.run_due("7W")
    card = str(world.notifier.posts[-1][1].card.content)  # type: ignore[union-attr]
    assert "No handover notes were recorded on 7W" in card
    assert "handover.ack" not in card  # nothing to acknowledge


async def test_unrecorded_beds_are_listed(world: World) -> None:
    handovers = Handovers(world.context())
    world.set_time(kst(2026, 11, 29, 13, 0))  # 23:00 in New York the day before: its night shift
    sent = message(value=filled(unit="NY4", bed="1"))
    await handovers.on_save(sent, world.turn(sent))
    world.set_time(kst(2026, 11, 29, 20, 45))  # 06:45 in New York
    await handovers.sweep()
    posted = [p for p in world.notifier.posts if p[0] == "unit:NY4"]
    assert len(posted) == 1 and "Unrecorded (no note this shift): 2" in str(posted[0][1].card.content)  # type: ignore[union-attr]


async def test_restart_inside_the_grace_posts_once_late(world: World) -> None:
    handovers = Handovers(world.context())
    await write_notes(world, handovers)
    world.set_time(kst(2026, 11, 29, 23, 40))  # the leader was down at 22:30; the night shift is 40 min old
    await handovers.sweep()
    restarted = Handovers(world.context())  # a new leader takes over and sweeps again
    await restarted.sweep()
    posted = [p for p in world.notifier.posts if p[0] == "unit:7W"]
    assert len(posted) == 1
    assert "Posted late (23:40)" in str(posted[0][1].card.content)  # type: ignore[union-attr]
    # the receivers still get 30 minutes to acknowledge after a late post
    assert world.timers.pending[(ACK_TIMER, "7W/2026-11-29/E")].due == kst(2026, 11, 30, 0, 10)


async def test_restart_outside_the_grace_records_a_miss_and_never_posts(world: World) -> None:
    handovers = Handovers(world.context())
    await write_notes(world, handovers)
    world.set_time(kst(2026, 11, 30, 0, 1))  # more than an hour into the night shift
    await handovers.sweep()
    await Handovers(world.context()).sweep()
    assert [p for p in world.notifier.posts if p[0] == "unit:7W"] == []
    state = await world.store.get(POSTS, "7W/2026-11-29/E")
    assert state is not None and state["status"] == "missed"
    events = [e for _s, e in await world.store.read(AUDIT) if e["event"] == "missed" and e["unit"] == "7W"]
    assert len(events) == 1


async def test_a_crash_between_claim_and_post_reposts_with_the_same_key(world: World) -> None:
    handovers = Handovers(world.context())
    await write_notes(world, handovers)
    world.set_time(kst(2026, 11, 29, 22, 30))
    await world.store.put(POSTS, "7W/2026-11-29/E", {"status": "posting", "beds": [], "acks": {}})
    await handovers.run_due("7W")
    assert [p[2] for p in world.notifier.posts if p[0] == "unit:7W"] == ["handover:7W/2026-11-29/E"]


async def test_post_now_needs_charge_or_manager_and_status_reports(world: World) -> None:
    handovers = Handovers(world.context())
    await write_notes(world, handovers)
    sent = message("handover post")
    turn = world.turn(sent)
    await handovers.on_command(sent, turn)
    assert "charge nurses and managers" in turn.replies[0].text and world.notifier.posts == []
    sent = message("handover post 7W", who="aad-charge")
    turn = world.turn(sent)
    await handovers.on_command(sent, turn)
    assert "Posted the handover of 7W" in turn.replies[0].text
    turn = world.turn(sent)
    await handovers.on_command(sent, turn)
    assert "already posted" in turn.replies[0].text and len(world.notifier.posts) == 1
    sent = message("handover status", who="aad-charge")
    turn = world.turn(sent)
    await handovers.on_command(sent, turn)
    assert "7W: shift 2026-11-29/E (15:00–23:00); handover posted at 22:30; notes 3/3" in turn.replies[0].text


async def test_acknowledgements_per_bed_and_for_the_unit(world: World) -> None:
    handovers = Handovers(world.context())
    await write_notes(world, handovers)
    world.set_time(kst(2026, 11, 29, 22, 30))
    await handovers.run_due("7W")
    ref = world.notifier.posts[-1][2]
    outsider = await press(world, handovers, "handover.ack", who="aad-icu", scope="all")
    assert "only for staff on 7W" in outsider.replies[0].text
    world.set_time(kst(2026, 11, 29, 23, 5))
    turn = await press(world, handovers, "handover.ack", scope="beds", beds="3,12", synthesis="Watch the drain")
    assert len(turn.refreshed) == 1
    latest = str(world.notifier.latest(ref).card.content)  # type: ignore[union-attr]
    assert latest.count("Park Nurse 23:05") == 2
    empty = await press(world, handovers, "handover.ack", scope="beds", beds="")
    assert "at least one bed" in empty.replies[0].text
    # the reminder 30 min into the shift names only bed 20
    world.set_time(kst(2026, 11, 29, 23, 30))
    for event in world.timers.due(world.clock.now()):
        await handovers.on_ack_timer(event)
    reminder = [p for p in world.notifier.posts if p[2].startswith("handover.unacked")]
    assert len(reminder) == 1 and reminder[0][0] == "role:charge@7W" and reminder[0][1].text.endswith(": 20.")
    await press(world, handovers, "handover.ack", who="aad-charge", scope="all")
    latest = str(world.notifier.latest(ref).card.content)  # type: ignore[union-attr]
    assert "Whole unit taken over by Lee Charge" in latest and "handover.ack" not in latest
    state = await world.store.get(POSTS, "7W/2026-11-29/E")
    assert state is not None and state["acks"]["3"]["synthesis"] == "Watch the drain"
    assert state["acks"]["20"]["name"] == "Lee Charge" and state["acks"]["3"]["name"] == "Park Nurse"


async def test_details_go_only_to_a_personal_chat_of_unit_staff(world: World) -> None:
    handovers = Handovers(world.context())
    await write_notes(world, handovers)
    world.set_time(kst(2026, 11, 29, 22, 30))
    await handovers.run_due("7W")
    refused = await press(world, handovers, "handover.details", who="aad-icu")
    assert "only for staff on 7W" in refused.replies[0].text
    assert not [p for p in world.notifier.posts if p[0].startswith("user:")]
    channel = await press(world, handovers, "handover.details")
    assert channel.replies == []
    private = [p for p in world.notifier.posts if p[0] == "user:aad-nurse"]
    assert len(private) == 1 and "Jane Roe" in str(private[0][1].card.content)  # type: ignore[union-attr]
    assert not private[0][1].ai_generated  # no model configured: no summary, nothing broken
    personal = await press(world, handovers, "handover.details", kind=ConversationKind.PERSONAL)
    assert personal.replies[0].card is not None
    views = [e for _s, e in await world.store.read(AUDIT) if e["event"] == "viewed" and e.get("what") == "details"]
    assert [v["actor"] for v in views] == ["aad-nurse", "aad-nurse"]


async def test_ai_summary_is_masked_labelled_and_cited(world: World) -> None:
    llm = ScriptedLLM("Bed 3 is bleeding and unstable [1]; bed 12 needs a potassium recheck [2].")
    handovers = Handovers(world.context(llm=llm))
    await write_notes(world, handovers)
    world.set_time(kst(2026, 11, 29, 22, 30))
    await handovers.run_due("7W")
    await press(world, handovers, "handover.details")
    prompt = "\n".join(m.content for m in llm.prompts[0])
    for secret in (*PATIENT_NAMES, *PATIENT_NUMBERS, "Park Nurse"):
        assert secret not in prompt
    assert "[NAME]" in prompt and "GI bleed" in prompt
    reply = next(p for p in world.notifier.posts if p[0] == "user:aad-nurse")[1]
    assert reply.ai_generated and "[1]" in reply.text
    assert [(c.position, c.source) for c in reply.citations] == [(1, "handover:7W/3"), (2, "handover:7W/12")]
    llm.fail = True
    failed = await press(world, handovers, "handover.details", kind=ConversationKind.PERSONAL)
    assert not failed.replies[0].ai_generated and failed.replies[0].card is not None
    llm.fail, llm.answer = False, "Everything is fine."  # cites no bed: not shown
    uncited = await press(world, handovers, "handover.details", kind=ConversationKind.PERSONAL)
    assert not uncited.replies[0].ai_generated


async def test_report_says_who_handed_over_and_who_acknowledged(world: World) -> None:
    handovers = Handovers(world.context())
    await write_notes(world, handovers)
    world.set_time(kst(2026, 11, 29, 22, 30))
    await handovers.run_due("7W")
    world.set_time(kst(2026, 11, 29, 23, 2))
    await press(world, handovers, "handover.ack", scope="beds", beds="3")
    from datetime import date

    report = await handovers.report("7W", date(2026, 11, 29), "E")
    assert len(report) == 1 and report[0]["status"] == "posted"
    beds = {b["bed"]: b for b in report[0]["beds"]}
    assert beds["3"]["written_by"] == "Park Nurse" and beds["3"]["acknowledged_by"] == "Park Nurse"
    assert beds["12"]["acknowledged_by"] is None
    assert "Jane Roe" not in str(report)
    assert [r["shift"] for r in await handovers.report("7W", date(2026, 11, 29))] == ["2026-11-29/E"]
    assert await handovers.report("7W", date(2026, 11, 29), "N") == []


async def test_a_korean_unit_gets_a_korean_card_on_its_twelve_hour_clock(world: World) -> None:
    handovers = Handovers(world.context())
    sent = message(value=filled(unit="ICU", bed="4", severity="unstable"), who="aad-icu", locale="ko-KR")
    await handovers.on_save(sent, world.turn(sent))  # 20:00 in Seoul: the ICU night shift started at 19:00
    world.set_time(kst(2026, 11, 30, 6, 30))
    await handovers.sweep()
    (_target, reply, key) = next(p for p in world.notifier.posts if p[0] == "unit:ICU")
    assert key == "handover:ICU/2026-11-29/N" and reply.card is not None
    snapshot("handover_summary_ko", reply.card.content)
    assert "근무 인계 · ICU · N 11-29 19:00 → D 07:00" in str(reply.card.content)


async def test_large_details_are_split_under_the_teams_message_size(world: World) -> None:
    handovers = Handovers(world.context())
    long_text = "x" * 1900
    for bed in range(1, 41):
        await save(world, handovers, filled(bed=str(bed), summary=long_text, awareness=long_text, pending=long_text))
    world.set_time(kst(2026, 11, 29, 22, 30))
    await handovers.run_due("7W")
    summary_card = world.notifier.posts[-1][1].card
    assert summary_card is not None and len(json.dumps(summary_card.content).encode()) < 40_000
    await press(world, handovers, "handover.details")
    parts = [p for p in world.notifier.posts if p[0] == "user:aad-nurse"]
    assert len(parts) > 1 and len({p[2] for p in parts}) == len(parts)
    assert all(len(json.dumps(p[1].card.content, ensure_ascii=False).encode()) < 60_000 for p in parts)  # type: ignore[union-attr]
    shown = "".join(json.dumps(p[1].card.content, ensure_ascii=False) for p in parts)  # type: ignore[union-attr]
    assert all(f"Bed {bed} ·" in shown for bed in range(1, 41))


async def test_a_unit_may_set_its_own_grace(world: World) -> None:
    relaxed = Unit(id="7W", shifts=("07:00", "15:00", "23:00"), options={"handover_grace_minutes": 120})
    world.directory = StaticDirectory([relaxed], [])
    handovers = Handovers(world.context())
    await write_notes(world, handovers)
    world.set_time(kst(2026, 11, 30, 0, 30))  # 90 minutes into the night shift: inside this unit's two hours
    await handovers.sweep()
    assert len([p for p in world.notifier.posts if p[0] == "unit:7W"]) == 1
