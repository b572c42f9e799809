"""Validate Adaptive Cards against the official 1.5 schema, the highest version Teams renders."""

from __future__ import annotations

from typing import Any

from tests.manifests.schemas import adaptive_card_validator, describe_errors

TEAMS_MAX_CARD_VERSION = (1, 5)


class CardValidationError(AssertionError):
    """An Adaptive Card that Teams would not render as intended."""


def validate_card(card: dict[str, Any]) -> None:
    """Raise `CardValidationError` with a readable message unless `card` is a valid Adaptive Card for Teams.

    Checks the official Adaptive Cards 1.5 JSON schema and that the top-level `version` is at most 1.5.
    Fails the test (with the install command) when the schema file is not installed.
    """
    problems: list[str] = []
    version = card.get("version") if isinstance(card, dict) else None
    if card.get("type") != "AdaptiveCard":
        problems.append(f"- at $.type: expected 'AdaptiveCard', got {card.get('type')!r}")
    if not isinstance(version, str):
        problems.append("- at $.version: a top-level card needs a version string such as '1.5'")
    elif _parse_version(version) is None:
        problems.append(f"- at $.version: {version!r} is not MAJOR.MINOR")
    elif (_parse_version(version) or (0, 0)) > TEAMS_MAX_CARD_VERSION:
        problems.append(f"- at $.version: Teams renders Adaptive Cards up to 1.5, got {version}")
    schema_errors = describe_errors(adaptive_card_validator(), card)
    if schema_errors:
        problems.append(schema_errors)
    if problems:
        raise CardValidationError("invalid Adaptive Card:\n" + "\n".join(problems))


def _parse_version(version: str) -> tuple[int, int] | None:
    major, _, minor = version.partition(".")
    if not (major.isdigit() and minor.isdigit()):
        return None
    return int(major), int(minor)
