"""Tolerant parsing of IHE PCD-04 Report Alert messages (HL7 v2.6 ORU^R40) into an Alert.

Real gateways differ: facets come in any order and are matched on the MDC reference-id text (the numeric codes
differ between editions), priority rides in OBX-8 or in its own OBX (which wins), time stamps come with or without a
UTC offset, segments end in `\\r`, `\\n` or `\\r\\n`, and the location is in PV1-3 or in an OBX. The PID segment may be
present; nothing from it is kept.
"""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta, timezone, tzinfo
from typing import Any

import hl7

from skills.alerts.model import ALERT_TYPES, MAX_TEXT, PRIORITIES, Alert, AlertFormatError

_SEGMENT_BREAK = re.compile(r"\r\n|\n|\r")
_DTM = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(?:\.(\d{1,6}))?([+-]\d{4})?$")
_PRIORITY_WORDS = {"high": "PH", "medium": "PM", "low": "PL", "none": "PN", "info": "PN"}
DEFAULT_PRIORITY = "PM"  # a start without any priority is neither silenced as low nor sent without hold-off


def normalise(text: str) -> str:
    """Segments joined by `\\r`, as HL7 wants, whatever line breaks the sender used."""
    return "\r".join(line for line in _SEGMENT_BREAK.split(text) if line.strip())


def parse_time(raw: str, default_zone: tzinfo) -> datetime:
    """An HL7 DTM (YYYY[MM[DD[HH[MM[SS[.S]]]]]][+/-ZZZZ]) as an aware datetime; no offset means `default_zone`."""
    match = _DTM.match(raw.strip())
    if match is None:
        raise ValueError(raw)
    year, month, day, hour, minute, second, fraction, offset = match.groups()
    zone: tzinfo = default_zone
    if offset:
        sign = -1 if offset[0] == "-" else 1
        hours, minutes = int(offset[1:3]), int(offset[3:5])
        if hours > 14 or minutes > 59:
            raise ValueError(raw)
        zone = timezone(sign * timedelta(hours=hours, minutes=minutes))
    return datetime(
        int(year),
        int(month or 1),
        int(day or 1),
        int(hour or 0),
        int(minute or 0),
        int(second or 0),
        int((fraction or "0").ljust(6, "0")),
        tzinfo=zone,
    )


def _field(segment: Any, index: int) -> str:
    """The whole text of a field, or "" when the segment is shorter (real messages drop trailing separators)."""
    try:
        return str(segment[index]) if len(segment) > index else ""
    except (IndexError, KeyError, TypeError, ValueError):
        return ""


def _components(value: str, separator: str = "^") -> list[str]:
    return value.split("~")[0].split(separator)


def _component(value: str, position: int, separator: str = "^") -> str:
    parts = _components(value, separator)
    return parts[position - 1].strip() if len(parts) >= position else ""


def _clip(text: str) -> str:
    return text.strip()[:MAX_TEXT]


