"""Adaptive Cards (1.5) of the handover skill: the I-PASS form, the saved note, the channel summary, the details."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from skills.core.types import Card
from skills.handover.ipass import ACTION_ROWS, CODE_STATUSES, CONTINGENCY_ROWS, ISOLATIONS, SEVERITIES, IPassNote
from skills.handover.notes import SavedNote
from skills.handover.texts import t

SCHEMA = "http://adaptivecards.io/schemas/adaptive-card.json"
_SEVERITY_COLOR = {"unstable": "Attention", "watcher": "Warning", "stable": "Good"}


def card(body: list[dict[str, Any]], actions: Sequence[dict[str, Any]] = ()) -> Card:
    """A version 1.5 card; Teams renders nothing newer."""
    content: dict[str, Any] = {"type": "AdaptiveCard", "$schema": SCHEMA, "version": "1.5", "body": body}
    if actions:
        content["actions"] = list(actions)
    return Card(content)


def execute(title: str, data: Mapping[str, Any], *, style: str | None = None) -> dict[str, Any]:
    """Action.Execute (Universal Actions) with an Action.Submit fallback carrying the same data and verb."""
    action: dict[str, Any] = {
        "type": "Action.Execute",
        "title": title,
        "verb": str(data["verb"]),
        "data": dict(data),
        "fallback": {"type": "Action.Submit", "title": title, "data": dict(data)},
    }
    if style:
        action["style"] = style
    return action


def text(value: str, **props: Any) -> dict[str, Any]:
    return {"type": "TextBlock", "text": value, "wrap": True, **props}


def _label(value: str) -> dict[str, Any]:
    return text(value, weight="Bolder", spacing="Medium")


def _input_text(id_: str, label: str, value: str, *, multiline: bool = False, **props: Any) -> dict[str, Any]:
    element: dict[str, Any] = {"type": "Input.Text", "id": id_, "label": label, "value": value, "maxLength": 2000}
    if multiline:
        element["isMultiline"] = True
    element.update(props)
    return element


def _choices(lang: str, prefix: str, values: Sequence[str]) -> list[dict[str, str]]:
    return [{"title": t(lang, f"{prefix}_{v}"), "value": v} for v in values]


def form_card(
    lang: str,
    *,
    unit: str,
    bed: str,
    shift_id: str,
    note: IPassNote | None,
    current: SavedNote | None,
    errors: Sequence[str] = (),
    notice: str = "",
    local_time: str = "",
    base: int | None = None,
) -> Card:
    """The I-PASS form, prefilled from `note` (the bed's last note, or what the user just submitted)."""
    note = note or IPassNote(severity="", summary="")
    if current is None:
        version_line = t(lang, "form_new")
    else:
        version_line = t(lang, "form_version", version=current.version, author=current.author_name, saved_at=local_time)
    body: list[dict[str, Any]] = [
        text(t(lang, "form_title", unit=unit, bed=bed), size="Medium", weight="Bolder"),
        text(t(lang, "form_shift", shift=shift_id, version_line=version_line), isSubtle=True, spacing="None"),
    ]
    if errors or notice:
        lines = [notice] if notice else []
        if errors:
            lines.append(t(lang, "not_saved"))
            lines.extend(f"- {t(lang, key)}" for key in errors)
        body.append(text("\n".join(lines), color="Attention", weight="Bolder"))
    body += [
        {
            "type": "Input.ChoiceSet",
            "id": "severity",
            "label": t(lang, "severity"),
            "style": "expanded",
            "isRequired": True,
            "errorMessage": t(lang, "missing_severity"),
            "value": note.severity,
            "choices": _choices(lang, "sev", SEVERITIES),
        },
        _input_text(
            "summary",
            t(lang, "summary"),
            note.summary,
            multiline=True,
            placeholder=t(lang, "summary_hint"),
            isRequired=True,
            errorMessage=t(lang, "missing_summary"),
        ),
        _label(t(lang, "actions")),
    ]
    rows = list(note.actions)
    for index in range(ACTION_ROWS):
        action = rows[index] if index < len(rows) else None
        n = index + 1
        # Two rows per to-do: four inputs side by side are unreadable in a chat-width card.
        body.append(_input_text(f"action_{n}_item", f"{t(lang, 'action_item')} {n}", action.item if action else ""))
        body.append(
            {
                "type": "ColumnSet",
                "spacing": "Small",
                "columns": [
                    {
                        "type": "Column",
                        "width": "stretch",
                        "items": [
                            _input_text(f"action_{n}_owner", t(lang, "action_owner"), action.owner if action else "")
                        ],
                    },
                    {
                        "type": "Column",
                        "width": "stretch",
                        "items": [
                            {
                                "type": "Input.Time",
                                "id": f"action_{n}_due",
                                "label": t(lang, "action_due"),
                                "value": action.due if action else "",
                            }
                        ],
                    },
                    {
                        "type": "Column",
                        "width": "auto",
                        "verticalContentAlignment": "Bottom",
                        "items": [
                            {
                                "type": "Input.Toggle",
                                "id": f"action_{n}_done",
                                "title": t(lang, "action_done"),
                                "value": "true" if action and action.done else "false",
                            }
                        ],
                    },
                ],
            }
        )
    body.append(_input_text("awareness", t(lang, "awareness"), note.awareness, multiline=True))
    body.append(_label(t(lang, "contingencies")))
    plans = list(note.contingencies)
    for index in range(CONTINGENCY_ROWS):
        plan = plans[index] if index < len(plans) else None
        n = index + 1
        body.append(
            {
                "type": "ColumnSet",
                "columns": [
                    {
                        "type": "Column",
                        "width": "stretch",
                        "items": [_input_text(f"if_{n}", t(lang, "if"), plan.condition if plan else "")],
                    },
                    {
                        "type": "Column",
                        "width": "stretch",
                        "items": [_input_text(f"then_{n}", t(lang, "then"), plan.then if plan else "")],
                    },
                ],
            }
        )
    body.append(
        _input_text(
            "synthesis", t(lang, "synthesis"), note.synthesis, multiline=True, placeholder=t(lang, "synthesis_hint")
        )
    )
    body.append(_label(t(lang, "extras")))
    extras = note.extras
    body += [
        _input_text("allergies", t(lang, "allergies"), extras.get("allergies", "")),
        {
            "type": "Input.ChoiceSet",
            "id": "code_status",
            "label": t(lang, "code_status"),
            "value": extras.get("code_status", ""),
            "choices": _choices(lang, "code", CODE_STATUSES),
        },
        _input_text("lines", t(lang, "lines"), extras.get("lines", "")),
        {
            "type": "Input.ChoiceSet",
            "id": "isolation",
            "label": t(lang, "isolation"),
            "value": extras.get("isolation", ""),
            "choices": _choices(lang, "iso", ISOLATIONS),
        },
        _input_text("pending", t(lang, "pending"), extras.get("pending", ""), multiline=True),
        _input_text("patient", t(lang, "patient"), note.patient),
        _input_text("record_number", t(lang, "record_number"), note.record_number),
    ]
    if base is None:
        base = current.version if current else 0
    data = {"verb": "handover.save", "unit": unit, "bed": bed, "base": base}
    return card(body, [execute(t(lang, "save"), data, style="positive")])


def saved_card(lang: str, saved: SavedNote, history_lines: Sequence[str]) -> Card:
    """What the form turns into after a save: the version, whether it is late, the history, and Edit."""
    body = [
        text(t(lang, "saved_title", unit=saved.unit, bed=saved.bed, version=saved.version), weight="Bolder"),
        text(
            t(lang, f"sev_{saved.note.severity}"),
            color=_SEVERITY_COLOR.get(saved.note.severity, "Default"),
            weight="Bolder",
        ),
    ]
    if saved.late:
        body.append(text(t(lang, "saved_late"), color="Warning"))
    body.append(_label(t(lang, "history")))
    body.extend(text(line, isSubtle=True, spacing="None") for line in history_lines)
    data = {"verb": "handover.open", "unit": saved.unit, "bed": saved.bed}
    return card(body, [execute(t(lang, "edit"), data)])


def _row(cells: Sequence[str], *, bold: bool = False, color: str | None = None) -> dict[str, Any]:
    columns = []
    for index, cell in enumerate(cells):
        block = text(cell, weight="Bolder" if bold else "Default")
        if color and index == 1:
            block["color"] = color
        columns.append({"type": "Column", "width": "stretch" if index else "auto", "items": [block]})
    return {"type": "ColumnSet", "columns": columns, "spacing": "Small"}


def summary_card(lang: str, board: Mapping[str, Any]) -> Card:
    """The channel card: beds by severity, open to-dos, whether a note exists, who took over. No patient data."""
    rows: list[Mapping[str, Any]] = board["beds"]
    counts = {s: sum(1 for r in rows if r.get("severity") == s) for s in SEVERITIES}
    body: list[dict[str, Any]] = [
        text(
            t(lang, "card_title", unit=board["unit"], shift=board["shift_label"], next_shift=board["next_label"]),
            size="Medium",
            weight="Bolder",
        ),
        text(
            t(lang, "card_subtitle", at=board["at_label"], count=len(rows), **counts),
            isSubtle=True,
            spacing="None",
        ),
    ]
    if board.get("late_label"):
        body.append(text(t(lang, "card_late", posted=board["late_label"]), color="Warning"))
    acks: Mapping[str, Mapping[str, str]] = board.get("acks") or {}
    recorded = [r for r in rows if r.get("has_note")]
    if recorded:
        body.append(_row([t(lang, "bed"), t(lang, "severity"), t(lang, "open_actions"), t(lang, "acked")], bold=True))
        for row in recorded:
            ack = acks.get(str(row["bed"]))
            body.append(
                _row(
                    [
                        str(row["bed"]),
                        t(lang, f"sev_{row['severity']}"),
                        str(row["open_actions"]),
                        f"{ack['name']} {ack['at']}" if ack else t(lang, "not_acked"),
                    ],
                    color=_SEVERITY_COLOR.get(str(row["severity"])),
                )
            )
    missing = [str(r["bed"]) for r in rows if not r.get("has_note")]
    if not recorded:
        body.append(text(t(lang, "none_recorded", unit=board["unit"]), color="Attention", weight="Bolder"))
    if missing:
        body.append(text(t(lang, "unrecorded", beds=", ".join(missing)), color="Warning"))
    unit_ack = board.get("unit_ack")
    if unit_ack:
        body.append(text(t(lang, "taken_over_all", name=unit_ack["name"], at=unit_ack["at"]), color="Good"))
    data = {"unit": board["unit"], "shift": board["shift_id"]}
    actions = [execute(t(lang, "view_details"), {"verb": "handover.details", **data})]
    if recorded and not unit_ack:
        body += [
            {
                "type": "Input.ChoiceSet",
                "id": "beds",
                "label": t(lang, "ack_choose"),
                "isMultiSelect": True,
                "choices": [{"title": str(r["bed"]), "value": str(r["bed"])} for r in recorded],
            },
            {"type": "Input.Text", "id": "synthesis", "label": t(lang, "ack_synthesis"), "maxLength": 500},
        ]
        actions += [
            execute(t(lang, "ack_beds"), {"verb": "handover.ack", "scope": "beds", **data}),
            execute(t(lang, "ack_all"), {"verb": "handover.ack", "scope": "all", **data}, style="positive"),
        ]
    return card(body, actions)


DETAILS_BUDGET = 40_000  # bytes of card JSON per message: Teams takes about 100 KB (80 KB recommended) with text


def details_cards(lang: str, title: str, notes: Sequence[SavedNote], clock_label: Mapping[int, str]) -> list[Card]:
    """The full notes of a shift, sickest first, split over as many cards as their size needs: 1:1 chats only."""
    if not notes:
        return [card([text(title, size="Medium", weight="Bolder"), text(t(lang, "details_none"))])]
    cards: list[Card] = []
    body: list[dict[str, Any]] = [text(title, size="Medium", weight="Bolder")]
    size = 0
    for index, saved in enumerate(notes):
        container = _note_container(lang, index, saved, clock_label.get(index, ""))
        weight = len(json.dumps(container, ensure_ascii=False).encode())
        if size and size + weight > DETAILS_BUDGET:
            cards.append(card(body))
            body, size = [text(f"{title} ({len(cards) + 1})", weight="Bolder")], 0
        body.append(container)
        size += weight
    cards.append(card(body))
    return cards


def _note_container(lang: str, index: int, saved: SavedNote, saved_label: str) -> dict[str, Any]:
    note = saved.note
    facts = [{"title": t(lang, "severity"), "value": t(lang, f"sev_{note.severity}")}]
    if note.patient:
        facts.append({"title": t(lang, "patient"), "value": note.patient})
    if note.record_number:
        facts.append({"title": t(lang, "record_number"), "value": note.record_number})
    for name in ("allergies", "lines", "pending"):
        if note.extras.get(name):
            facts.append({"title": t(lang, name), "value": note.extras[name]})
    if note.extras.get("code_status"):
        facts.append({"title": t(lang, "code_status"), "value": t(lang, f"code_{note.extras['code_status']}")})
    if note.extras.get("isolation"):
        facts.append({"title": t(lang, "isolation"), "value": t(lang, f"iso_{note.extras['isolation']}")})
    items: list[dict[str, Any]] = [
        text(
            f"[{index + 1}] {t(lang, 'bed')} {saved.bed} · v{saved.version} · {saved.author_name} {saved_label}",
            weight="Bolder",
            color=_SEVERITY_COLOR.get(note.severity, "Default"),
        ),
        {"type": "FactSet", "facts": facts},
        text(f"**{t(lang, 'summary')}**: {note.summary}"),
    ]
    if note.actions:
        lines = [
            f"- {'~~' if a.done else ''}{a.item}{'~~' if a.done else ''}"
            + (f" · {a.owner}" if a.owner else "")
            + (f" · {a.due}" if a.due else "")
            for a in note.actions
        ]
        items.append(text(f"**{t(lang, 'actions')}**\n" + "\n".join(lines)))
    if note.awareness:
        items.append(text(f"**{t(lang, 'awareness')}**: {note.awareness}"))
    if note.contingencies:
        plans = "\n".join(f"- {t(lang, 'if')} {c.condition} → {c.then}" for c in note.contingencies)
        items.append(text(f"**{t(lang, 'contingencies')}**\n{plans}"))
    if note.synthesis:
        items.append(text(f"**{t(lang, 'synthesis')}**: {note.synthesis}"))
    return {"type": "Container", "separator": True, "items": items}
