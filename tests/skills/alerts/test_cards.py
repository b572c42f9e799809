"""Alarm cards: valid Adaptive Cards 1.5 for Teams in every state, snapshots, both languages, no patient data."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pytest

from bot.teams.render import reply_activity
from skills.alerts.cards import notice_card
from skills.alerts.mdc import EVENTS, event_words
from skills.alerts.texts import TEXTS
from tests.fakes.teams_contract import problems_with
from tests.manifests.adaptive_card_schema import validate_card
from tests.skills.alerts.rig import KEY, Rig, alarm

SNAPSHOTS = Path(__file__).parent / "snapshots"


def test_every_text_exists_in_english_and_korean() -> None:
    assert set(TEXTS["en"]) == set(TEXTS["ko"])
    for key in TEXTS["en"]:
        fields_en = {part.split("}")[0] for part in TEXTS["en"][key].split("{")[1:]}
        fields_ko = {part.split("}")[0] for part in TEXTS["ko"][key].split("{")[1:]}
        assert fields_en == fields_ko, key


def test_every_mdc_event_has_both_languages_and_unknown_codes_show_the_code() -> None:
    assert all(en and ko for en, ko in EVENTS.values())
    assert event_words("MDC_EVT_ECG_V_FIB", "", "ko-KR") == "심실세동"
    assert event_words("MDC_EVT_SOMETHING_NEW", "", "en") == "MDC_EVT_SOMETHING_NEW"
    assert event_words("MDC_EVT_ALARM", "Occlusion", "en") == "Occlusion"  # the generic code: the device's words


def normalised(card: dict[str, Any]) -> dict[str, Any]:
    return json.loads(json.dumps(card, ensure_ascii=False))


def check_snapshot(name: str, card: dict[str, Any]) -> None:
    path = SNAPSHOTS / f"{name}.json"
    if os.environ.get("UPDATE_SNAPSHOTS") == "1" or not path.exists():
        path.write_text(json.dumps(card, ensure_ascii=False, indent=2) + "\n", encoding="utf-8")
    assert normalised(card) == json.loads(path.read_text(encoding="utf-8")), f"snapshot {name} changed"


async def states() -> dict[str, dict[str, Any]]:
    rig = Rig()
    await rig.send(alarm(priority="PH", message_id="S1"))
    ref = rig.notifier.posts[0][2]
    cards = {"active_en": rig.notifier.latest(ref).card.content}  # type: ignore[union-attr]
    await rig.tick(30)
    cards["escalated_en"] = rig.notifier.latest(ref).card.content  # type: ignore[union-attr]
    await rig.press("alerts.accept", "aad-nurse", KEY)
    cards["accepted_en"] = rig.notifier.latest(ref).card.content  # type: ignore[union-attr]
    await rig.tick(60)
    await rig.send(alarm(phase="end", state="inactive", message_id="S2"))
    cards["ended_en"] = rig.notifier.latest(ref).card.content  # type: ignore[union-attr]
    await rig.send(alarm(priority="PM", unit="5E", alert_id="K1", message_id="S3"))
    cards["active_ko"] = rig.notifier.posts[-1][1].card.content  # type: ignore[union-attr]
    cards["link_down"] = dict(notice_card("Device link down: GW1", "No heartbeat for 60 s.").content)
    return {name: dict(card) for name, card in cards.items()}


@pytest.mark.parametrize("name", ["active_en", "escalated_en", "accepted_en", "ended_en", "active_ko", "link_down"])
async def test_cards_are_valid_for_teams_and_match_their_snapshots(name: str) -> None:
    card = (await states())[name]
    validate_card(card)
    from skills.core.types import Card, Reply

    assert problems_with(reply_activity(Reply(text="alarm", card=Card(card))).serialize()) == []
    check_snapshot(name, card)


async def test_buttons_use_action_execute_with_a_submit_fallback() -> None:
    card = (await states())["active_en"]
    verbs = [(a["type"], a["verb"], a["fallback"]["type"], a["fallback"]["data"]["verb"]) for a in card["actions"]]
    assert verbs == [
        ("Action.Execute", "alerts.accept", "Action.Submit", "alerts.accept"),
        ("Action.Execute", "alerts.false_alarm", "Action.Submit", "alerts.false_alarm"),
        ("Action.Execute", "alerts.decline", "Action.Submit", "alerts.decline"),
    ]
    text = json.dumps(card)
    assert "Secondary notification - check the bedside monitor." in text
    assert '"style": "attention"' in text  # PH is red


async def test_no_patient_identity_reaches_a_card() -> None:
    fixture = Path(__file__).resolve().parents[2] / "data" / "hl7" / "ihe_e31_low_spo2_start.hl7"
    rig = Rig()
    assert (await rig.send(fixture.read_text(encoding="utf-8"))).accepted
    await rig.tick(10)  # PM hold-off
    [(_, reply, _)] = rig.notifier.posts
    wire = json.dumps(reply_activity(reply).serialize(), ensure_ascii=False)
    for identifier in ("HO2009001", "Hon", "Albert", "18991230"):
        assert identifier not in wire
    assert "HO Surgery" in wire and "Low SpO2" in wire
