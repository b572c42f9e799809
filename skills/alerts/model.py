"""The alert model shared by the HL7 parser and the JSON webhook, and its validation."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

PRIORITIES = ("PH", "PM", "PL", "PN")  # high, medium, low, none (liveness only)
ALERT_TYPES = ("SP", "ST", "SA")  # physiological, technical, advisory
STARTING_PHASES = frozenset({"start", "present", "continue", "update", "escalate", "deescalate", "reactivated"})
ENDING_PHASES = frozenset({"end", "stop", "cancel"})
ENDING_STATES = frozenset({"inactive"})
PHASES = STARTING_PHASES | ENDING_PHASES | {"tpoint"}
STATES = frozenset({"active", "inactive", "latched", "acknowledged", "unknown"})
MAX_TEXT = 200  # longest free text kept from a device (an event label, a device name)


class AlertFormatError(ValueError):
    """The message is not a usable alert; `field` says where (e.g. "OBR-29", "priority")."""

    def __init__(self, field: str, reason: str, *, missing: bool = False, unsupported: bool = False) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason
        self.missing = missing
        self.unsupported = unsupported


@dataclass(frozen=True, slots=True)
class Alert:
    """One report about one alert (IHE PCD-04): where, what, which phase. Carries no patient identity."""

    source: str  # the sending system (MSH-3 namespace id), half of the correlation key
    alert_id: str  # OBR-29 (or the JSON alert_id): the same across start / continue / end
    message_id: str  # MSH-10 (or the JSON message_id): an exact repeat is a duplicate
    unit: str
    room: str
    bed: str
    event_code: str  # MDC reference id, e.g. MDC_EVT_LO
    event_text: str  # what the device said, e.g. "Low SpO2"
    phase: str
    state: str
    priority: str
    alert_type: str
    occurred_at: datetime
    device: str = ""
    inactivation_state: str = ""
    value: str = ""  # the measured value with its unit, e.g. "88 %"; no patient data
    interval_s: int | None = None  # heartbeat interval a gateway announces (watchdog)

    @property
    def key(self) -> str:
        """The correlation key: (sending system, alert id)."""
        return f"{self.source}|{self.alert_id}"

    @property
    def ends(self) -> bool:
        """True when this report closes the alert."""
        return self.phase in ENDING_PHASES or self.state in ENDING_STATES

    @property
    def heartbeat(self) -> bool:
        """Watchdog / heartbeat reports (priority PN) only say the link is alive."""
        return self.priority == "PN"

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["occurred_at"] = self.occurred_at.astimezone(UTC).isoformat()
        return data

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Alert:
        """Validate a JSON alert (the webhook's body, or a stored record); raise AlertFormatError naming the field."""
        if not isinstance(data, Mapping):
            raise AlertFormatError("$", "the body must be a JSON object")

        def text(name: str, *, required: bool = True, default: str = "") -> str:
            value = data.get(name)
            if value is None or value == "":
                if required:
                    raise AlertFormatError(name, "is required", missing=True)
                return default
            if not isinstance(value, str):
                raise AlertFormatError(name, "must be a string")
            if len(value) > MAX_TEXT:
                raise AlertFormatError(name, f"is longer than {MAX_TEXT} characters")
            return value.strip()

        priority = text("priority").upper()
        if priority not in PRIORITIES:
            raise AlertFormatError("priority", f"must be one of {', '.join(PRIORITIES)}")
        alert_type = text("alert_type", required=False, default="SP").upper()
        if alert_type not in ALERT_TYPES:
            raise AlertFormatError("alert_type", f"must be one of {', '.join(ALERT_TYPES)}")
        phase = text("phase").lower()
        if phase not in PHASES:
            raise AlertFormatError("phase", f"must be one of {', '.join(sorted(PHASES))}")
        state = text("state", required=False, default="inactive" if phase in ENDING_PHASES else "active").lower()
        if state not in STATES:
            raise AlertFormatError("state", f"must be one of {', '.join(sorted(STATES))}")
        raw_time = text("occurred_at")
        try:
            occurred = datetime.fromisoformat(raw_time.replace("Z", "+00:00"))
        except ValueError:
            raise AlertFormatError("occurred_at", "must be an ISO 8601 time with an offset") from None
        if occurred.tzinfo is None:
            raise AlertFormatError("occurred_at", "needs a UTC offset (e.g. +09:00 or Z)")
        interval = data.get("interval_s")
        if interval is not None and (not isinstance(interval, int) or isinstance(interval, bool) or interval <= 0):
            raise AlertFormatError("interval_s", "must be a positive whole number of seconds")
        alert_id = text("alert_id")
        unit = text("unit", required=priority != "PN")
        return cls(
            source=text("source"),
            alert_id=alert_id,
            message_id=text("message_id", required=False, default=f"{alert_id}:{phase}:{state}"),
            unit=unit,
            room=text("room", required=False),
            bed=text("bed", required=False),
            event_code=text("event_code", required=priority != "PN", default="MDC_EVT_STAT_WATCHDOG"),
            event_text=text("event_text", required=False),
            phase=phase,
            state=state,
            priority=priority,
            alert_type=alert_type,
            occurred_at=occurred.astimezone(UTC),
            device=text("device", required=False),
            inactivation_state=text("inactivation_state", required=False),
            value=text("value", required=False),
            interval_s=interval,
        )
