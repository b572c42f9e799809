"""Build Wardline's Teams app manifest, its Korean localisation and the sideloading zip.

Pure functions: no environment reading, no botbuilder. The caller (the `wardline manifest build` CLI) passes
values from `Settings`, the command list from the router (`Router.commands()`) and the installed skills' names, so
the package offers exactly the commands the bot answers and describes only what works. The template and icons live
in `manifests/` at the repository root.
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

DEV_HOST_NAME: Final = "wardline.example.org"
"""Placeholder public host for `wardline manifest build --dev` only; a real package names the hospital's host."""

PLACEHOLDER_DOMAINS: Final = ("example.org", "example.com", "example.net")

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


class Capability(NamedTuple):
    """What one installed skill lets staff do, as Teams' app listing says it: a phrase and sentences, en and ko."""

    short_en: str
    en: str
    short_ko: str
    ko: str


CAPABILITIES: Final[dict[str, Capability]] = {
    "protocols": Capability(
        "cited protocol answers",
        "Ask a question about your hospital's protocols and get an answer that cites the protocol section it comes "
        "from, or a plain statement that the protocols do not cover it. Answers quote or summarise the cited "
        "sections and can be wrong: check the source.",
        "출처가 있는 프로토콜 답변",
        "병원 프로토콜에 관해 질문하면 근거가 된 프로토콜 항목을 출처로 밝힌 답변을 받고, 프로토콜에 없는 내용이면 "
        "없다고 알려 줍니다. 답변은 출처 항목을 인용하거나 요약한 것이며 틀릴 수 있으니 출처를 확인하세요.",
    ),
    "alerts": Capability(
        "alarms",
        "Device alarms from the hospital's monitor and pump gateways appear in the unit's channel as cards that show "
        "unit, room and bed only, update in place, and can be accepted or declined; unanswered alarms escalate. Chat "
        "notifications never replace the bedside monitor.",
        "알람",
        "모니터와 주입 펌프 게이트웨이의 장비 알람이 병동 채널에 병동·병실·침상만 표시한 "
        "카드로 올라오고, 같은 카드에서 갱신되며, 수락하거나 거절할 수 있습니다. "
        "아무도 응답하지 않으면 상위 단계로 알립니다. 채팅 알림은 침상 모니터를 대신하지 않습니다.",
    ),
    "handover": Capability(
        "handovers",
        "Nurses write I-PASS handover notes per bed in a one-to-one chat; at each shift change the unit's channel gets "
        "a summary card without names, and receivers acknowledge it. Patient details are only shown in one-to-one "
        "chats.",
        "인계",
        "간호사는 1:1 채팅에서 침상별 I-PASS 인계 기록을 작성하고, 근무 교대마다 병동 채널에 이름 없는 요약 카드가 "
        "올라오며 인수자가 확인합니다. 환자 정보는 1:1 채팅에서만 보입니다.",
    ),
    "broadcast": Capability(
        "bulletins",
        "Ward managers send bulletins to one, several or all units and see which units acknowledged them.",
        "공지",
        "병동 관리자는 한 병동, 여러 병동 또는 전체에 공지를 보내고 어느 병동이 확인했는지 볼 수 있습니다.",
    ),
}
"""One entry per skill, keyed by `Skill.name`: the description lists exactly the installed skills' entries."""

_SHORT: Final = {"en": "Ward assistant", "ko": "병동 도우미"}
_INTRO: Final = {
    "en": "Wardline is an open-source assistant for hospital ward teams in Microsoft Teams.",
    "ko": "Wardline은 Microsoft Teams에서 병동 팀을 돕는 오픈 소스 도우미입니다.",
}
_CLOSING: Final = {
    "en": "Wardline is free software; your hospital runs its own copy.",
    "ko": "Wardline은 자유 소프트웨어이며 각 병원이 직접 운영합니다.",
}


@dataclass(frozen=True)
class Developer:
    """The `developer` block: the hospital that runs this bot (settings WARDLINE_DEVELOPER_NAME and the URLs)."""

    name: str
    website_url: str
    privacy_url: str
    terms_of_use_url: str


