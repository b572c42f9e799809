"""The I-PASS form: opened in a 1:1 chat, validated on the card, saved as versions, late after the handover."""

from __future__ import annotations

from typing import Any

from skills.core.fakes import RecordingTurn
from skills.core.types import ConversationKind
from skills.handover import create_skill
from skills.handover.notes import AUDIT, NoteBook
from skills.handover.service import Handovers
from skills.handover.texts import TEXTS
from tests.skills.handover.conftest import World, kst, message, snapshot


def filled(**overrides: Any) -> dict[str, Any]:
    """What Teams sends when the form is submitted: the action data merged with every input's value."""
    data: dict[str, Any] = {
        "verb": "handover.save",
        "unit": "7W",
        "bed": "12",
        "base": 0,
        "severity": "watcher",
        "summary": "POD 2 after hemicolectomy, 김민수 (record 12345678), pain controlled",
        "action_1_item": "Recheck potassium",
        "action_1_owner": "night RN",
        "action_1_due": "02:00",
        "action_1_done": "false",
        "action_2_item": "Ambulate",
        "action_2_done": "true",
        "if_1": "SBP < 90",
        "then_1": "500 mL bolus and call the doctor",
        "awareness": "Drain output rising",
        "allergies": "Penicillin",
        "code_status": "full",
        "isolation": "contact",
        "pending": "Blood culture",
        "patient": "김민수",
        "record_number": "12345678",
    }
    data.update(overrides)
    return data


async def open_form(world: World, handovers: Handovers, text: str, **kwargs: Any) -> RecordingTurn:
    sent = message(text, **kwargs)
    turn = world.turn(sent)
    await handovers.on_command(sent, turn)
    return turn


async def save(world: World, handovers: Handovers, data: dict[str, Any], **kwargs: Any) -> RecordingTurn:
    sent = message(value=data, **kwargs)
    turn = world.turn(sent)
    await handovers.on_save(sent, turn)
    return turn


def test_every_text_exists_in_both_languages() -> None:
    assert set(TEXTS["en"]) == set(TEXTS["ko"])
    assert all(TEXTS["ko"][key].strip() for key in TEXTS["ko"])


async def test_open_validate_save_edit_and_history(world: World) -> None:
    handovers = Handovers(world.context())
    turn = await open_form(world, handovers, "handover 12")
    form = turn.replies[0].card
    assert form is not None
    snapshot("ipass_form_new_en", form.content)
    actions = form.content["actions"]
    assert actions[0]["verb"] == "handover.save" and actions[0]["data"]["unit"] == "7W"
    assert actions[0]["fallback"]["type"] == "Action.Submit"

    turn = await save(world, handovers, filled(severity="", summary=" "))
    assert turn.replies == [] and len(turn.refreshed) == 1  # the problem comes back on the card, not as a crash
    error_card = str(turn.refreshed[0].content)
    assert "Choose the illness severity." in error_card and "Write a patient summary." in error_card
    assert "Recheck potassium" in error_card  # what the nurse typed is kept
    assert await NoteBook(world.store).current("7W", "12") is None

    turn = await save(world, handovers, filled())
    saved = await NoteBook(world.store).current("7W", "12")
    assert saved is not None and saved.version == 1 and saved.shift_id == "2026-11-29/E" and not saved.late
    assert saved.note.open_actions == 1 and saved.note.contingencies[0].then.startswith("500 mL")
    assert "version 1" in str(turn.refreshed[0].content)

    world.clock.advance(600)
    turn = await open_form(world, handovers, "handover 7W-12")
    prefilled = turn.replies[0].card
    assert prefilled is not None
    assert prefilled.content["actions"][0]["data"]["base"] == 1
    assert "POD 2 after hemicolectomy" in str(prefilled.content)
    await save(world, handovers, filled(base=1, severity="unstable", summary="Septic, on noradrenaline"))
    history = await NoteBook(world.store).history("7W", "12")
    assert [(v.version, v.note.severity) for v in history] == [(1, "watcher"), (2, "unstable")]
    events = [e["event"] for _seq, e in await world.store.read(AUDIT)]
    assert events == ["viewed", "saved", "viewed", "saved"]


async def test_a_stale_form_does_not_overwrite_a_newer_version(world: World) -> None:
    handovers = Handovers(world.context())
    await save(world, handovers, filled())
    await save(world, handovers, filled(base=1, summary="Second nurse's update"))
    turn = await save(world, handovers, filled(base=1, summary="First nurse, stale form"))
    current = await NoteBook(world.store).current("7W", "12")
    assert current is not None and current.version == 2 and current.note.summary == "Second nurse's update"
    assert "newer version (v2)" in str(turn.refreshed[0].content)
    # an invalid stale form keeps the version it was opened on, so fixing it cannot silently overwrite v2
    turn = await save(world, handovers, filled(base=1, summary=""))
    assert turn.refreshed[0].content["actions"][0]["data"]["base"] == 1


async def test_edits_after_the_handover_is_posted_are_marked_late(world: World) -> None:
    handovers = Handovers(world.context())
    await save(world, handovers, filled())
    world.set_time(kst(2026, 11, 29, 22, 30))
    await handovers.run_due("7W")
    world.clock.advance(300)
    turn = await save(world, handovers, filled(base=1, severity="unstable"))
    late = await NoteBook(world.store).current("7W", "12")
    assert late is not None and late.late and late.shift_id == "2026-11-29/E"
    assert "marked late" in str(turn.refreshed[0].content)
    ref = world.notifier.posts[0][2]
    assert "Unstable" in str(world.notifier.latest(ref).card.content)  # type: ignore[union-attr]


async def test_patient_details_are_refused_outside_a_personal_chat(world: World) -> None:
    handovers = Handovers(world.context())
    for kind in (ConversationKind.CHANNEL, ConversationKind.GROUP):
        turn = await open_form(world, handovers, "handover 12", kind=kind)
        assert turn.replies[0].card is None and "1:1" in turn.replies[0].text
        turn = await save(world, handovers, filled(), kind=kind)
        assert "1:1" in turn.replies[0].text
    assert await NoteBook(world.store).current("7W", "12") is None


async def test_korean_locale_and_bed_resolution(world: World) -> None:
    handovers = Handovers(world.context())
    turn = await open_form(world, handovers, "인계 12", locale="ko-KR")
    assert turn.replies[0].card is not None
    snapshot("ipass_form_new_ko", turn.replies[0].card.content)
    assert "I-PASS 인계 · 7W 12번 병상" in str(turn.replies[0].card.content)
    turn = await open_form(world, handovers, "handover 5", who="aad-manager")  # on two units: must name one
    assert "7W-12" in turn.replies[0].text and turn.replies[0].card is None
    turn = await open_form(world, handovers, "handover 9Z-3")
    assert "9Z" in turn.replies[0].text
    turn = await open_form(world, handovers, "handover ../../etc")
    assert turn.replies[0].card is None
    turn = await open_form(world, handovers, "handover icu-4", who="aad-manager")
    assert "ICU" in str(turn.replies[0].card.content)  # type: ignore[union-attr]


async def test_without_a_directory_it_says_so(world: World) -> None:
    skill = create_skill(world.context(directory=None))
    assert skill.jobs == []
    assert create_skill(world.context(notifier=None)).jobs == []  # nowhere to post: nothing scheduled
    sent = message("handover 12")
    turn = world.turn(sent)
    await skill.commands[0].handler(sent, turn)
    assert "not set up" in turn.replies[0].text
