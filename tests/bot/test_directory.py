"""The staff directory file: parsing, every error as one line with file and line, reloads that keep a good directory."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from bot.directory import EXAMPLE, DirectoryError, LiveDirectory, load_directory, parse_directory
from bot.settings import SettingsError
from skills.core.types import User

NURSE = "6a0f3b1e-0000-4000-8000-000000000001"
CHARGE = "6a0f3b1e-0000-4000-8000-000000000002"

GOOD = f"""\
[units.7W]
name = "7 West"
alarm_escalation_seconds = 60

[units.ICU]
timezone = "Europe/Berlin"
shifts = ["19:00", "07:00"]
handover_lead_minutes = 45
channel = "19:icu@thread.tacv2"

[[staff]]
aad_object_id = "{NURSE}"
name = "Kim Nurse"
roles = ["nurse"]
units = ["7W"]

[[staff]]
aad_object_id = "{CHARGE.upper()}"
name = "Lee Charge"
roles = ["nurse", "charge"]
units = ["7W", "ICU"]
"""


def test_example_ships_and_parses() -> None:
    directory = load_directory(EXAMPLE)
    assert [unit.id for unit in directory.units()] == ["7W", "8E", "ICU"]
    assert directory.staff(unit="7W", role="charge")[0].name == "Lee Charge"
    assert "Kim Nurse" in directory.known_names()


def test_units_get_defaults_options_and_sorted_shifts() -> None:
    directory = parse_directory(GOOD, "d.toml")
    ward = directory.unit("7W")
    assert ward is not None
    assert (ward.name, ward.timezone, ward.shifts, ward.handover_lead_minutes) == (
        "7 West",
        "Asia/Seoul",
        ("07:00", "15:00", "23:00"),
        30,
    )
    assert ward.options == {"alarm_escalation_seconds": 60}
    icu = directory.unit("ICU")
    assert icu is not None
    assert icu.shifts == ("07:00", "19:00") and icu.timezone == "Europe/Berlin" and icu.handover_lead_minutes == 45
    assert icu.options == {"channel": "19:icu@thread.tacv2"}
    assert directory.unit("8E") is None


def test_staff_queries_and_case_insensitive_object_ids() -> None:
    directory = parse_directory(GOOD, "d.toml")
    assert [m.name for m in directory.staff(unit="ICU")] == ["Lee Charge"]
    assert [m.name for m in directory.staff(role="nurse")] == ["Kim Nurse", "Lee Charge"]
    assert directory.member(CHARGE.upper()) == directory.member(CHARGE)
    assert directory.member(CHARGE) is not None


@pytest.mark.parametrize(
    ("text", "line", "problem"),
    [
        ("[units.7W]\nname = 'x'\nname = 'y'\n", 3, "TOML syntax error"),
        ("[units.7W]\n[units.7W]\n", 2, "TOML syntax error"),  # tomllib: cannot declare a table twice
        ("[units.7W]\n\n[units.7w]\n", 3, "unit '7w' is defined twice"),
        ("[units.7W]\ntimezone = 'Asia/Busan'\n", 1, "unknown timezone 'Asia/Busan'"),
        ("[units.7W]\nshifts = ['7:00']\n", 1, "bad shift time '7:00'"),
        ("[units.7W]\nshifts = ['07:00', '24:00']\n", 1, "bad shift time '24:00'"),
        ("[units.7W]\nshifts = ['07:00', '07:00']\n", 1, "listed twice"),
        ("[units.7W]\nhandover_lead_minutes = -5\n", 1, "handover_lead_minutes"),
        ('[units."7W:x"]\n', 1, "unit id '7W:x'"),
        (f"[units.7W]\n\n[[staff]]\naad_object_id = '{NURSE}'\nroles = ['surgeon']\n", 3, "unknown role 'surgeon'"),
        (
            f"[units.7W]\n[[staff]]\naad_object_id = '{NURSE}'\nroles = ['nurse']\nunits = ['8E']\n",
            2,
            "unknown unit '8E'",
        ),
        ("[[staff]]\naad_object_id = 'kim'\nroles = ['nurse']\n", 1, "not an Entra object id"),
        ("[[staff]]\nroles = ['nurse']\n", 1, "aad_object_id is missing"),
        (f"[[staff]]\naad_object_id = '{NURSE}'\nroles = []\n", 1, "roles is empty"),
        (f"[[staff]]\naad_object_id = '{NURSE}'\nrole = ['nurse']\n", 1, "unknown key 'role'"),
        (
            f"[[staff]]\naad_object_id = '{NURSE}'\nroles = ['nurse']\n[[staff]]\naad_object_id = '{NURSE}'\n"
            "roles = ['doctor']\n",
            4,
            "listed twice",
        ),
        ("[[groups]]\nentra_group_id = 'not-a-guid'\nroles = ['nurse']\n", 1, "not an Entra object id"),
        ("[[stafff]]\nname = 'x'\n", None, "unknown top-level key 'stafff'"),
    ],
)
def test_every_problem_is_one_line_with_file_and_line(text: str, line: int | None, problem: str) -> None:
    with pytest.raises(DirectoryError) as caught:
        parse_directory(text, "/etc/wardline/directory.toml")
    message = str(caught.value)
    assert "\n" not in message
    prefix = f"/etc/wardline/directory.toml:{line}: " if line else "/etc/wardline/directory.toml: "
    assert message.startswith(prefix), message
    assert problem in message
    assert isinstance(caught.value, SettingsError), "the CLI prints it as one configuration error line"


def test_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match=r"missing.toml: file not found"):
        load_directory(tmp_path / "missing.toml")


def test_groups_without_graph_credentials_stop_start_up(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text("[[groups]]\nentra_group_id = '0b5c2f3a-1111-4222-8333-444455556666'\nroles = ['nurse']\n")
    with pytest.raises(DirectoryError, match="needs Microsoft Graph"):
        LiveDirectory.open(path)


async def test_users_get_roles_and_units_and_strangers_none(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text(GOOD)
    live = LiveDirectory.open(path)
    charge = await live.resolve(User(id="29:x", aad_object_id=CHARGE.upper()))
    assert charge.roles == {"nurse", "charge"} and charge.units == {"7W", "ICU"}
    stranger = await live.resolve(User(id="29:y", aad_object_id="6a0f3b1e-0000-4000-8000-0000000000ff"))
    assert stranger.roles == frozenset() and stranger.units == frozenset()
    forged = await live.resolve(User(id="29:z", roles=frozenset({"admin"})))
    assert forged.roles == frozenset(), "roles come only from the directory"


async def test_reload_keeps_the_previous_directory_when_the_new_one_is_bad(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "d.toml"
    path.write_text(GOOD)
    live = LiveDirectory.open(path)
    path.write_text(GOOD.replace('roles = ["nurse", "charge"]', 'roles = ["nurse", "boss"]'))
    with caplog.at_level(logging.ERROR, logger="bot.directory"):
        assert await live.reload() is False
        assert await live.reload() is False
    rejected = [r for r in caplog.records if "reload rejected" in r.getMessage()]
    assert len(rejected) == 1, "a bad file is logged once, not on every tick"
    assert "unknown role 'boss'" in rejected[0].getMessage()
    assert live.last_error is not None and "d.toml:" in live.last_error
    assert (await live.resolve(User(id="u", aad_object_id=CHARGE))).roles == {"nurse", "charge"}

    path.write_text(GOOD.replace('roles = ["nurse", "charge"]', 'roles = ["nurse"]'))
    assert await live.reload() is True
    assert live.last_error is None
    assert (await live.resolve(User(id="u", aad_object_id=CHARGE))).roles == {"nurse"}
    assert await live.reload() is False, "an unchanged file is not a change"

    path.unlink()
    assert await live.reload() is False
    assert live.unit("7W") is not None, "a vanished file keeps the directory in force"


def test_cli_checks_and_shows_a_directory(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    from bot.cli import main

    assert main(["directory", "check", str(EXAMPLE)]) == 0
    assert capsys.readouterr().out.strip() == f"{EXAMPLE}: ok (3 units, 4 staff, 0 groups)"
    assert main(["directory", "show", str(EXAMPLE)]) == 0
    shown = capsys.readouterr().out
    assert "7W: 7 West (Internal Medicine)" in shown and "  charge: Lee Charge" in shown
    assert "6a0f3b1e" not in shown, "names, not object ids"
    bad = tmp_path / "bad.toml"
    bad.write_text("[units.7W]\n[[staff]]\naad_object_id = 'x'\nroles = ['nurse']\n")
    assert main(["directory", "check", str(bad)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[0] == (
        f"wardline: configuration error: {bad}:2: aad_object_id 'x' is not an Entra object id (a GUID)"
    )
