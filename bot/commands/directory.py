"""`wardline directory check|show`: validate a staff directory file before deploying it, and see what it grants."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from bot.directory import load_directory
from bot.settings import Settings, SettingsError


def register(commands: Any) -> None:
    """Add `wardline directory` to the CLI."""
    parser = commands.add_parser("directory", help="check or show the staff directory (WARDLINE_DIRECTORY)")
    actions = parser.add_subparsers(dest="directory_command", required=True)
    check = actions.add_parser("check", help="validate a directory file; exit 2 with file:line: problem if bad")
    check.add_argument("path", nargs="?", type=Path, help="the file (default: WARDLINE_DIRECTORY)")
    check.set_defaults(func=_check)
    show = actions.add_parser("show", help="list units and who has which role where (names, no ids)")
    show.add_argument("path", nargs="?", type=Path, help="the file (default: WARDLINE_DIRECTORY)")
    show.set_defaults(func=_show)


def _path(args: argparse.Namespace, settings: Settings) -> Path:
    path: Path | None = args.path or settings.directory
    if path is None:
        raise SettingsError("no directory file: pass a path or set WARDLINE_DIRECTORY")
    return path


def _check(args: argparse.Namespace, settings: Settings) -> int:
    path = _path(args, settings)
    directory = load_directory(path)  # DirectoryError is a SettingsError: printed as one line, exit 2
    print(
        f"{path}: ok ({len(directory.unit_list)} units, {len(directory.members)} staff, {len(directory.groups)} groups)"
    )
    return 0


def _show(args: argparse.Namespace, settings: Settings) -> int:
    directory = load_directory(_path(args, settings))
    for unit in directory.units():
        shifts = ", ".join(unit.shifts)
        print(f"{unit.id}: {unit.name} ({unit.timezone}; shifts {shifts}; lead {unit.handover_lead_minutes} min)")
        for role in ("charge", "nurse", "doctor", "manager", "admin"):
            names = sorted(member.name or "(no name)" for member in directory.staff(unit=unit.id, role=role))
            if names:
                print(f"  {role}: {', '.join(names)}")
    for group in directory.groups:
        roles, units = ", ".join(sorted(group.roles)), ", ".join(sorted(group.units))
        print(f"group {group.name or group.entra_group_id}: {roles} on {units}")
    return 0
