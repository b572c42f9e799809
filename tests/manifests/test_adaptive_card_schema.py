"""The Adaptive Cards 1.5 validator accepts what Teams renders and explains what it would not."""

from __future__ import annotations

from typing import Any

import pytest

from tests.manifests.adaptive_card_schema import CardValidationError, validate_card
from tests.manifests.schemas import ADAPTIVE_CARD_SCHEMA, load_schema, require_file


def alarm_card(**overrides: Any) -> dict[str, Any]:
    card: dict[str, Any] = {
        "type": "AdaptiveCard",
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "version": "1.5",
        "body": [
            {"type": "TextBlock", "text": "SpO2 low - 7W room 12 bed 1", "weight": "Bolder", "wrap": True},
            {"type": "TextBlock", "text": "Check the bedside monitor.", "wrap": True, "style": "heading"},
            {
                "type": "Table",
                "columns": [{"width": 1}, {"width": 2}],
                "rows": [
                    {
                        "type": "TableRow",
                        "cells": [
                            {"type": "TableCell", "items": [{"type": "TextBlock", "text": "Priority"}]},
                            {"type": "TableCell", "items": [{"type": "TextBlock", "text": "High"}]},
                        ],
                    }
                ],
            },
        ],
        "actions": [
            {
                "type": "Action.Execute",
                "title": "Accept",
                "verb": "accept",
                "data": {"alert": "a1"},
                "fallback": {"type": "Action.Submit", "title": "Accept", "data": {"verb": "accept", "alert": "a1"}},
            }
        ],
    }
    card.update(overrides)
    return card


def test_the_schema_is_the_official_1_5_schema() -> None:
    schema = load_schema(require_file(ADAPTIVE_CARD_SCHEMA, "Adaptive Cards 1.5 schema"))
    assert schema["$schema"] == "http://json-schema.org/draft-06/schema#"
    assert schema["id"] == "http://adaptivecards.io/schemas/adaptive-card.json"
    definitions = schema["definitions"]
    # Elements and properties that appeared in 1.5 (Table, TextBlock style "heading", Action.isEnabled).
    assert definitions["Table"]["version"] == "1.5"
    assert definitions["TextBlockStyle"]["version"] == "1.5"
    assert "isEnabled" in definitions["Extendable.Action"]["properties"]
    assert "Action.Execute" in definitions


def test_a_teams_alarm_card_is_valid() -> None:
    validate_card(alarm_card())


def test_an_unknown_property_is_reported_with_its_path() -> None:
    card = alarm_card()
    card["body"][0]["colour"] = "attention"
    with pytest.raises(CardValidationError, match=r"\$\.body\[0\]|colour"):
        validate_card(card)


def test_an_element_without_type_is_rejected() -> None:
    card = alarm_card(body=[{"text": "no type"}])
    with pytest.raises(CardValidationError, match="body"):
        validate_card(card)


def test_a_missing_required_property_is_rejected() -> None:
    card = alarm_card(actions=[{"type": "Action.OpenUrl", "title": "Protocol"}])
    with pytest.raises(CardValidationError, match="url"):
        validate_card(card)


@pytest.mark.parametrize("version", ["1.6", "2.0"])
def test_versions_above_what_teams_renders_are_rejected(version: str) -> None:
    with pytest.raises(CardValidationError, match=r"up to 1\.5"):
        validate_card(alarm_card(version=version))


def test_a_card_needs_a_version_and_the_card_type() -> None:
    card = alarm_card(type="Card")
    del card["version"]
    with pytest.raises(CardValidationError) as failure:
        validate_card(card)
    assert "version" in str(failure.value)
    assert "AdaptiveCard" in str(failure.value)
