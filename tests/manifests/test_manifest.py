"""The Teams app package: manifest and ko-kr file valid against Microsoft's schemas, icons Teams accepts, the zip."""

from __future__ import annotations

import json
import re
import uuid
import zipfile
from pathlib import Path
from typing import Any

import pytest
from PIL import Image

from bot.manifest import (
    DEV_DEVELOPER,
    KO_KR_PATH,
    MANIFEST_VERSION,
    MANIFESTS_DIR,
    TEMPLATE_PATH,
    BotCommand,
    Developer,
    bot_commands,
    build_localization,
    build_manifest,
    descriptions,
    load_json,
    publishing_problems,
    teams_app_id_for,
    write_package,
)
from skills import protocols
from skills.core.fakes import ManualClock, MemoryStore
from skills.core.router import Router
from skills.core.skill import Context
from skills.protocols.library import ProtocolLibrary
from tests.manifests.schemas import describe_errors, teams_validator

BOT_APP_ID = "8f0c2f41-6a3e-4c55-9d1b-2b7f1f0d9a10"
LOCALIZATION_SCHEMA = "MicrosoftTeams.Localization.schema.json"
HOSPITAL = Developer(
    name="Seoul General Hospital IT",
    website_url="https://it.seoulgeneral.kr/wardline",
    privacy_url="https://it.seoulgeneral.kr/privacy",
    terms_of_use_url="https://it.seoulgeneral.kr/terms",
)


def router_commands() -> list[BotCommand]:
    store = MemoryStore()
    skill = protocols.create_skill(Context(store=store, clock=ManualClock()), ProtocolLibrary(store), protocols.SAMPLES)
    return bot_commands(Router([skill]).commands())


COMMANDS = router_commands()


def built(**overrides: Any) -> dict[str, Any]:
    arguments: dict[str, Any] = {
        "app_id": BOT_APP_ID,
        "host_name": "wardline.hospital.example.org",
        "commands": COMMANDS,
        "developer": HOSPITAL,
    }
    arguments.update(overrides)
    return build_manifest(**arguments)


def assert_valid_manifest(manifest: dict[str, Any]) -> None:
    errors = describe_errors(teams_validator(manifest["manifestVersion"]), manifest)
    assert errors is None, f"manifest is invalid against the Teams v{manifest['manifestVersion']} schema:\n{errors}"


def assert_valid_localization(localization: dict[str, Any]) -> None:
    errors = describe_errors(teams_validator(MANIFEST_VERSION, LOCALIZATION_SCHEMA), localization)
    assert errors is None, f"ko-kr localisation is invalid:\n{errors}"


def test_built_manifest_is_valid_against_microsofts_schema() -> None:
    manifest = built()
    assert_valid_manifest(manifest)
    assert "${{" not in json.dumps(manifest)


def test_template_and_builder_agree_on_the_schema_version() -> None:
    template = load_json(TEMPLATE_PATH)
    assert template["manifestVersion"] == MANIFEST_VERSION
    assert f"/v{MANIFEST_VERSION}/MicrosoftTeams.schema.json" in template["$schema"]
    # draft-04 validators ignore `const`, so check the schema's pinned version here.
    schema = teams_validator(MANIFEST_VERSION).schema
    assert isinstance(schema, dict)
    assert schema["properties"]["manifestVersion"]["const"] == MANIFEST_VERSION


def test_placeholders_are_filled_from_the_arguments() -> None:
    manifest = built(teams_app_id="0d7a5c1e-3b9f-4c62-8a4e-5f1b2c3d4e5f", version="2.3.4")
    assert manifest["id"] == "0d7a5c1e-3b9f-4c62-8a4e-5f1b2c3d4e5f"
    assert manifest["version"] == "2.3.4"
    assert manifest["bots"][0]["botId"] == BOT_APP_ID
    assert manifest["validDomains"] == ["wardline.hospital.example.org"]


def test_the_bot_is_offered_in_all_three_scopes_without_files() -> None:
    bot = built()["bots"][0]
    assert set(bot["scopes"]) == {"personal", "team", "groupChat"}
    assert bot["supportsFiles"] is False
    assert [entry["scopes"] for entry in bot["commandLists"]] == [["personal"], ["team"], ["groupChat"]]
    for entry in bot["commandLists"]:
        commands = {c["title"]: c["description"] for c in entry["commands"]}
        assert commands["help"] == "List what Wardline can do"
        assert commands["ask"] == "Ask a protocol question (or just type it)"


