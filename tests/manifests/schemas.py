"""Offline access to Microsoft's JSON schemas installed by `bash infra/e2e/install.sh` (no network at test time)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft4Validator, Draft6Validator
from jsonschema.exceptions import ValidationError
from jsonschema.protocols import Validator
from jsonschema.validators import validator_for
from referencing import Registry, Resource
from referencing.exceptions import NoSuchResource
from referencing.jsonschema import DRAFT4

ROOT = Path(__file__).resolve().parents[2]
E2E_TOOLS = ROOT / "infra" / "e2e"
INSTALL_HINT = "run `bash infra/e2e/install.sh` (or `make e2e-deps`) to install them"
TEAMS_SCHEMAS = E2E_TOOLS / "node_modules" / "@microsoft" / "app-manifest" / "build" / "json-schemas" / "teams"
ADAPTIVE_CARD_SCHEMA = E2E_TOOLS / "vendor" / "adaptive-card-1.5.json"
TEAMS_SCHEMA_URLS = (
    "https://developer.microsoft.com/json-schemas/teams",
    "https://developer.microsoft.com/en-us/json-schemas/teams",
)


def require_file(path: Path, what: str) -> Path:
    """`path`, or a test failure (never a skip) that says how to install it."""
    if not path.is_file():
        pytest.fail(f"{what} not found at {path.relative_to(ROOT)}: {INSTALL_HINT}", pytrace=False)
    return path


@cache
def load_schema(path: Path) -> dict[str, Any]:
    data = json.loads(path.read_text(encoding="utf-8"))
    assert isinstance(data, dict)
    return data


def _refuse_remote(uri: str) -> Resource[Any]:
    # A $ref that is neither inside the schema nor one of the installed files: fail loudly, never fetch.
    raise NoSuchResource(ref=uri)  # type: ignore[call-arg]


@cache
def teams_registry(version: str) -> Registry[Any]:
    """Every installed Teams schema of `version`, registered under its public URLs, so remote $refs resolve locally."""
    folder = require_file(TEAMS_SCHEMAS / f"v{version}" / "MicrosoftTeams.schema.json", "Teams schema").parent
    registry: Registry[Any] = Registry(retrieve=_refuse_remote)  # type: ignore[call-arg]
    for path in sorted(folder.glob("*.json")):
        resource = Resource.from_contents(load_schema(path), default_specification=DRAFT4)
        for base in TEAMS_SCHEMA_URLS:
            registry = registry.with_resource(f"{base}/v{version}/{path.name}", resource)
    return registry


def teams_validator(version: str, name: str = "MicrosoftTeams.schema.json") -> Validator:
    """A validator for the installed Teams schema `name` of manifest `version` (e.g. "1.30")."""
    path = require_file(TEAMS_SCHEMAS / f"v{version}" / name, f"Teams schema {name} v{version}")
    schema = load_schema(path)
    cls = validator_for(schema, default=Draft4Validator)
    return cls(schema, registry=teams_registry(version), format_checker=cls.FORMAT_CHECKER)


def adaptive_card_validator() -> Validator:
    """A validator for the official Adaptive Cards 1.5 schema (draft-06), loaded from disk."""
    schema = load_schema(require_file(ADAPTIVE_CARD_SCHEMA, "Adaptive Cards 1.5 schema"))
    registry: Registry[Any] = Registry(retrieve=_refuse_remote)  # type: ignore[call-arg]
    return Draft6Validator(schema, registry=registry, format_checker=Draft6Validator.FORMAT_CHECKER)


def describe_errors(validator: Validator, instance: object, limit: int = 8) -> str | None:
    """A readable list of the innermost validation errors, or None when `instance` is valid."""
    errors = [leaf for error in validator.iter_errors(instance) for leaf in _leaf_errors(error)]
    if not errors:
        return None
    unique = list({(e.json_path, e.message): e for e in errors}.values())
    lines = [f"- at {e.json_path}: {_shorten(e.message)}" for e in unique[:limit]]
    if len(unique) > limit:
        lines.append(f"- ... and {len(unique) - limit} more")
    return "\n".join(lines)


def _leaf_errors(error: ValidationError) -> Iterator[ValidationError]:
    """Descend through anyOf/oneOf into the branch meant for the instance's `type` (e.g. "Action.OpenUrl")."""
    if error.validator not in ("anyOf", "oneOf") or not error.context:
        yield error
        return
    branches: dict[object, list[ValidationError]] = {}
    for sub in error.context:
        branches.setdefault(sub.relative_schema_path[0], []).append(sub)
    wanted = error.instance.get("type") if isinstance(error.instance, dict) else None
    chosen: list[ValidationError] | None = None
    if isinstance(wanted, str) and isinstance(error.schema, dict):
        options = error.schema[str(error.validator)]
        for index, subs in branches.items():
            if isinstance(index, int) and f'/{wanted}"' in json.dumps(options[index]):
                chosen = subs
    if chosen is None:
        yield error
        return
    for sub in chosen:
        yield from _leaf_errors(sub)


def _shorten(message: str, limit: int = 200) -> str:
    return message if len(message) <= limit else message[: limit - 3] + "..."
