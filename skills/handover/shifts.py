"""A unit's shift calendar on its own clock: which shift is on, when it changes, when its handover is due."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from skills.core.ports import Unit

# Korean wards name the three-shift pattern Day / Evening / Night; two shifts are Day / Night.
_CODES = {1: ("D",), 2: ("D", "N"), 3: ("D", "E", "N")}


class ShiftConfigError(ValueError):
    """A unit's shifts or timezone cannot be used."""


@dataclass(frozen=True, slots=True)
class Shift:
    """One occurrence of a shift on a unit. Times are UTC: Python subtracts same-zone datetimes by wall clock,
    which would make a night shift over a daylight-saving change an hour too long or short."""

    unit: str
    code: str
    start: datetime
    end: datetime
    handover_at: datetime  # when this shift hands over to the next one
    id: str  # stable name of this occurrence: local start date and code, e.g. 2026-11-29/N


def _parse_start(text: str) -> time:
    hours, sep, minutes = text.strip().partition(":")
    if not sep or not hours.isdigit() or not minutes.isdigit() or len(minutes) != 2:
        raise ShiftConfigError(f"shift start {text!r} is not HH:MM")
    if not (0 <= int(hours) < 24 and 0 <= int(minutes) < 60):
        raise ShiftConfigError(f"shift start {text!r} is not a time of day")
    return time(int(hours), int(minutes))


class ShiftCalendar:
    """Shift occurrences for one unit, computed from its shift starts and zone (no fixed UTC offsets)."""

    def __init__(self, unit: Unit) -> None:
        self.unit = unit
        try:
            self.zone = ZoneInfo(unit.timezone)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ShiftConfigError(f"unit {unit.id}: unknown timezone {unit.timezone!r}") from error
        starts = sorted(_parse_start(s) for s in unit.shifts)
        if not starts:
            raise ShiftConfigError(f"unit {unit.id} has no shifts")
        if len(set(starts)) != len(starts):
            raise ShiftConfigError(f"unit {unit.id} lists a shift start twice")
        self.starts: tuple[time, ...] = tuple(starts)
        configured = unit.options.get("shift_codes")
        if isinstance(configured, list | tuple) and len(configured) == len(starts):
            self.codes: tuple[str, ...] = tuple(str(c) for c in configured)
        else:
            self.codes = _CODES.get(len(starts), tuple(f"S{i + 1}" for i in range(len(starts))))
        self.lead = timedelta(minutes=unit.handover_lead_minutes)
        if not timedelta(0) <= self.lead < self._shortest_shift():
            raise ShiftConfigError(f"unit {unit.id}: handover lead must be shorter than its shortest shift")

    def _shortest_shift(self) -> timedelta:
        minutes = [s.hour * 60 + s.minute for s in self.starts]
        gaps = [(minutes[(i + 1) % len(minutes)] - m) % 1440 or 1440 for i, m in enumerate(minutes)]
        return timedelta(minutes=min(gaps))

    def _starts_on(self, day: date) -> list[tuple[datetime, str]]:
        # In UTC, so a start inside a daylight-saving gap lands on a real instant and arithmetic is exact.
        return [
            (datetime.combine(day, start, tzinfo=self.zone).astimezone(UTC), code)
            for start, code in zip(self.starts, self.codes, strict=True)
        ]

    def _starts_around(self, moment: datetime, days_before: int, days_after: int) -> list[tuple[datetime, str]]:
        local = moment.astimezone(self.zone).date()
        found: list[tuple[datetime, str]] = []
        for offset in range(-days_before, days_after + 1):
            found.extend(self._starts_on(local + timedelta(days=offset)))
        return sorted(found, key=lambda item: item[0])

    def _shift(self, start: tuple[datetime, str], end: datetime) -> Shift:
        local_day = start[0].astimezone(self.zone).date()
        return Shift(self.unit.id, start[1], start[0], end, end - self.lead, f"{local_day.isoformat()}/{start[1]}")

    def shift_at(self, moment: datetime) -> Shift:
        """The shift on duty at `moment` (an aware datetime)."""
        starts = self._starts_around(moment, 2, 2)
        for index in range(len(starts) - 1, -1, -1):
            if starts[index][0] <= moment:
                return self._shift(starts[index], starts[index + 1][0])
        raise AssertionError("unreachable: two days of starts always include one before now")  # pragma: no cover

    def next_change(self, moment: datetime) -> datetime:
        """When the shift on duty at `moment` ends."""
        return self.shift_at(moment).end

    def shift_by_id(self, shift_id: str) -> Shift:
        """The occurrence named like 2026-11-29/N; ShiftConfigError when it does not exist on this unit."""
        day_text, _, code = shift_id.partition("/")
        try:
            day = date.fromisoformat(day_text)
        except ValueError as error:
            raise ShiftConfigError(f"{shift_id!r} is not DATE/CODE") from error
        for start in self._starts_on(day):
            if start[1] == code:
                return self.shift_at(start[0])
        raise ShiftConfigError(f"unit {self.unit.id} has no shift {code!r}")

    def shifts_on(self, day: date) -> list[Shift]:
        """The shifts that start on a local calendar day, in order."""
        return [self.shift_at(start) for start, _ in self._starts_on(day)]

    def last_handover(self, moment: datetime) -> Shift:
        """The shift whose handover time is the latest one at or before `moment`."""
        current = self.shift_at(moment)
        if current.handover_at <= moment:
            return current
        return self.shift_at(current.start - timedelta(seconds=1))

    def next_handover(self, moment: datetime) -> Shift:
        """The shift whose handover time is the first one after `moment`."""
        current = self.shift_at(moment)
        if current.handover_at > moment:
            return current
        return self.shift_at(current.end)