def test_adding_a_command_is_one_list_entry() -> None:
    commands = [*COMMANDS, BotCommand("handover", "Start a shift handover", "인수인계 시작", ("personal",))]
    manifest = built(commands=commands)
    localization = build_localization(commands)
    assert_valid_manifest(manifest)
    assert_valid_localization(localization)
    personal, team, _group = manifest["bots"][0]["commandLists"]
    assert [c["title"] for c in personal["commands"]] == ["help", "ask", "handover"]
    assert [c["title"] for c in team["commands"]] == ["help", "ask"]
    assert localization["bots[0].commandLists[0].commands[2].description"] == "인수인계 시작"
    assert "bots[0].commandLists[1].commands[2].title" not in localization


def test_plain_pairs_work_as_commands() -> None:
    manifest = built(commands=[("help", "List what Wardline can do")])
    assert_valid_manifest(manifest)
    assert manifest["bots"][0]["commandLists"][0]["commands"] == [
        {"title": "help", "description": "List what Wardline can do"}
    ]


@pytest.mark.parametrize("app_id", [None, "", "   "])
def test_a_missing_app_id_is_a_clear_error(app_id: str | None) -> None:
    with pytest.raises(ValueError, match="app_id is required"):
        built(app_id=app_id)


def test_an_app_id_that_is_not_a_guid_is_rejected() -> None:
    with pytest.raises(ValueError, match="GUID"):
        built(app_id="wardline-bot")


def test_the_teams_app_id_defaults_to_a_stable_uuid5_of_the_bot_id() -> None:
    default = built()["id"]
    assert default == teams_app_id_for(BOT_APP_ID) == built()["id"]
    assert uuid.UUID(default).version == 5
    assert default != BOT_APP_ID
    assert teams_app_id_for(BOT_APP_ID.upper()) == default
    assert built(app_id="11111111-2222-4333-8444-555555555555")["id"] != default


@pytest.mark.parametrize("host", ["localhost", "localhost:3978", "127.0.0.1", "https://wardline.example.org", ""])
def test_host_names_teams_would_reject_are_refused(host: str) -> None:
    with pytest.raises(ValueError, match="host_name"):
        built(host_name=host)


def test_placeholder_hosts_and_urls_keep_a_package_from_staff() -> None:
    assert publishing_problems("wardline.seoulgeneral.kr", HOSPITAL) == []
    problems = publishing_problems("wardline.example.org", DEV_DEVELOPER)
    assert any("WARDLINE_PUBLIC_HOSTNAME" in p for p in problems)
    assert any("WARDLINE_PRIVACY_URL" in p for p in problems)
    assert any("WARDLINE_TERMS_URL" in p for p in problems)
    missing = publishing_problems("wardline.seoulgeneral.kr", Developer("", "", "", ""))
    assert len(missing) == 4


def test_the_description_lists_only_installed_skills() -> None:
    manifest = built()
    assert "protocol" in manifest["description"]["full"]
    for absent in ("handover", "alarm", "I-PASS", "infusion"):
        assert absent not in manifest["description"]["full"]
    assert "AI-generated" not in manifest["description"]["full"]  # quoted extracts are not AI-generated
    bare = built(skills=[])["description"]["full"]
    assert "protocol" not in bare
    for language in ("en", "ko"):
        short, full = descriptions(["protocols"])[language]
        assert len(short) <= 80
        assert len(full) <= 4000


@pytest.mark.parametrize("version", ["1.0", "v1.0.0", "1.0.0-beta", "01.0.0"])
def test_versions_must_be_plain_semver(version: str) -> None:
    with pytest.raises(ValueError, match="version"):
        built(version=version)


def test_single_sign_on_adds_web_application_info() -> None:
    manifest = built(single_sign_on=True)
    assert_valid_manifest(manifest)
    assert manifest["webApplicationInfo"] == {
        "id": BOT_APP_ID,
        "resource": f"api://wardline.hospital.example.org/{BOT_APP_ID}",
    }
    assert "webApplicationInfo" not in built()


