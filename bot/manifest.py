"""Build Wardline's Teams app manifest, its Korean localisation and the sideloading zip.

Pure functions: no environment reading, no botbuilder. The caller (the `wardline manifest build` CLI) passes
values from `Settings`. The template and icons live in `manifests/` at the repository root.
"""

from __future__ import annotations

import copy
import json
import re
import uuid
import zipfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple, TypeAlias

MANIFESTS_DIR: Final = Path(__file__).resolve().parent.parent / "manifests"
TEMPLATE_PATH: Final = MANIFESTS_DIR / "manifest.template.json"
KO_KR_PATH: Final = MANIFESTS_DIR / "ko-kr.json"
COLOR_ICON: Final = "color.png"
OUTLINE_ICON: Final = "outline.png"
KO_KR_FILE: Final = "ko-kr.json"

MANIFEST_VERSION: Final = "1.30"
"""Newest GA schema in `@microsoft/app-manifest` 1.1.2; the template's `$schema` and `manifestVersion` follow it."""

DEFAULT_HOST_NAME: Final = "wardline.example.org"
"""Placeholder public host. Teams rejects `localhost`; a real deployment passes its own (e.g. from settings)."""

DEFAULT_VERSION: Final = "1.0.0"

Scope: TypeAlias = Literal["personal", "team", "groupChat"]
ALL_SCOPES: Final[tuple[Scope, ...]] = ("personal", "team", "groupChat")

JsonObject: TypeAlias = dict[str, Any]

_PLACEHOLDER = re.compile(r"\$\{\{([A-Z0-9_]+)\}\}")
_GUID = re.compile(r"^[0-9a-fA-F]{8}-([0-9a-fA-F]{4}-){3}[0-9a-fA-F]{12}$")
_SEMVER = re.compile(r"^(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)\.(0|[1-9][0-9]*)$")
_HOST = re.compile(r"^(?=.{1,253}$)(\*\.)?([A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.)+[A-Za-z]{2,63}$")
_TEAMS_APP_NAMESPACE: Final = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/wardline/teams-app-id")
_MAX_COMMANDS_PER_SCOPE: Final = 10


class BotCommand(NamedTuple):
    """One entry of the bot's command menu; `title` is the text Teams sends to the bot when it is picked."""

    title: str
    description: str
    description_ko: str | None = None
    scopes: tuple[Scope, ...] = ALL_SCOPES


DEFAULT_COMMANDS: Final[tuple[BotCommand, ...]] = (
    BotCommand("help", "List what Wardline can do", "Wardline이 할 수 있는 일 보기"),
    BotCommand("ask", "Ask a protocol question", "프로토콜 질문하기"),
)
"""Add a command here (or pass your own list): the manifest and the ko-kr file both follow it."""


@dataclass(frozen=True)
class Developer:
    """The `developer` block; the hospital's IT normally overrides all of it."""

    name: str = "Wardline contributors"
    website_url: str = "https://wardline.example.org"
    privacy_url: str = "https://wardline.example.org/privacy"
    terms_of_use_url: str = "https://wardline.example.org/terms"


def teams_app_id_for(app_id: str) -> str:
    """The default Teams app id: a UUIDv5 of the bot's app id, stable across builds."""
    return str(uuid.uuid5(_TEAMS_APP_NAMESPACE, app_id.strip().lower()))


def load_json(path: Path) -> JsonObject:
    """Read a JSON object (the manifest template or the ko-kr base file)."""
    data = json.loads(path.read_text(encoding="utf-8"))
    if not isinstance(data, dict):
        raise ValueError(f"{path} does not hold a JSON object")
    return data


def build_manifest(
    *,
    app_id: str | None,
    teams_app_id: str | None = None,
    host_name: str = DEFAULT_HOST_NAME,
    version: str = DEFAULT_VERSION,
    commands: Sequence[BotCommand | tuple[str, str]] = DEFAULT_COMMANDS,
    developer: Developer = Developer(),
    single_sign_on: bool = False,
    template: Mapping[str, Any] | None = None,
) -> JsonObject:
    """The Teams app manifest (a new dict) for the bot registered as `app_id`.

    `teams_app_id` defaults to `teams_app_id_for(app_id)`; `host_name` goes to `validDomains`;
    `single_sign_on` adds `webApplicationInfo` (resource `api://{host_name}/{app_id}`).
    """
    if not app_id or not app_id.strip():
        raise ValueError(
            "app_id is required: the Teams manifest needs the bot's Microsoft App ID "
            "(the Azure Bot registration's client id), and an anonymous local bot has none"
        )
    app_id = _require_guid("app_id", app_id)
    teams_app_id = _require_guid("teams_app_id", teams_app_id or teams_app_id_for(app_id))
    if not _HOST.match(host_name) or host_name.lower().startswith("localhost"):
        raise ValueError(f"host_name must be a public DNS name (Teams rejects it otherwise), got {host_name!r}")
    if not _SEMVER.match(version):
        raise ValueError(f"version must be MAJOR.MINOR.PATCH, got {version!r}")

    values = {
        "TEAMS_APP_ID": teams_app_id,
        "BOT_ID": app_id,
        "HOST_NAME": host_name,
        "APP_VERSION": version,
        "DEVELOPER_NAME": developer.name,
        "DEVELOPER_WEBSITE_URL": developer.website_url,
        "DEVELOPER_PRIVACY_URL": developer.privacy_url,
        "DEVELOPER_TERMS_URL": developer.terms_of_use_url,
    }
    source = template if template is not None else load_json(TEMPLATE_PATH)
    manifest = _substitute(copy.deepcopy(dict(source)), values)
    if not isinstance(manifest, dict):
        raise ValueError("the manifest template must be a JSON object")
    _require_resolved(manifest)

    bots = manifest.get("bots")
    if not isinstance(bots, list) or len(bots) != 1 or not isinstance(bots[0], dict):
        raise ValueError("the manifest template must declare exactly one bot")
    bots[0]["commandLists"] = command_lists(commands)
    if single_sign_on:
        manifest["webApplicationInfo"] = {"id": app_id, "resource": f"api://{host_name}/{app_id}"}
    return manifest