def parse_oru_r40(text: str, *, default_zone: tzinfo) -> Alert:
    """Parse one ORU^R40 message; raise AlertFormatError naming the HL7 field (e.g. "OBR-29") that is unusable."""
    body = normalise(text)
    if not body.startswith("MSH"):
        raise AlertFormatError("MSH", "the message does not start with an MSH segment", missing=True)
    if len(body) < 8 or body[3] != "|":
        raise AlertFormatError("MSH-1", "the field separator must be |")
    try:
        message = hl7.parse(body)
        msh = message.segment("MSH")
    except Exception:  # python-hl7 raises several types on malformed input; all mean "not HL7"
        raise AlertFormatError("MSH", "the message could not be parsed as HL7 v2") from None
    message_type = _field(msh, 9)
    if _component(message_type, 1) != "ORU" or _component(message_type, 2) != "R40":
        raise AlertFormatError("MSH-9", f"only ORU^R40 is handled, got {message_type[:40]!r}", unsupported=True)
    source = _clip(_component(_field(msh, 3), 1))
    if not source:
        raise AlertFormatError("MSH-3", "the sending application is required", missing=True)
    message_id = _clip(_field(msh, 10))
    if not message_id:
        raise AlertFormatError("MSH-10", "the message control id is required", missing=True)
    segments = {str(segment[0]): segment for segment in reversed(list(message))}
    obr = segments.get("OBR")
    if obr is None:
        raise AlertFormatError("OBR", "the OBR segment is required", missing=True)
    alert_id = next((part for part in _components(_field(obr, 29)) if part.strip()), "").strip()
    if not alert_id:
        alert_id = _component(_field(obr, 3), 1)  # some gateways keep the identity in the filler order number
    if not alert_id:
        raise AlertFormatError("OBR-29", "the alert identity (OBR-29) is required", missing=True)

    facets = _Facets()
    for segment in message:
        if str(segment[0]) == "OBX":
            facets.add(segment)
    if facets.event_code is None:
        raise AlertFormatError("OBX-3", "no OBX reports the event (an MDC_EVT_ code)", missing=True)

    unit = room = bed = ""
    pv1 = segments.get("PV1")
    location = _field(pv1, 3) if pv1 is not None else ""
    if not _component(location, 1) and facets.location:
        location = facets.location
    unit, room, bed = (_clip(_component(location, n)) for n in (1, 2, 3))
    priority = facets.priority or DEFAULT_PRIORITY
    if not unit and priority != "PN":
        raise AlertFormatError("PV1-3", "the alert's location (unit^room^bed) is required", missing=True)

    raw_time = facets.time or _field(obr, 7) or _field(msh, 7)
    try:
        occurred = parse_time(raw_time, default_zone)
    except ValueError:
        raise AlertFormatError("OBX-14", f"unreadable time stamp {raw_time[:30]!r}") from None

    phase = facets.phase or ("end" if facets.state == "inactive" else "present")
    state = facets.state or ("inactive" if phase == "end" else "active")
    return Alert(
        source=source,
        alert_id=_clip(alert_id),
        message_id=message_id,
        unit=unit,
        room=room,
        bed=bed,
        event_code=_clip(facets.event_code),
        event_text=_clip(message.unescape(facets.event_text)),
        phase=phase,
        state=state,
        priority=priority,
        alert_type=facets.alert_type or "SP",
        occurred_at=occurred.astimezone(UTC),
        device=_clip(facets.device),
        inactivation_state=facets.inactivation,
        value=_clip(facets.value),
        interval_s=facets.interval_s,
    )


_UNITS = {
    "MDC_DIM_PERCENT": "%",
    "MDC_DIM_BEAT_PER_MIN": "bpm",
    "MDC_DIM_MMHG": "mmHg",
    "MDC_DIM_RESP_PER_MIN": "/min",
    "MDC_DIM_DEGC": "°C",
    "MDC_DIM_MILLI_L_PER_HR": "mL/h",
}


