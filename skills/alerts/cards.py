"""The alarm card (Adaptive Card 1.5): unit, room, bed, the alarm in words, priority colour, who owns it.

Channel cards never carry a patient name or record number: the alert model holds none.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any
from zoneinfo import ZoneInfo

from skills.alerts.mdc import device_words, event_words
from skills.alerts.texts import text
from skills.core.types import Card

VERB_ACCEPT = "alerts.accept"
VERB_FALSE_ALARM = "alerts.false_alarm"
VERB_DECLINE = "alerts.decline"
_COLOURS = {"PH": "attention", "PM": "warning", "PL": "accent", "PN": "default"}


def local_time(iso: str, zone: ZoneInfo, pattern: str = "%H:%M") -> str:
    """A stored UTC time shown in the unit's zone."""
    return datetime.fromisoformat(iso).astimezone(zone).strftime(pattern)


def _action(verb: str, title: str, alert_key: str, style: str | None = None) -> dict[str, Any]:
    data = {"verb": verb, "alert": alert_key}
    action: dict[str, Any] = {"type": "Action.Execute", "title": title, "verb": verb, "data": data}
    fallback: dict[str, Any] = {"type": "Action.Submit", "title": title, "data": data}
    if style:
        action["style"] = style
        fallback["style"] = style
    action["fallback"] = fallback  # clients without Universal Actions send a message activity instead
    return action


def alert_card(record: Mapping[str, Any], locale: str, zone: ZoneInfo) -> Card:
    """The card for an alarm record, as everyone in the channel sees it now."""
    alert = record["alert"]
    priority = alert["priority"]
    colour = _COLOURS.get(priority, "default")
    words = event_words(alert["event_code"], alert.get("event_text", ""), locale)
    reading = " · ".join(part for part in (alert.get("event_text", ""), alert.get("value", "")) if part)
    facts = [
        {"title": text(locale, "unit"), "value": alert["unit"] or "-"},
        {"title": text(locale, "room"), "value": alert["room"] or "-"},
        {"title": text(locale, "bed"), "value": alert["bed"] or "-"},
        {"title": text(locale, "type"), "value": text(locale, f"type.{alert['alert_type']}")},
        {"title": text(locale, "device"), "value": device_words(alert.get("device", ""), locale) or "-"},
        {"title": text(locale, "time"), "value": local_time(alert["occurred_at"], zone, "%Y-%m-%d %H:%M:%S %Z")},
    ]
    if reading:
        facts.append({"title": text(locale, "reading"), "value": reading})
    accepted = record.get("accepted")
    ended = record.get("ended_at")
    if ended:
        status = text(locale, "status.ended" if accepted else "status.ended_unaccepted", time=local_time(ended, zone))
    else:
        status = text(locale, "status.owned" if accepted else "status.active")
    status_lines: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": status, "wrap": True, "weight": "Bolder", "color": "good" if ended else colour}
    ]
    if accepted:
        key = "false_alarm" if accepted.get("false_alarm") else "accepted"
        owner = text(locale, key, name=accepted["name"], time=local_time(accepted["at"], zone))
        status_lines.append({"type": "TextBlock", "text": owner, "wrap": True, "color": "good"})
    declined = record.get("declined") or []
    if declined:
        names = ", ".join(d["name"] for d in declined)
        status_lines.append({"type": "TextBlock", "text": text(locale, "declined", names=names), "wrap": True})
    if record.get("level") and not accepted and not ended:
        status_lines.append(
            {"type": "TextBlock", "text": text(locale, "escalated", level=record["level"]), "color": "attention"}
        )
    body: list[dict[str, Any]] = [
        {
            "type": "Container",
            "style": colour if not ended else "default",
            "bleed": True,
            "items": [
                {
                    "type": "TextBlock",
                    "text": f"{text(locale, f'priority.{priority}')} · {words}",
                    "size": "Large",
                    "weight": "Bolder",
                    "wrap": True,
                    "color": colour if not ended else "default",
                },
                {
                    "type": "TextBlock",
                    "text": f"{alert['unit']} · {alert['room'] or '-'} · {alert['bed'] or '-'}",
                    "spacing": "None",
                    "wrap": True,
                },
            ],
        },
        {"type": "FactSet", "facts": facts},
        *status_lines,
        {"type": "TextBlock", "text": text(locale, "secondary"), "wrap": True, "isSubtle": True, "size": "Small"},
    ]
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "body": body,
    }
    if not accepted and not ended:
        key = record["key"]
        card["actions"] = [
            _action(VERB_ACCEPT, text(locale, "button.accept"), key, "positive"),
            _action(VERB_FALSE_ALARM, text(locale, "button.false_alarm"), key),
            _action(VERB_DECLINE, text(locale, "button.decline"), key, "destructive"),
        ]
    return Card(card)


def notice_card(title: str, body: str, *, colour: str = "attention", lines: list[str] | None = None) -> Card:
    """A plain card for technical alerts (device link down) and the advisory digest."""
    items: list[dict[str, Any]] = [
        {"type": "TextBlock", "text": title, "weight": "Bolder", "size": "Medium", "wrap": True, "color": colour}
    ]
    if body:
        items.append({"type": "TextBlock", "text": body, "wrap": True})
    items.extend({"type": "TextBlock", "text": line, "wrap": True, "spacing": "Small"} for line in lines or [])
    return Card({"type": "AdaptiveCard", "version": "1.5", "body": items})
