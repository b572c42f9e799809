"""The I-PASS note: illness severity, patient summary, action list, situation awareness, synthesis, plus extras."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

SEVERITIES = ("unstable", "watcher", "stable")  # display order: the sickest first
CODE_STATUSES = ("full", "dnr", "dnr_dni", "limited")
ISOLATIONS = ("none", "contact", "droplet", "airborne", "contact_droplet")
ACTION_ROWS = 5  # form rows for to-dos; Adaptive Cards 1.5 cannot add rows on the client
CONTINGENCY_ROWS = 3
MAX_FIELD = 2000  # characters per free-text field; a handover note is not a chart

EXTRA_FIELDS = ("allergies", "code_status", "lines", "isolation", "pending")
IDENTITY_FIELDS = ("patient", "record_number")  # shown only in 1:1 chats, never sent to a model


@dataclass(frozen=True, slots=True)
class ActionItem:
    """One to-do for the receiving shift."""

    item: str
    owner: str = ""
    due: str = ""  # "HH:MM" on the unit's clock
    done: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {"item": self.item, "owner": self.owner, "due": self.due, "done": self.done}


@dataclass(frozen=True, slots=True)
class Contingency:
    """An if/then plan."""

    condition: str
    then: str

    def as_dict(self) -> dict[str, str]:
        return {"if": self.condition, "then": self.then}


@dataclass(frozen=True, slots=True)
class IPassNote:
    """The content of one bed's handover note (who saved it and when lives in the stored record)."""

    severity: str
    summary: str
    actions: tuple[ActionItem, ...] = ()
    awareness: str = ""
    contingencies: tuple[Contingency, ...] = ()
    synthesis: str = ""
    extras: Mapping[str, str] = field(default_factory=dict)
    patient: str = ""
    record_number: str = ""

    @property
    def open_actions(self) -> int:
        return sum(1 for action in self.actions if not action.done)

    def as_dict(self) -> dict[str, Any]:
        return {
            "severity": self.severity,
            "summary": self.summary,
            "actions": [a.as_dict() for a in self.actions],
            "awareness": self.awareness,
            "contingencies": [c.as_dict() for c in self.contingencies],
            "synthesis": self.synthesis,
            "extras": dict(self.extras),
            "patient": self.patient,
            "record_number": self.record_number,
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> IPassNote:
        """Read a stored note back."""
        return cls(
            severity=str(data.get("severity", "")),
            summary=str(data.get("summary", "")),
            actions=tuple(
                ActionItem(str(a.get("item", "")), str(a.get("owner", "")), str(a.get("due", "")), bool(a.get("done")))
                for a in data.get("actions", [])
                if isinstance(a, Mapping)
            ),
            awareness=str(data.get("awareness", "")),
            contingencies=tuple(
                Contingency(str(c.get("if", "")), str(c.get("then", "")))
                for c in data.get("contingencies", [])
                if isinstance(c, Mapping)
            ),
            synthesis=str(data.get("synthesis", "")),
            extras={k: str(v) for k, v in dict(data.get("extras") or {}).items() if k in EXTRA_FIELDS},
            patient=str(data.get("patient", "")),
            record_number=str(data.get("record_number", "")),
        )


def _text(data: Mapping[str, Any], key: str) -> str:
    value = data.get(key)
    return value.strip()[:MAX_FIELD] if isinstance(value, str) else ""


def _flag(value: Any) -> bool:
    return value is True or (isinstance(value, str) and value.lower() == "true")


def _clock_time(text: str) -> str:
    """Adaptive Cards send Input.Time as HH:MM; anything else is dropped rather than guessed."""
    hours, sep, minutes = text.partition(":")
    if sep and hours.isdigit() and minutes[:2].isdigit() and int(hours) < 24 and int(minutes[:2]) < 60:
        return f"{int(hours):02d}:{minutes[:2]}"
    return ""


def parse_form(data: Mapping[str, Any]) -> tuple[IPassNote, list[str]]:
    """The note the form describes, and the keys of the problems found (empty when it can be saved)."""
    problems: list[str] = []
    severity = _text(data, "severity").lower()
    if severity not in SEVERITIES:
        problems.append("missing_severity")
        severity = ""
    summary = _text(data, "summary")
    if not summary:
        problems.append("missing_summary")
    actions = []
    for row in range(1, ACTION_ROWS + 1):
        item = _text(data, f"action_{row}_item")
        if item:
            actions.append(
                ActionItem(
                    item,
                    _text(data, f"action_{row}_owner"),
                    _clock_time(_text(data, f"action_{row}_due")),
                    _flag(data.get(f"action_{row}_done")),
                )
            )
    contingencies = []
    for row in range(1, CONTINGENCY_ROWS + 1):
        condition, then = _text(data, f"if_{row}"), _text(data, f"then_{row}")
        if condition or then:
            if not (condition and then):
                problems.append("half_contingency")
            contingencies.append(Contingency(condition, then))
    extras = {name: _text(data, name) for name in EXTRA_FIELDS if _text(data, name)}
    if extras.get("code_status") and extras["code_status"] not in CODE_STATUSES:
        extras.pop("code_status")
    if extras.get("isolation") and extras["isolation"] not in ISOLATIONS:
        extras.pop("isolation")
    note = IPassNote(
        severity=severity,
        summary=summary,
        actions=tuple(actions),
        awareness=_text(data, "awareness"),
        contingencies=tuple(contingencies),
        synthesis=_text(data, "synthesis"),
        extras=extras,
        patient=_text(data, "patient"),
        record_number=_text(data, "record_number"),
    )
    return note, problems
