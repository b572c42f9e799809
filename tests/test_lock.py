"""requirements.lock (what `make setup` installs) covers pyproject.toml: run `make lock` after changing dependencies."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

ROOT = Path(__file__).resolve().parents[1]
LOCKED_EXTRAS = ("dev", "local", "postgres")  # the extras the Makefile installs
OUTSIDE_THE_LOCK = {"torch"}  # installed by version first; see the Makefile


def locked() -> dict[str, str]:
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    pins = re.findall(r"^([A-Za-z0-9_.\-]+)==([^\s\\]+)", text, flags=re.MULTILINE)
    return {canonicalize_name(name): version for name, version in pins}


def declared() -> list[Requirement]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    names = list(project["dependencies"])
    for extra in LOCKED_EXTRAS:
        names += project["optional-dependencies"][extra]
    return [Requirement(name) for name in names]


def test_every_dependency_is_locked_at_a_version_it_allows() -> None:
    pins = locked()
    for requirement in declared():
        name = canonicalize_name(requirement.name)
        if name in OUTSIDE_THE_LOCK:
            assert name not in pins
            continue
        assert name in pins, f"{requirement.name} is not in requirements.lock: run `make lock`"
        assert requirement.specifier.contains(pins[name], prereleases=True), (
            f"requirements.lock pins {requirement.name}=={pins[name]}, outside {requirement.specifier}: run `make lock`"
        )


def test_every_locked_file_has_a_hash() -> None:
    text = (ROOT / "requirements.lock").read_text(encoding="utf-8")
    blocks = re.split(r"\n(?=[A-Za-z0-9_.\-]+==)", text)
    pinned = [b for b in blocks if re.match(r"[A-Za-z0-9_.\-]+==", b)]
    assert len(pinned) == len(locked()) > 50
    for block in pinned:
        assert "--hash=sha256:" in block, block.splitlines()[0]
    assert "file://" not in text and "/opt/" not in text  # nothing from one machine's local mirror
