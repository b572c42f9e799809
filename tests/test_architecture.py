"""Boundaries that keep a later port to the Microsoft 365 Agents SDK small."""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Skills reach the world through ports only: no web, bot, vendor, database, scheduler or retry framework.
FORBIDDEN_IN_SKILLS = {
    "botbuilder",
    "botframework",
    "aiohttp",
    "openai",
    "msal",
    "bot",
    "sqlalchemy",
    "alembic",
    "asyncpg",
    "aiosqlite",
    "apscheduler",
    "tenacity",
    "requests",
    "httpx",
    "msrest",
}
BOT_FRAMEWORK = {"botbuilder", "botframework"}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


def python_files(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def test_skills_reach_the_world_only_through_ports() -> None:
    offenders = {
        str(path.relative_to(ROOT)): sorted(imported_roots(path) & FORBIDDEN_IN_SKILLS)
        for path in python_files("skills")
        if imported_roots(path) & FORBIDDEN_IN_SKILLS
    }
    assert offenders == {}


def test_only_bot_teams_imports_the_bot_framework() -> None:
    offenders = [
        str(path.relative_to(ROOT))
        for path in python_files("bot")
        if imported_roots(path) & BOT_FRAMEWORK and "teams" not in path.relative_to(ROOT / "bot").parts[:1]
    ]
    assert offenders == []


def test_the_checks_above_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import aiohttp\nfrom botbuilder.core import TurnContext\nfrom bot.settings import Settings\n")
    assert imported_roots(bad) >= {"aiohttp", "botbuilder", "bot"}


def environment_uses(path: Path) -> list[int]:
    """Lines that touch the process environment: os.environ / os.getenv / `from os import environ, getenv`."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    lines = []
    for node in ast.walk(tree):
        names: set[str] = set()
        if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "os":
            names = {node.attr}
        elif isinstance(node, ast.ImportFrom) and node.module == "os":
            names = {alias.name for alias in node.names}
        if names & {"environ", "getenv", "environb", "putenv"}:
            lines.append(node.lineno)
    return sorted(lines)


def test_only_settings_reads_the_environment() -> None:
    readers = {
        str(path.relative_to(ROOT)): environment_uses(path)
        for folder in ("bot", "skills")
        for path in python_files(folder)
        if path != ROOT / "bot" / "settings.py" and environment_uses(path)
    }
    assert readers == {}


def test_the_environment_check_can_fail(tmp_path: Path) -> None:
    bad = tmp_path / "bad.py"
    bad.write_text("import os\nfrom os import getenv\nx = os.environ.get('A')\ny = os.getenv('B')\n")
    assert environment_uses(bad) == [2, 3, 4]
