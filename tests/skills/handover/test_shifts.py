"""The shift calendar on each unit's own clock: across midnight, 8- and 12-hour patterns, several zones, DST."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from apscheduler.triggers.cron import CronTrigger

from skills.core.ports import Unit
from skills.handover.service import Handovers
from skills.handover.shifts import ShiftCalendar, ShiftConfigError
from tests.skills.handover.conftest import UNITS, World, kst

SEOUL = ZoneInfo("Asia/Seoul")
NEW_YORK = ZoneInfo("America/New_York")


def test_korean_three_shifts_across_midnight() -> None:
    calendar = ShiftCalendar(UNITS[0])
    night = calendar.shift_at(kst(2026, 11, 30, 2, 0))
    assert (night.code, night.id) == ("N", "2026-11-29/N")
    assert night.start == datetime(2026, 11, 29, 23, 0, tzinfo=SEOUL)
    assert night.end == datetime(2026, 11, 30, 7, 0, tzinfo=SEOUL)
    assert night.handover_at == datetime(2026, 11, 30, 6, 30, tzinfo=SEOUL)
    assert calendar.shift_at(kst(2026, 11, 29, 23, 0)).id == "2026-11-29/N"  # a start belongs to the new shift
    assert calendar.shift_at(kst(2026, 11, 29, 22, 59)).id == "2026-11-29/E"
    assert calendar.next_change(kst(2026, 11, 29, 8, 0)) == datetime(2026, 11, 29, 15, 0, tzinfo=SEOUL)
    assert [s.code for s in calendar.shifts_on(date(2026, 11, 29))] == ["D", "E", "N"]
    assert [(s.end - s.start).total_seconds() / 3600 for s in calendar.shifts_on(date(2026, 11, 29))] == [8, 8, 8]


def test_twelve_hour_pattern() -> None:
    calendar = ShiftCalendar(UNITS[1])
    assert calendar.codes == ("D", "N")
    night = calendar.shift_at(kst(2026, 11, 30, 6, 59))
    assert night.id == "2026-11-29/N" and (night.end - night.start) == timedelta(hours=12)
    assert night.handover_at == datetime(2026, 11, 30, 6, 30, tzinfo=SEOUL)
    assert calendar.shift_at(kst(2026, 11, 30, 7, 0)).id == "2026-11-30/D"


def test_last_and_next_handover() -> None:
    calendar = ShiftCalendar(UNITS[0])
    assert calendar.last_handover(kst(2026, 11, 30, 6, 29)).id == "2026-11-29/E"  # 22:30's handover
    assert calendar.last_handover(kst(2026, 11, 30, 6, 30)).id == "2026-11-29/N"
    assert calendar.next_handover(kst(2026, 11, 30, 6, 29)).id == "2026-11-29/N"
    assert calendar.next_handover(kst(2026, 11, 30, 6, 30)).id == "2026-11-30/D"
    assert calendar.shift_by_id("2026-11-29/N") == calendar.shift_at(kst(2026, 11, 30, 1, 0))


def test_several_zones_at_one_instant() -> None:
    moment = datetime(2026, 11, 29, 14, 0, tzinfo=UTC)  # 23:00 in Seoul, 09:00 in New York
    seoul, new_york = ShiftCalendar(UNITS[0]), ShiftCalendar(UNITS[2])
    assert seoul.shift_at(moment).id == "2026-11-29/N"
    assert new_york.shift_at(moment).id == "2026-11-29/D"
    assert new_york.shift_at(moment).handover_at == datetime(2026, 11, 29, 14, 45, tzinfo=NEW_YORK)


def test_night_shift_over_the_end_of_daylight_saving_is_nine_hours() -> None:
    calendar = ShiftCalendar(UNITS[2])
    night = calendar.shift_at(datetime(2026, 11, 1, 3, 0, tzinfo=NEW_YORK))  # clocks fell back at 02:00 that night
    assert night.id == "2026-10-31/N"
    assert night.end - night.start == timedelta(hours=9)
    spring = calendar.shift_at(datetime(2026, 3, 8, 5, 0, tzinfo=NEW_YORK))
    assert spring.end - spring.start == timedelta(hours=7)


@pytest.mark.parametrize(
    ("shifts", "zone", "lead"),
    [
        ((), "Asia/Seoul", 30),
        (("7.00",), "Asia/Seoul", 30),
        (("07:00", "07:00"), "Asia/Seoul", 30),
        (("07:00",), "Mars/Olympus", 30),
        (("07:00", "19:00"), "Asia/Seoul", 720),
        (("25:00",), "Asia/Seoul", 0),
    ],
)
def test_unusable_configuration_is_refused(shifts: tuple[str, ...], zone: str, lead: int) -> None:
    with pytest.raises(ShiftConfigError):
        ShiftCalendar(Unit(id="X", timezone=zone, shifts=shifts, handover_lead_minutes=lead))


def test_jobs_fire_at_each_units_handover_in_its_own_zone(world: World) -> None:
    handovers = Handovers(world.context())
    jobs = {job.id: job for job in handovers.jobs()}
    assert {
        "handover.post.7W.D",
        "handover.post.7W.E",
        "handover.post.7W.N",
        "handover.post.ICU.D",
        "handover.post.ICU.N",
        "handover.post.NY4.N",
        "handover.sweep",
    } <= set(jobs)
    assert all(not job.every_replica for job in jobs.values())
    after = datetime(2026, 11, 29, 0, 0, tzinfo=UTC)
    for unit in UNITS:
        calendar = ShiftCalendar(unit)
        for code in calendar.codes:
            job = jobs[f"handover.post.{unit.id}.{code}"]
            assert job.timezone == unit.timezone and job.cron is not None
            fire = CronTrigger(timezone=job.timezone, **dict(job.cron)).get_next_fire_time(None, after)
            assert fire is not None
            assert calendar.last_handover(fire).handover_at == fire
            assert calendar.shift_at(calendar.last_handover(fire).end).code == code  # named by the incoming shift
            reminder = jobs[f"handover.remind.{unit.id}.{code}"]
            assert reminder.cron is not None
            early = CronTrigger(timezone=reminder.timezone, **dict(reminder.cron)).get_next_fire_time(
                None, fire - timedelta(hours=1)
            )
            assert early == fire - timedelta(minutes=30)


async def test_a_unit_with_a_broken_calendar_is_left_out_not_fatal(world: World) -> None:
    broken = Unit(id="BAD", timezone="Nowhere/City")
    world.directory = type(world.directory)([*UNITS, broken], [])
    handovers = Handovers(world.context())
    assert "BAD" not in {u.id for u in handovers.units()}
    assert not any(".BAD." in job.id for job in handovers.jobs())
    assert await handovers.health() == {"ready": True, "units": 3, "misconfigured_units": ["BAD"]}