def test_an_unknown_placeholder_in_the_template_is_reported() -> None:
    template = load_json(TEMPLATE_PATH)
    template["name"]["full"] = "Wardline ${{WARD_NAME}}"
    with pytest.raises(ValueError, match="WARD_NAME"):
        built(template=template)


def test_the_committed_ko_kr_file_is_valid_against_microsofts_schema() -> None:
    localization = load_json(KO_KR_PATH)
    assert_valid_localization(localization)
    assert f"/v{MANIFEST_VERSION}/{LOCALIZATION_SCHEMA}" in localization["$schema"]
    assert re.search("[가-힣]", localization["description.full"])


def test_the_localization_follows_the_router_commands() -> None:
    localization = build_localization(COMMANDS)
    assert_valid_localization(localization)
    assert localization["description.full"] == descriptions(["protocols"])["ko"][1]
    lists = built()["bots"][0]["commandLists"]
    key = re.compile(r"^bots\[0\]\.commandLists\[(\d+)\]\.commands\[(\d+)\]\.(title|description)$")
    keys = [k for k in localization if k.startswith("bots[")]
    assert len(keys) == 2 * sum(len(entry["commands"]) for entry in lists)
    for name in keys:
        match = key.match(name)
        assert match, name
        list_index, command_index, field = int(match[1]), int(match[2]), match[3]
        command = lists[list_index]["commands"][command_index]
        if field == "title":
            assert localization[name] == command["title"]
    assert localization["bots[0].commandLists[0].commands[1].description"].startswith("프로토콜 질문하기")


def test_the_manifest_declares_the_ko_kr_file() -> None:
    info = built()["localizationInfo"]
    assert info["defaultLanguageTag"] == "en-us"
    assert info["additionalLanguages"] == [{"languageTag": "ko-kr", "file": "ko-kr.json"}]


def test_the_color_icon_is_192_square_and_opaque() -> None:
    with Image.open(MANIFESTS_DIR / "color.png") as icon:
        assert icon.format == "PNG"
        assert icon.size == (192, 192)
        alpha = icon.convert("RGBA").getchannel("A")
        assert alpha.getextrema() == (255, 255)


def test_the_outline_icon_is_32_square_white_on_transparent() -> None:
    with Image.open(MANIFESTS_DIR / "outline.png") as icon:
        assert icon.format == "PNG"
        assert icon.size == (32, 32)
        rgba = icon.convert("RGBA")
    pixels = [rgba.getpixel((x, y)) for y in range(32) for x in range(32)]
    offending = [p for p in pixels if isinstance(p, tuple) and p[3] > 0 and p[:3] != (255, 255, 255)]
    assert offending == [], "outline.png may only hold white pixels (with any alpha) on transparency"
    alphas = [p[3] for p in pixels if isinstance(p, tuple)]
    assert 0 in alphas, "outline.png needs a transparent background"
    assert max(alphas) == 255, "outline.png needs a visible glyph"


def test_the_package_holds_exactly_what_teams_needs_at_its_root(tmp_path: Path) -> None:
    manifest = built()
    package = write_package(manifest, tmp_path / "out" / "wardline.zip", localization=build_localization(COMMANDS))
    with zipfile.ZipFile(package) as archive:
        assert sorted(archive.namelist()) == ["color.png", "ko-kr.json", "manifest.json", "outline.png"]
        assert json.loads(archive.read("manifest.json")) == manifest
        assert json.loads(archive.read("ko-kr.json")) == build_localization(COMMANDS)
        assert archive.read("color.png") == (MANIFESTS_DIR / "color.png").read_bytes()
        assert archive.read("outline.png") == (MANIFESTS_DIR / "outline.png").read_bytes()


def test_the_package_is_reproducible(tmp_path: Path) -> None:
    ko = build_localization(COMMANDS)
    first = write_package(built(), tmp_path / "a.zip", localization=ko).read_bytes()
    second = write_package(built(), tmp_path / "b.zip", localization=ko).read_bytes()
    assert first == second


def test_a_manifest_with_placeholders_is_never_packaged(tmp_path: Path) -> None:
    manifest = built()
    manifest["id"] = "${{TEAMS_APP_ID}}"
    with pytest.raises(ValueError, match="TEAMS_APP_ID"):
        write_package(manifest, tmp_path / "wardline.zip")