DEV_DEVELOPER: Final = Developer(
    name="Wardline (development build)",
    website_url="https://wardline.example.org",
    privacy_url="https://wardline.example.org/privacy",
    terms_of_use_url="https://wardline.example.org/terms",
)
"""Placeholders for `--dev` packages only (a test tenant); a real package refuses them."""


def descriptions(skills: Sequence[str]) -> dict[str, tuple[str, str]]:
    """(short, full) description per language ("en", "ko") listing what the installed `skills` do, in order."""
    capabilities = [CAPABILITIES[name] for name in skills if name in CAPABILITIES]
    result: dict[str, tuple[str, str]] = {}
    for language in ("en", "ko"):
        phrases = ", ".join(getattr(c, f"short_{language}") for c in capabilities)
        short = f"{_SHORT[language]}: {phrases}" if phrases else _SHORT[language]
        said = [getattr(c, language) for c in capabilities]
        result[language] = (short, " ".join([_INTRO[language], *said, _CLOSING[language]]))
    return result


def publishing_problems(host_name: str, developer: Developer) -> list[str]:
    """What keeps a package from being given to staff: placeholder hosts or URLs, missing privacy or terms pages."""
    problems: list[str] = []
    if not developer.name.strip():
        problems.append("WARDLINE_DEVELOPER_NAME is not set (who runs this bot)")
    for setting, url in (
        ("WARDLINE_WEBSITE_URL", developer.website_url),
        ("WARDLINE_PRIVACY_URL", developer.privacy_url),
        ("WARDLINE_TERMS_URL", developer.terms_of_use_url),
    ):
        if not url:
            problems.append(f"{setting} is not set")
        elif _is_placeholder(url.split("://", 1)[-1].split("/", 1)[0]):
            problems.append(f"{setting} points at a placeholder domain ({url})")
    if _is_placeholder(host_name):
        problems.append(f"WARDLINE_PUBLIC_HOSTNAME is a placeholder domain ({host_name})")
    return problems


def _is_placeholder(host: str) -> bool:
    host = host.lower().rstrip(".")
    return any(host == d or host.endswith("." + d) for d in PLACEHOLDER_DOMAINS)


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
    host_name: str,
    commands: Sequence[BotCommand | tuple[str, str]],
    developer: Developer,
    skills: Sequence[str] = ("protocols",),
    teams_app_id: str | None = None,
    version: str = DEFAULT_VERSION,
    single_sign_on: bool = False,
    template: Mapping[str, Any] | None = None,
) -> JsonObject:
    """The Teams app manifest (a new dict) for the bot registered as `app_id`.

    `commands` are the router's (`bot_commands(router.commands())`); `skills` the installed skills' names, which
    choose the description. `teams_app_id` defaults to `teams_app_id_for(app_id)`; `host_name` goes to
    `validDomains`; `single_sign_on` adds `webApplicationInfo` (resource `api://{host_name}/{app_id}`).
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

    short, full = descriptions(skills)["en"]
    values = {
        "DESCRIPTION_SHORT": short,
        "DESCRIPTION_FULL": full,
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


def bot_commands(commands: Sequence[Any]) -> list[BotCommand]:
    """The manifest's command list from the router's commands (`skills.core.skill.Command`: name, descriptions)."""
    return [BotCommand(c.name, c.description, c.description_ko or None) for c in commands]


def build_localization(
    commands: Sequence[BotCommand | tuple[str, str]],
    *,
    skills: Sequence[str] = ("protocols",),
    base: Mapping[str, Any] | None = None,
) -> JsonObject:
    """The ko-kr localisation file: names from `base`, descriptions from `skills`, command keys from `commands`.

    Command titles stay as in the manifest (they are the text the bot receives); only descriptions are
    translated. A command without `description_ko` keeps its English description.
    """
    source = base if base is not None else load_json(KO_KR_PATH)
    localization = {k: v for k, v in source.items() if not k.startswith("bots[")}
    localization["description.short"], localization["description.full"] = descriptions(skills)["ko"]
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

    `localization` (from `build_localization`) is required when the manifest references a ko-kr file.
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
        if localization is None:
            raise ValueError("the manifest references ko-kr.json: pass its content (build_localization)")
        files[name] = _json_bytes(localization)

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
