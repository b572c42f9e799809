"""ORU^R40 parsing: the two IHE examples field by field, and the variations real gateways send."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from skills.alerts.hl7 import normalise, parse_oru_r40, parse_time
from skills.alerts.model import Alert, AlertFormatError

DATA = Path(__file__).resolve().parents[2] / "data" / "hl7"
SEOUL = ZoneInfo("Asia/Seoul")
CST = timezone(timedelta(hours=-6))


def fixture(name: str) -> str:
    return (DATA / name).read_text(encoding="utf-8")


def test_low_spo2_start_every_field() -> None:
    alert = parse_oru_r40(fixture("ihe_e31_low_spo2_start.hl7"), default_zone=SEOUL)
    assert alert.source == "MINDRAY_EGATEWAY"
    assert alert.alert_id == "1&MINDRAY_EGATEWAY&00A037EB2175780F&EUI-64"
    assert alert.message_id == "1"
    assert (alert.unit, alert.room, alert.bed) == ("HO Surgery", "OR", "1")
    assert (alert.event_code, alert.event_text) == ("MDC_EVT_LO", "Low SpO2")
    assert (alert.phase, alert.state, alert.inactivation_state) == ("start", "active", "enabled")
    assert (alert.priority, alert.alert_type) == ("PM", "SP")  # from OBX-8 "L~PM~SP"
    assert alert.device == "F1519EFX"
    assert alert.value == "88 %"
    assert alert.occurred_at == datetime(2012, 1, 11, 15, 4, 57, tzinfo=CST)
    assert alert.occurred_at.tzinfo == UTC
    assert not alert.ends and not alert.heartbeat


def test_pump_occlusion_end_every_field() -> None:
    alert = parse_oru_r40(fixture("ihe_e32_pump_occlusion_end.hl7"), default_zone=SEOUL)
    assert alert.source == "PAT_DEVICE_BBRAUN"
    assert alert.alert_id == "E0001_27&PAT_DEVICE_BBRAUN&0012211839000001&EUI-64"
    assert alert.message_id == "6346172846620706282"
    assert (alert.unit, alert.room, alert.bed) == ("HO 3 West ICU", "10", "1")
    assert (alert.event_code, alert.event_text) == ("MDC_EVT_FLUID_LINE_OCCL", "Occlusion")
    assert (alert.phase, alert.state) == ("end", "inactive")
    assert alert.alert_type == "ST"  # OBX-8 "ST"
    assert alert.priority == "PM"  # none sent: the documented default
    assert alert.device == "MDC_DEV_PUMP_INFUS_MDS"  # from the alert-source facet
    assert alert.occurred_at == datetime(2012, 1, 9, 17, 54, 26, tzinfo=CST)
    assert alert.ends


def test_patient_identity_is_never_kept() -> None:
    alert = parse_oru_r40(fixture("ihe_e31_low_spo2_start.hl7"), default_zone=SEOUL)
    stored = str(alert.to_json())
    for identifier in ("HO2009001", "Hon", "Albert", "18991230"):
        assert identifier not in stored


@pytest.mark.parametrize("newline", ["\r", "\n", "\r\n"])
def test_any_segment_separator(newline: str) -> None:
    text = newline.join(fixture("ihe_e31_low_spo2_start.hl7").splitlines())
    assert parse_oru_r40(text, default_zone=SEOUL).bed == "1"


def reorder_and_edit(text: str, *, drop_pv1: bool = False, extra: list[str] | None = None) -> str:
    lines = [line for line in text.splitlines() if line]
    head = [line for line in lines if not line.startswith("OBX")]
    obx = [line for line in lines if line.startswith("OBX")]
    if drop_pv1:
        head = [line for line in head if not line.startswith("PV1")]
    return "\r".join(head + list(reversed(obx)) + (extra or []))


def test_facets_in_any_order_and_priority_facet_wins() -> None:
    text = reorder_and_edit(
        fixture("ihe_e31_low_spo2_start.hl7"),
        extra=[
            "OBX|6|ST|68484^MDC_ATTR_ALARM_PRIORITY^MDC|1.3.1.150456.6|PH||||||F",
            "OBX|7|ST|68485^MDC_ATTR_ALERT_TYPE^MDC|1.3.1.150456.7|SP||||||F",
        ],
    )
    alert = parse_oru_r40(text, default_zone=SEOUL)
    assert (alert.priority, alert.alert_type, alert.phase, alert.state) == ("PH", "SP", "start", "active")


def test_location_from_an_obx_when_pv1_is_missing() -> None:
    text = reorder_and_edit(
        fixture("ihe_e31_low_spo2_start.hl7"),
        drop_pv1=True,
        extra=["OBX|8|PL|68486^MDC_ATTR_LOCATION^MDC|1.3.1.150456.8|7W^712^B||||||F"],
    )
    alert = parse_oru_r40(text, default_zone=SEOUL)
    assert (alert.unit, alert.room, alert.bed) == ("7W", "712", "B")


def test_time_without_offset_is_the_local_zone_and_fractions_are_read() -> None:
    assert parse_time("20261130074205", SEOUL) == datetime(2026, 11, 30, 7, 42, 5, tzinfo=SEOUL)
    assert parse_time("20261130074205.123+0900", SEOUL) == datetime(2026, 11, 29, 22, 42, 5, 123000, tzinfo=UTC)
    with pytest.raises(ValueError, match="yesterday"):
        parse_time("yesterday", SEOUL)


@pytest.mark.parametrize(
    ("edit", "field", "missing"),
    [
        (lambda t: t.replace("ORU^R40^ORU_R40", "ADT^A01^ADT_A01"), "MSH-9", False),
        (lambda t: t.replace("|1|P|2.6|", "||P|2.6|"), "MSH-10", True),
        (lambda t: t.split("||^1&MINDRAY")[0], "OBR-29", True),
        (lambda t: "\r".join(line for line in t.splitlines() if not line.startswith("PV1")), "PV1-3", True),
        (lambda t: t.replace("MDC_EVT_LO", "MDC_X_LO"), "OBX-3", True),
        (lambda t: t.replace("20120111150457-0600", "2012-01-11"), "OBX-14", False),
        (lambda t: "PID|||x\r" + t, "MSH", True),
    ],
)
def test_unusable_messages_name_the_field(edit: object, field: str, missing: bool) -> None:
    text = edit(fixture("ihe_e31_low_spo2_start.hl7"))  # type: ignore[operator]
    if field == "OBR-29":  # also drop the filler order number the parser falls back to
        text = text.replace("|1^MINDRAY_EGATEWAY^00A037EB2175780F^EUI64|196616", "||196616")
    with pytest.raises(AlertFormatError) as raised:
        parse_oru_r40(text, default_zone=SEOUL)
    assert raised.value.field == field
    assert raised.value.missing is missing


def test_json_round_trip_is_lossless() -> None:
    alert = parse_oru_r40(fixture("ihe_e32_pump_occlusion_end.hl7"), default_zone=SEOUL)
    assert Alert.from_json(alert.to_json()) == alert


def test_normalise_drops_blank_lines() -> None:
    assert normalise("MSH|a\r\n\r\nPID|b\n") == "MSH|a\rPID|b"


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=400))
def test_fuzz_arbitrary_text_parses_or_names_a_field(text: str) -> None:
    try:
        parse_oru_r40(text, default_zone=SEOUL)
    except AlertFormatError as error:
        problem = error.field
        assert problem


@settings(max_examples=200, deadline=None)
@given(st.data())
def test_fuzz_mutated_fixtures_parse_or_name_a_field(data: st.DataObject) -> None:
    text = fixture(data.draw(st.sampled_from(["ihe_e31_low_spo2_start.hl7", "ihe_e32_pump_occlusion_end.hl7"])))
    for _ in range(data.draw(st.integers(0, 6))):
        position = data.draw(st.integers(0, len(text)))
        text = text[:position] + data.draw(st.text(alphabet="|^~\\&\r\n0-9AZ ", max_size=4)) + text[position + 3 :]
    try:
        alert = parse_oru_r40(text, default_zone=SEOUL)
    except AlertFormatError as error:
        problem = error.field
        assert problem
    else:
        assert alert.source and alert.alert_id and alert.message_id
