"""The staff directory: units, shifts, staff and roles from a TOML file (plus Entra groups through Graph).

The file is read once at start-up (a bad file stops the bot with one line naming the file, line and problem) and
again on SIGHUP or a timer; a bad file on reload is logged and the previous directory stays in force.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import re
import tomllib
import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from functools import partial
from pathlib import Path
from typing import Any, Protocol
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from bot.settings import SettingsError
from skills.core.ports import StaffMember, Turn, Unit
from skills.core.router import Router
from skills.core.skill import Skill
from skills.core.types import Message, User

log = logging.getLogger(__name__)

ROLES: frozenset[str] = frozenset({"nurse", "charge", "doctor", "manager", "admin"})
EXAMPLE = Path(__file__).parent / "directory.example.toml"
DEFAULT_SHIFTS = ("07:00", "15:00", "23:00")

_UNIT_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,31}$")  # no ':' or '@': targets are unit:7W, role:charge@7W
_SHIFT = re.compile(r"^([01]\d|2[0-3]):([0-5]\d)$")
_TOML_POSITION = re.compile(r"\(at line (\d+), column \d+\)")
_UNIT_KEYS = {"name", "timezone", "shifts", "handover_lead_minutes", "channel"}
_STAFF_KEYS = {"aad_object_id", "name", "roles", "units"}
_GROUP_KEYS = {"entra_group_id", "name", "roles", "units"}


class DirectoryError(SettingsError):
    """The directory file cannot be used; the message is one line: `file:line: problem`."""


@dataclass(frozen=True, slots=True)
class GroupGrant:
    """Members of an Entra group get these roles on these units."""

    entra_group_id: str
    name: str = ""
    roles: frozenset[str] = frozenset()
    units: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class StaffDirectory:
    """One parsed directory file: the Directory port over plain data."""

    unit_list: tuple[Unit, ...] = ()
    members: tuple[StaffMember, ...] = ()
    groups: tuple[GroupGrant, ...] = ()
    source: str = ""
    digest: str = ""
    _units_by_id: Mapping[str, Unit] = field(default_factory=dict)
    _members_by_id: Mapping[str, StaffMember] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        units: Sequence[Unit],
        members: Sequence[StaffMember],
        groups: Sequence[GroupGrant] = (),
        *,
        source: str = "",
        digest: str = "",
    ) -> StaffDirectory:
        return cls(
            tuple(units),
            tuple(members),
            tuple(groups),
            source,
            digest,
            {unit.id: unit for unit in units},
            {member.aad_object_id: member for member in members},
        )

    def units(self) -> Sequence[Unit]:
        return list(self.unit_list)

    def unit(self, unit_id: str) -> Unit | None:
        return self._units_by_id.get(unit_id)

    def staff(self, *, unit: str | None = None, role: str | None = None) -> Sequence[StaffMember]:
        return [
            member
            for member in self.members
            if (unit is None or unit in member.units) and (role is None or role in member.roles)
        ]

    def known_names(self) -> frozenset[str]:
        return frozenset(member.name for member in self.members if member.name)

    def member(self, aad_object_id: str) -> StaffMember | None:
        """The staff entry for an Entra object id (case-insensitive, as Entra treats GUIDs)."""
        return self._members_by_id.get(aad_object_id.lower())


EMPTY = StaffDirectory.build((), ())


def parse_directory(text: str, source: str = "<directory>") -> StaffDirectory:
    """Parse and validate a directory file's text; raise DirectoryError with `source:line: problem`."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        message = str(exc)
        position = _TOML_POSITION.search(message)
        problem = _TOML_POSITION.sub("", message).strip()
        where = f"{source}:{position.group(1)}" if position else source
        raise DirectoryError(f"{where}: TOML syntax error: {problem}") from None
    lines = _HeaderLines(text)

    def fail(line: int | None, problem: str) -> DirectoryError:
        return DirectoryError(f"{source}:{line}: {problem}" if line else f"{source}: {problem}")

    unknown = set(data) - {"units", "staff", "groups"}
    if unknown:
        raise fail(None, f"unknown top-level key {sorted(unknown)[0]!r} (expected units, staff, groups)")
    raw_units = data.get("units", {})
    if not isinstance(raw_units, dict):
        raise fail(None, "'units' must be tables like [units.7W]")
    units: list[Unit] = []
    folded: dict[str, str] = {}
    for unit_id, raw in raw_units.items():
        line = lines.unit(unit_id)
        units.append(_unit(unit_id, raw, partial(fail, line)))
        if unit_id.casefold() in folded:
            raise fail(line, f"unit {unit_id!r} is defined twice (also as {folded[unit_id.casefold()]!r})")
        folded[unit_id.casefold()] = unit_id
    unit_ids = {unit.id for unit in units}

    members: list[StaffMember] = []
    seen: dict[str, int] = {}
    for index, raw in enumerate(_array(data, "staff", fail)):
        line = lines.entry("staff", index)
        member = _member(raw, unit_ids, partial(fail, line))
        if member.aad_object_id in seen:
            raise fail(line, f"staff aad_object_id {member.aad_object_id} is listed twice")
        seen[member.aad_object_id] = index
        members.append(member)

    groups: list[GroupGrant] = []
    for index, raw in enumerate(_array(data, "groups", fail)):
        line = lines.entry("groups", index)
        groups.append(_group(raw, unit_ids, partial(fail, line)))
    if len({g.entra_group_id for g in groups}) != len(groups):
        raise fail(None, "an entra_group_id is listed twice in [[groups]]")
    digest = hashlib.sha256(text.encode()).hexdigest()
    return StaffDirectory.build(units, members, groups, source=source, digest=digest)