def command_lists(commands: Sequence[BotCommand | tuple[str, str]]) -> list[JsonObject]:
    """One `commandLists` entry per scope, in `ALL_SCOPES` order, each with the commands offered there."""
    lists: list[JsonObject] = []
    for scope, scoped in _commands_by_scope(commands):
        lists.append(
            {
                "scopes": [scope],
                "commands": [{"title": c.title, "description": c.description} for c in scoped],
            }
        )
    return lists


def build_localization(
    commands: Sequence[BotCommand | tuple[str, str]] = DEFAULT_COMMANDS,
    *,
    base: Mapping[str, Any] | None = None,
) -> JsonObject:
    """The ko-kr localisation file: names and descriptions from `base`, command keys generated from `commands`.

    Command titles stay as in the manifest (they are the text the bot receives); only descriptions are
    translated. A command without `description_ko` keeps its English description.
    """
    source = base if base is not None else load_json(KO_KR_PATH)
    localization = {k: v for k, v in source.items() if not k.startswith("bots[")}
    for list_index, (_scope, scoped) in enumerate(_commands_by_scope(commands)):
        for command_index, command in enumerate(scoped):
            key = f"bots[0].commandLists[{list_index}].commands[{command_index}]"
            localization[f"{key}.title"] = command.title
            localization[f"{key}.description"] = command.description_ko or command.description
    return localization


def write_package(
    manifest: Mapping[str, Any],
    out: Path,
    *,
    localization: Mapping[str, Any] | None = None,
    assets_dir: Path = MANIFESTS_DIR,
) -> Path:
    """Write the sideloading zip (manifest.json, icons and ko-kr.json at the root) to `out` and return it.

    `localization` defaults to `build_localization()`; it is written only if the manifest references it.
    """
    _require_resolved(manifest)
    icons = manifest.get("icons", {})
    files: dict[str, bytes] = {"manifest.json": _json_bytes(manifest)}
    for icon in (icons.get("color"), icons.get("outline")):
        if not isinstance(icon, str):
            raise ValueError("the manifest must name its color and outline icons")
        files[icon] = (assets_dir / icon).read_bytes()
    for language in manifest.get("localizationInfo", {}).get("additionalLanguages", []):
        name = language["file"]
        if name != KO_KR_FILE:
            raise ValueError(f"no content for localisation file {name!r}")
        files[name] = _json_bytes(localization if localization is not None else build_localization())

    out.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(out, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, content in files.items():
            # A fixed timestamp keeps the package byte-identical across builds.
            archive.writestr(zipfile.ZipInfo(name, date_time=(1980, 1, 1, 0, 0, 0)), content)
    return out


def _commands_by_scope(
    commands: Sequence[BotCommand | tuple[str, str]],
) -> list[tuple[Scope, list[BotCommand]]]:
    normalised = [c if isinstance(c, BotCommand) else BotCommand(*c) for c in commands]
    titles = [c.title for c in normalised]
    if len(set(titles)) != len(titles):
        raise ValueError(f"command titles must be unique, got {titles}")
    grouped: list[tuple[Scope, list[BotCommand]]] = []
    for scope in ALL_SCOPES:
        scoped = [c for c in normalised if scope in c.scopes]
        if len(scoped) > _MAX_COMMANDS_PER_SCOPE:
            limit = _MAX_COMMANDS_PER_SCOPE
            raise ValueError(f"Teams shows at most {limit} commands per scope; {scope} has {len(scoped)}")
        if scoped:
            grouped.append((scope, scoped))
    return grouped


def _substitute(node: Any, values: Mapping[str, str]) -> Any:
    if isinstance(node, str):
        return _PLACEHOLDER.sub(lambda m: values.get(m.group(1), m.group(0)), node)
    if isinstance(node, list):
        return [_substitute(item, values) for item in node]
    if isinstance(node, dict):
        return {key: _substitute(value, values) for key, value in node.items()}
    return node


def _require_resolved(manifest: Mapping[str, Any]) -> None:
    left = sorted(set(_PLACEHOLDER.findall(json.dumps(manifest))))
    if left:
        raise ValueError(f"unresolved manifest placeholders: {', '.join(left)}")


def _require_guid(name: str, value: str) -> str:
    if not _GUID.match(value.strip()):
        raise ValueError(f"{name} must be a GUID like 00000000-0000-0000-0000-000000000000, got {value!r}")
    return value.strip().lower()


def _json_bytes(data: Mapping[str, Any]) -> bytes:
    return (json.dumps(data, ensure_ascii=False, indent=2) + "\n").encode("utf-8")
