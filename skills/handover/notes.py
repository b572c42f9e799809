"""Where I-PASS notes live: the current note per bed (compare-and-set) and every saved version."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from skills.core.ports import Store
from skills.handover.ipass import IPassNote

NOTES = "handover.notes"  # "{unit}/{bed}" -> the newest version
VERSIONS = "handover.versions"  # "{unit}/{bed}/{version:06d}" -> every version ever saved
AUDIT = "handover.audit"  # append-only: saved, viewed, posted, missed, acknowledged, reminded


@dataclass(frozen=True, slots=True)
class SavedNote:
    """A note as stored: content plus who saved which version in which shift."""

    unit: str
    bed: str
    version: int
    shift_id: str
    note: IPassNote
    author_id: str
    author_name: str
    saved_at: datetime
    late: bool = False

    def as_dict(self) -> dict[str, Any]:
        return {
            "unit": self.unit,
            "bed": self.bed,
            "version": self.version,
            "shift_id": self.shift_id,
            "note": self.note.as_dict(),
            "author_id": self.author_id,
            "author_name": self.author_name,
            "saved_at": self.saved_at.isoformat(),
            "late": self.late,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SavedNote:
        return cls(
            unit=str(data["unit"]),
            bed=str(data["bed"]),
            version=int(data["version"]),
            shift_id=str(data["shift_id"]),
            note=IPassNote.from_dict(data.get("note") or {}),
            author_id=str(data.get("author_id", "")),
            author_name=str(data.get("author_name", "")),
            saved_at=datetime.fromisoformat(str(data["saved_at"])),
            late=bool(data.get("late")),
        )


def bed_key(unit: str, bed: str) -> str:
    return f"{unit}/{bed}"


def bed_order(bed: str) -> tuple[int, str]:
    """Beds sort by number where they are numbers (2 before 10), then by text."""
    digits = "".join(ch for ch in bed if ch.isdigit())
    return (int(digits) if digits else 1_000_000, bed)


class NoteBook:
    """Reads and writes notes; a save names the version it edited so two editors never overwrite each other."""

    def __init__(self, store: Store) -> None:
        self.store = store

    async def current(self, unit: str, bed: str) -> SavedNote | None:
        found = await self.store.get_versioned(NOTES, bed_key(unit, bed))
        return SavedNote.from_dict({**found[0], "version": found[1]}) if found else None

    async def save(self, draft: SavedNote, *, base_version: int | None) -> SavedNote | None:
        """Store the draft as the version after `base_version`; None when someone else saved first."""
        key = bed_key(draft.unit, draft.bed)
        record = draft.as_dict()
        record.pop("version")
        version = await self.store.put_if_version(NOTES, key, record, expected=base_version)
        if version is None:
            return None
        saved = SavedNote.from_dict({**record, "version": version})
        await self.store.put(VERSIONS, f"{key}/{version:06d}", saved.as_dict())
        return saved

    async def history(self, unit: str, bed: str) -> list[SavedNote]:
        """Every version of a bed's note, oldest first."""
        versions = {
            int(value["version"]): SavedNote.from_dict(value)
            for _key, value in await self.store.scan(VERSIONS, bed_key(unit, bed) + "/")
        }
        current = await self.current(unit, bed)
        if current is not None:
            versions.setdefault(current.version, current)  # a crash between the two writes loses no version
        return [versions[v] for v in sorted(versions)]

    async def unit_notes(self, unit: str) -> list[SavedNote]:
        """The newest note of every bed of a unit, in bed order."""
        notes = []
        for key, _value in await self.store.scan(NOTES, unit + "/"):
            found = await self.store.get_versioned(NOTES, key)  # the version lives beside the record
            if found is not None:
                notes.append(SavedNote.from_dict({**found[0], "version": found[1]}))
        return sorted(notes, key=lambda n: bed_order(n.bed))