def load_directory(path: Path) -> StaffDirectory:
    """Read and validate a directory file (blocking: call it off the event loop once running)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise DirectoryError(f"{path}: file not found (WARDLINE_DIRECTORY)") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DirectoryError(f"{path}: cannot read the file ({type(exc).__name__})") from None
    return parse_directory(text, str(path))


Fail = Callable[[str], DirectoryError]


def _unit(unit_id: str, raw: Any, fail: Fail) -> Unit:
    if not _UNIT_ID.match(unit_id):
        raise fail(f"unit id {unit_id!r} must be letters, digits, '-' or '_' (at most 32)")
    if not isinstance(raw, dict):
        raise fail(f"unit {unit_id!r} must be a table [units.{unit_id}]")
    name = _text(raw.get("name", unit_id), f"units.{unit_id}.name", fail)
    zone = _text(raw.get("timezone", "Asia/Seoul"), f"units.{unit_id}.timezone", fail)
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise fail(f"unit {unit_id!r}: unknown timezone {zone!r}") from None
    shifts = raw.get("shifts", list(DEFAULT_SHIFTS))
    if not isinstance(shifts, list) or not shifts:
        raise fail(f'unit {unit_id!r}: shifts must be a non-empty list like ["07:00", "15:00"]')
    for shift in shifts:
        if not isinstance(shift, str) or not _SHIFT.match(shift):
            raise fail(f"unit {unit_id!r}: bad shift time {shift!r} (expected HH:MM, 24-hour)")
    if len(set(shifts)) != len(shifts):
        raise fail(f"unit {unit_id!r}: a shift time is listed twice")
    lead = raw.get("handover_lead_minutes", 30)
    if isinstance(lead, bool) or not isinstance(lead, int) or not 0 <= lead <= 240:
        raise fail(f"unit {unit_id!r}: handover_lead_minutes must be a whole number from 0 to 240")
    channel = raw.get("channel")
    if channel is not None and (not isinstance(channel, str) or not channel.strip()):
        raise fail(f"unit {unit_id!r}: channel must be a Teams conversation id")
    options = {key: value for key, value in raw.items() if key not in _UNIT_KEYS}
    if channel:
        options["channel"] = channel.strip()
    return Unit(
        id=unit_id,
        name=name,
        timezone=zone,
        shifts=tuple(sorted(shifts)),
        handover_lead_minutes=lead,
        options=options,
    )


def _member(raw: Any, unit_ids: set[str], fail: Fail) -> StaffMember:
    if not isinstance(raw, dict):
        raise fail("each [[staff]] entry must be a table")
    _no_unknown_keys(raw, _STAFF_KEYS, "[[staff]]", fail)
    object_id = _guid(raw.get("aad_object_id"), "aad_object_id", fail)
    name = _text(raw.get("name", ""), "staff name", fail)
    roles = _roles(raw, f"staff {object_id}", fail, required=True)
    return StaffMember(object_id, name, roles, _unit_refs(raw, unit_ids, f"staff {object_id}", fail))


def _group(raw: Any, unit_ids: set[str], fail: Fail) -> GroupGrant:
    if not isinstance(raw, dict):
        raise fail("each [[groups]] entry must be a table")
    _no_unknown_keys(raw, _GROUP_KEYS, "[[groups]]", fail)
    group_id = _guid(raw.get("entra_group_id"), "entra_group_id", fail)
    name = _text(raw.get("name", ""), "group name", fail)
    roles = _roles(raw, f"group {group_id}", fail, required=True)
    return GroupGrant(group_id, name, roles, _unit_refs(raw, unit_ids, f"group {group_id}", fail))


def _array(data: Mapping[str, Any], key: str, fail: Callable[[int | None, str], DirectoryError]) -> list[Any]:
    value = data.get(key, [])
    if not isinstance(value, list):
        raise fail(None, f"'{key}' must be an array of tables: [[{key}]]")
    return value


def _no_unknown_keys(raw: Mapping[str, Any], allowed: set[str], where: str, fail: Fail) -> None:
    unknown = sorted(set(raw) - allowed)
    if unknown:
        raise fail(f"unknown key {unknown[0]!r} in {where} (allowed: {', '.join(sorted(allowed))})")


def _text(value: Any, what: str, fail: Fail) -> str:
    if not isinstance(value, str):
        raise fail(f"{what} must be a string")
    return value.strip()


def _guid(value: Any, what: str, fail: Fail) -> str:
    if not isinstance(value, str) or not value.strip():
        raise fail(f"{what} is missing")
    try:
        return str(uuid.UUID(value.strip())).lower()
    except ValueError:
        raise fail(f"{what} {value!r} is not an Entra object id (a GUID)") from None


def _roles(raw: Mapping[str, Any], who: str, fail: Fail, *, required: bool) -> frozenset[str]:
    roles = raw.get("roles", [])
    if not isinstance(roles, list) or not all(isinstance(r, str) for r in roles):
        raise fail(f"{who}: roles must be a list of strings")
    for role in roles:
        if role not in ROLES:
            raise fail(f"{who}: unknown role {role!r} (known: {', '.join(sorted(ROLES))})")
    if required and not roles:
        raise fail(f"{who}: roles is empty")
    return frozenset(roles)


def _unit_refs(raw: Mapping[str, Any], unit_ids: set[str], who: str, fail: Fail) -> frozenset[str]:
    units = raw.get("units", [])
    if not isinstance(units, list) or not all(isinstance(u, str) for u in units):
        raise fail(f"{who}: units must be a list of unit ids")
    for unit in units:
        if unit not in unit_ids:
            raise fail(f"{who}: unknown unit {unit!r} (not among the [units.*] tables)")
    return frozenset(units)


class _HeaderLines:
    """Line numbers of table headers, so a problem tomllib cannot place still names a line."""

    _TABLE = re.compile(r"^\s*\[\s*units\s*\.\s*(\"[^\"]*\"|'[^']*'|[A-Za-z0-9_-]+)\s*\]")
    _ARRAY = re.compile(r"^\s*\[\[\s*(staff|groups)\s*\]\]")

    def __init__(self, text: str) -> None:
        self._units: dict[str, int] = {}
        self._entries: dict[str, list[int]] = {"staff": [], "groups": []}
        for number, line in enumerate(text.splitlines(), start=1):
            table = self._TABLE.match(line)
            if table:
                self._units.setdefault(table.group(1).strip("\"'"), number)
            entry = self._ARRAY.match(line)
            if entry:
                self._entries[entry.group(1)].append(number)

    def unit(self, unit_id: str) -> int | None:
        return self._units.get(unit_id)

    def entry(self, kind: str, index: int) -> int | None:
        found = self._entries[kind]
        return found[index] if index < len(found) else None


class GroupLookup(Protocol):
    """Which of the given Entra groups a user belongs to (bot.graph.GraphGroups)."""

    async def member_of(self, aad_object_id: str, group_ids: Sequence[str]) -> frozenset[str]: ...


class LiveDirectory:
    """The directory in force: the Directory port for skills, the role source for inbound users, and reloads."""

    def __init__(self, path: Path | None, current: StaffDirectory, *, groups: GroupLookup | None = None) -> None:
        self.path = path
        self.current = current
        self.groups = groups
        self.loaded_at = datetime.now(UTC)
        self.last_error: str | None = None
        self._reloading = asyncio.Lock()

    @classmethod
    def open(cls, path: Path | None, *, groups: GroupLookup | None = None) -> LiveDirectory:
        """Load the file at start-up; DirectoryError (one line) when it is bad."""
        if path is None:
            log.info("no WARDLINE_DIRECTORY: no units, and nobody has a role")
            return cls(None, EMPTY, groups=groups)
        directory = load_directory(path)
        _check_groups(directory, groups, path)
        log.info("directory loaded", extra={"units": len(directory.unit_list), "staff": len(directory.members)})
        return cls(path, directory, groups=groups)

    def units(self) -> Sequence[Unit]:
        return self.current.units()

    def unit(self, unit_id: str) -> Unit | None:
        return self.current.unit(unit_id)

    def staff(self, *, unit: str | None = None, role: str | None = None) -> Sequence[StaffMember]:
        return self.current.staff(unit=unit, role=role)

    def known_names(self) -> frozenset[str]:
        return self.current.known_names()

    async def reload(self) -> bool:
        """Re-read the file; keep the directory in force when the new one is bad. True when it changed."""
        if self.path is None:
            return False
        async with self._reloading:
            try:
                fresh = await asyncio.to_thread(load_directory, self.path)
                _check_groups(fresh, self.groups, self.path)
            except DirectoryError as exc:
                if str(exc) != self.last_error:  # log a bad file once, not on every timer tick
                    log.error("directory reload rejected, keeping the previous one: %s", exc)
                self.last_error = str(exc)
                return False
            self.last_error = None
            if fresh.digest == self.current.digest:
                return False
            self.current = fresh
            self.loaded_at = datetime.now(UTC)
            log.info("directory reloaded", extra={"units": len(fresh.unit_list), "staff": len(fresh.members)})
            return True

    async def watch(self, interval_s: float) -> None:
        """Reload every `interval_s` seconds until cancelled."""
        while True:
            await asyncio.sleep(interval_s)
            await self.reload()

    async def resolve(self, user: User) -> User:
        """The user with the roles and units the directory (and its Entra groups) give them; none when unknown."""
        if not user.aad_object_id:
            return replace(user, roles=frozenset(), units=frozenset())
        directory = self.current
        member = directory.member(user.aad_object_id)
        roles = set(member.roles) if member else set()
        units = set(member.units) if member else set()
        if directory.groups and self.groups is not None:
            wanted = [group.entra_group_id for group in directory.groups]
            joined = await self.groups.member_of(user.aad_object_id.lower(), wanted)
            for group in directory.groups:
                if group.entra_group_id in joined:
                    roles |= group.roles
                    units |= group.units
        return replace(user, roles=frozenset(roles), units=frozenset(units))

    def health(self) -> dict[str, Any]:
        """What /readyz shows about the directory."""
        return {
            "source": str(self.path) if self.path else None,
            "units": len(self.current.unit_list),
            "staff": len(self.current.members),
            "groups": len(self.current.groups),
            "loaded_at": self.loaded_at.isoformat(timespec="seconds"),
            "reload_error": self.last_error,
        }


def _check_groups(directory: StaffDirectory, groups: GroupLookup | None, path: Path) -> None:
    if directory.groups and groups is None:
        raise DirectoryError(
            f"{path}: [[groups]] needs Microsoft Graph: set MicrosoftAppId, MicrosoftAppPassword and "
            "MicrosoftAppTenantId (the app needs GroupMember.Read.All)"
        )


UserResolver = Callable[[User], Awaitable[User]]


class DirectoryRouter(Router):
    """The router, with every inbound user's roles and units filled from the directory before the role check."""

    def __init__(self, skills: Sequence[Skill], resolve_user: UserResolver) -> None:
        super().__init__(skills)
        self.resolve_user = resolve_user

    async def dispatch(self, message: Message, turn: Turn) -> str | None:
        user = await self.resolve_user(message.user)
        return await super().dispatch(replace(message, user=user), turn)
