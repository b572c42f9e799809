"""Durable timers on SQLite and PostgreSQL: fired once, moved, cancelled, retried, surviving a restart."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from bot.storage import SqlStore
from bot.timers import SqlTimers
from skills.core.fakes import ManualClock
from skills.core.ports import TimerEvent
from skills.core.skill import Skill, TimerHandler
from tests.bot.test_storage import store  # noqa: F401  (the SQLite + PostgreSQL fixture)

START = datetime(2026, 11, 30, 6, 0, tzinfo=UTC)


class Recorder:
    """A skill whose timer handler records events and can be told to fail."""

    def __init__(self, fail_times: int = 0) -> None:
        self.events: list[TimerEvent] = []
        self.fail_times = fail_times

    async def handle(self, event: TimerEvent) -> None:
        self.events.append(event)
        if self.fail_times > 0:
            self.fail_times -= 1
            raise RuntimeError("handler broke")

    def skill(self, kind: str = "escalate") -> Skill:
        return Skill(name="test", description="", timers=[TimerHandler(kind, self.handle)])


def make(sql: SqlStore, clock: ManualClock, recorder: Recorder, **options: object) -> SqlTimers:
    timers = SqlTimers(sql.engine, clock, **options)  # type: ignore[arg-type]
    timers.add_skills([recorder.skill()])
    return timers


async def test_a_timer_fires_once_when_due_with_its_payload(store: SqlStore) -> None:  # noqa: F811
    clock, recorder = ManualClock(START), Recorder()
    timers = make(store, clock, recorder)
    due = START + timedelta(seconds=30)
    await timers.schedule_at("escalate", "alarm-1", due.astimezone(ZoneInfo("Asia/Seoul")), {"unit": "7W", "n": 1})
    assert await timers.fire_due() == 0
    clock.advance(29)
    assert await timers.fire_due() == 0
    clock.advance(1)
    assert await timers.fire_due() == 1
    assert recorder.events == [TimerEvent("escalate", "alarm-1", due, {"unit": "7W", "n": 1})]
    clock.advance(3600)
    assert await timers.fire_due() == 0, "fired exactly once"
    row = await timers.state("escalate", "alarm-1")
    assert row is not None and row["state"] == "done" and row["attempts"] == 1


async def test_schedule_again_moves_a_pending_timer_and_cancel_stops_it(store: SqlStore) -> None:  # noqa: F811
    clock, recorder = ManualClock(START), Recorder()
    timers = make(store, clock, recorder)
    await timers.schedule_at("escalate", "a", START + timedelta(seconds=10), {"v": 1})
    await timers.schedule_at("escalate", "a", START + timedelta(seconds=60), {"v": 2})
    await timers.schedule_at("escalate", "b", START + timedelta(seconds=10), {})
    assert await timers.cancel("escalate", "b") is True
    assert await timers.cancel("escalate", "b") is False
    assert await timers.cancel("escalate", "never") is False
    clock.advance(30)
    assert await timers.fire_due() == 0
    clock.advance(30)
    assert await timers.fire_due() == 1
    assert [(e.key, e.payload) for e in recorder.events] == [("a", {"v": 2})]
    assert await timers.cancel("escalate", "a") is False, "too late: it fired"


async def test_naive_times_are_refused(store: SqlStore) -> None:  # noqa: F811
    timers = make(store, ManualClock(START), Recorder())
    with pytest.raises(ValueError, match="timezone-aware"):
        await timers.schedule_at("escalate", "a", datetime(2026, 11, 30, 6, 0), {})


async def test_a_failing_handler_is_retried_twice_then_marked_failed(store: SqlStore) -> None:  # noqa: F811
    clock, recorder = ManualClock(START), Recorder(fail_times=5)
    timers = make(store, clock, recorder, retry_delays_s=(10, 60))
    await timers.schedule_at("escalate", "a", START, {})
    assert await timers.fire_due() == 1
    clock.advance(9)
    assert await timers.fire_due() == 0
    clock.advance(1)
    assert await timers.fire_due() == 1
    clock.advance(60)
    assert await timers.fire_due() == 1
    clock.advance(3600)
    assert await timers.fire_due() == 0, "three attempts, then it stops"
    row = await timers.state("escalate", "a")
    assert row is not None and row["state"] == "failed" and row["attempts"] == 3 and row["error"] == "RuntimeError"
    assert len(recorder.events) == 3 and all(e.due == START for e in recorder.events)
    assert timers.failed == 1


async def test_a_handler_that_recovers_on_retry_is_done(store: SqlStore) -> None:  # noqa: F811
    clock, recorder = ManualClock(START), Recorder(fail_times=1)
    timers = make(store, clock, recorder, retry_delays_s=(10,))
    await timers.schedule_at("escalate", "a", START, {})
    await timers.fire_due()
    clock.advance(10)
    await timers.fire_due()
    row = await timers.state("escalate", "a")
    assert row is not None and row["state"] == "done" and len(recorder.events) == 2


async def test_a_kind_nobody_handles_is_failed_not_retried(store: SqlStore) -> None:  # noqa: F811
    clock = ManualClock(START)
    timers = make(store, clock, Recorder())
    await timers.schedule_at("removed-skill", "a", START, {})
    assert await timers.fire_due() == 1
    clock.advance(3600)
    assert await timers.fire_due() == 0
    row = await timers.state("removed-skill", "a")
    assert row is not None and row["state"] == "failed"


async def test_timers_survive_a_restart_and_past_due_ones_fire_at_once(store: SqlStore) -> None:  # noqa: F811
    clock = ManualClock(START)
    before = make(store, clock, Recorder())
    await before.schedule_at("escalate", "during-downtime", START + timedelta(seconds=5), {"x": 1})
    await before.schedule_at("escalate", "later", START + timedelta(hours=1), {})
    del before  # the process is gone; only the rows remain
    clock.advance(120)
    recorder = Recorder()
    after = make(store, clock, recorder)
    assert await after.fire_due() == 1
    assert [e.key for e in recorder.events] == ["during-downtime"]
    assert await after.fire_due() == 0


async def test_a_replica_that_died_mid_handler_is_fired_again_after_its_lease(store: SqlStore) -> None:  # noqa: F811
    clock = ManualClock(START)
    hanging = asyncio.Event()

    async def never_returns(event: TimerEvent) -> None:
        hanging.set()
        await asyncio.Event().wait()

    dying = SqlTimers(store.engine, clock, handler_timeout_s=60)
    dying.add_skills([Skill(name="t", description="", timers=[TimerHandler("escalate", never_returns)])])
    await dying.schedule_at("escalate", "a", START, {})
    task = asyncio.create_task(dying.fire_due())
    await hanging.wait()
    # SIGKILL: the task is simply abandoned with the row in `firing` (no cancellation clean-up runs)
    recorder = Recorder()
    heir = make(store, clock, recorder)
    assert await heir.fire_due() == 0, "the lease still runs"
    clock.advance(89)
    assert await heir.fire_due() == 0
    clock.advance(2)
    assert await heir.fire_due() == 1
    row = await heir.state("escalate", "a")
    assert row is not None and row["state"] == "done" and row["attempts"] == 2
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task


async def test_shutdown_mid_handler_hands_the_timer_back(store: SqlStore) -> None:  # noqa: F811
    clock = ManualClock(START)
    started = asyncio.Event()

    async def slow(event: TimerEvent) -> None:
        started.set()
        await asyncio.sleep(3600)

    timers = SqlTimers(store.engine, clock)
    timers.add_skills([Skill(name="t", description="", timers=[TimerHandler("escalate", slow)])])
    await timers.schedule_at("escalate", "a", START, {})
    task = asyncio.create_task(timers.fire_due())
    await started.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    row = await timers.state("escalate", "a")
    assert row is not None and row["state"] == "pending" and row["attempts"] == 0 and row["claim"] is None


async def test_concurrent_claimers_fire_each_timer_once(store: SqlStore) -> None:  # noqa: F811
    clock, recorder = ManualClock(START), Recorder()
    replicas = [make(store, clock, recorder, batch=4) for _ in range(3)]
    for n in range(40):
        await replicas[0].schedule_at("escalate", f"t{n:02}", START + timedelta(seconds=n % 7), {})
    clock.advance(10)
    fired = await asyncio.gather(*(replica.fire_due() for replica in replicas))
    assert sum(fired) == 40
    assert sorted(e.key for e in recorder.events) == [f"t{n:02}" for n in range(40)]


async def test_duplicate_kinds_are_refused(store: SqlStore) -> None:  # noqa: F811
    timers = SqlTimers(store.engine, ManualClock(START))
    with pytest.raises(ValueError, match="declared twice"):
        timers.add_skills([Recorder().skill(), Recorder().skill()])


async def test_the_loop_sleeps_until_the_nearest_due_time_and_wakes_on_schedule(store: SqlStore) -> None:  # noqa: F811
    clock = ManualClock(datetime.now(UTC))
    recorder = Recorder()
    timers = make(store, clock, recorder, idle_s=30)
    assert await timers._seconds_to_next() == 30
    await timers.schedule_at("escalate", "a", clock.now() + timedelta(seconds=12), {})
    assert await timers._seconds_to_next() == pytest.approx(12)
    loop = asyncio.create_task(timers.run())
    await asyncio.sleep(0.2)
    assert recorder.events == []
    clock.advance(12)
    timers.wake()
    for _ in range(100):
        if recorder.events:
            break
        await asyncio.sleep(0.02)
    assert [e.key for e in recorder.events] == ["a"]
    loop.cancel()
    with pytest.raises(asyncio.CancelledError):
        await loop


async def test_a_handler_may_re_arm_its_own_timer(store: SqlStore) -> None:  # noqa: F811
    clock = ManualClock(START)
    fired: list[datetime] = []
    timers = SqlTimers(store.engine, clock)

    async def escalate(event: TimerEvent) -> None:
        fired.append(clock.now())
        if len(fired) < 3:  # the next step of an escalation chain, same key
            await timers.schedule_at(event.kind, event.key, clock.now() + timedelta(seconds=30), event.payload)

    timers.add_skills([Skill(name="t", description="", timers=[TimerHandler("escalate", escalate)])])
    await timers.schedule_at("escalate", "alarm-9", START, {"level": 1})
    for _ in range(5):
        await timers.fire_due()
        clock.advance(30)
    assert fired == [START, START + timedelta(seconds=30), START + timedelta(seconds=60)]
    row = await timers.state("escalate", "alarm-9")
    assert row is not None and row["state"] == "done"