class _Facets:
    """The OBX facets of one alert, matched on the MDC reference-id text whatever their order."""

    def __init__(self) -> None:
        self.event_code: str | None = None
        self.event_text = ""
        self.phase = ""
        self.state = ""
        self.inactivation = ""
        self.priority = ""
        self.flag_priority = ""
        self.alert_type = ""
        self.device = ""
        self.source_device = ""
        self.value = ""
        self.time = ""
        self.location = ""
        self.interval_s: int | None = None

    def add(self, obx: Any) -> None:
        identifier = _field(obx, 3)
        name = _component(identifier, 2) or _component(identifier, 1)
        value_type = _field(obx, 2).strip().upper()
        value = _field(obx, 5)
        first = _component(value, 1).strip()
        if "MDC_ATTR_EVENT_PHASE" in identifier:
            self.phase = first.lower()
        elif "MDC_ATTR_ALARM_INACTIVATION_STATE" in identifier:
            self.inactivation = first.lower()[:40]
        elif "MDC_ATTR_ALARM_STATE" in identifier:
            self.state = first.lower()
        elif "MDC_ATTR_ALARM_PRIORITY" in identifier:
            self.priority = _PRIORITY_WORDS.get(first.lower(), first.upper()) if first else ""
            if self.priority not in PRIORITIES:
                self.priority = ""
        elif "MDC_ATTR_ALERT_TYPE" in identifier:
            self.alert_type = first.upper() if first.upper() in ALERT_TYPES else self.alert_type
        elif "MDC_ATTR_ALERT_SOURCE" in identifier:
            self.source_device = _component(value, 2) or first
        elif "INTERVAL" in identifier:
            self.interval_s = int(first) if first.isdigit() and 0 < int(first) <= 86400 else None
        elif value_type == "PL" or "LOCATION" in identifier:
            self.location = value
        elif self.event_code is None and name.startswith("MDC_EVT_"):
            coded = _component(value, 2)
            if value_type in ("CWE", "CE", "CNE") and coded.startswith("MDC_"):
                self.event_code = coded
                self.event_text = _component(value, 9) or _component(value, 3 if not coded else 2)
            else:
                self.event_code = name
                self.event_text = value.split("~")[0]
            for flag in _field(obx, 8).split("~"):
                flag = flag.strip().upper()
                if flag in PRIORITIES:
                    self.flag_priority = flag
                elif flag in ALERT_TYPES:
                    self.alert_type = self.alert_type or flag
            self.time = _field(obx, 14).strip()
            equipment = _field(obx, 18)
            self.device = _component(equipment, 1) or _component(equipment, 2)
        elif value_type == "NM" and not self.value and first:
            unit = _component(_field(obx, 6), 2)
            self.value = f"{first} {_UNITS.get(unit, unit)}".strip()
        if not self.priority and self.flag_priority:
            self.priority = self.flag_priority
        if self.source_device:
            self.device = self.source_device


def build_oru_r40(
    *,
    source: str,
    message_id: str,
    alert_id: str,
    unit: str,
    room: str,
    bed: str,
    event_code: str,
    event_text: str,
    priority: str,
    phase: str,
    state: str,
    occurred_at: datetime,
    alert_type: str = "SP",
    value: str = "",
) -> str:
    """An ORU^R40 shaped like a gateway's (for drills, `wardline alerts simulate`, tests and the benchmark)."""
    stamp = occurred_at.astimezone(UTC).strftime("%Y%m%d%H%M%S+0000")
    segments = [
        f"MSH|^~\\&|{source}^0000000000000001^EUI-64|{source}|WARDLINE|WARDLINE|{stamp}||ORU^R40^ORU_R40|"
        f"{message_id}|P|2.6|||AL|NE||UNICODE UTF-8|||IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.4.4.1^ISO",
        f"PV1||I|{unit}^{room}^{bed}",
        f"OBR|1|{message_id}^{source}|{message_id}^{source}|196616^MDC_EVT_ALARM^MDC|||{stamp}"
        + "|" * 22
        + f"^{alert_id}&{source}&0000000000000001&EUI-64",
        f"OBX|1|ST|0^{event_code}^MDC|1.1.1.1|{event_text}|||{priority}~{alert_type}|||F|||{stamp}",
        f"OBX|2|ST|68481^MDC_ATTR_EVENT_PHASE^MDC|1.1.1.2|{phase}||||||F",
        f"OBX|3|ST|68482^MDC_ATTR_ALARM_STATE^MDC|1.1.1.3|{state}||||||F",
        f"OBX|4|ST|68484^MDC_ATTR_ALARM_PRIORITY^MDC|1.1.1.4|{priority}||||||F",
    ]
    if value:
        number, _, unit_text = value.partition(" ")
        segments.append(f"OBX|5|NM|0^MDC_PULS_OXIM_SAT_O2^MDC|1.1.1.5|{number}|0^{unit_text}^MDC|||||F")
    return "\r".join(segments)
