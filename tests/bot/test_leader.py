"""Leader election (advisory lock on PostgreSQL, flock on SQLite) and leader-only scheduled jobs."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import asyncpg
import pytest

from bot.leader import FileLeadership, PostgresLeadership, SoleLeadership, leadership_for
from bot.scheduler import RUNS, JobScheduler
from skills.core.fakes import ManualClock, MemoryStore
from skills.core.skill import Job, Skill
from tests.bot.conftest import BotFactory
from tests.postgres import PostgresServer


@pytest.fixture
def database(postgres_url: str) -> str:
    """A fresh database on the test server (tests/postgres.py)."""
    return postgres_url


async def test_one_postgres_leader_and_takeover_when_it_closes(database: str) -> None:
    changes: list[tuple[str, bool]] = []
    first, second = PostgresLeadership(database), PostgresLeadership(database)

    def record(name: str):  # type: ignore[no-untyped-def]
        async def listener(leading: bool) -> None:
            changes.append((name, leading))

        return listener

    first.subscribe(record("first"))
    second.subscribe(record("second"))
    assert await first.check() is True
    assert await second.check() is False
    assert await first.check() is True, "the leader confirms it still holds the lock"
    await first.close()
    assert await second.check() is True
    assert changes == [("first", True), ("first", False), ("second", True)]
    await second.close()


async def test_a_leader_whose_connection_dies_steps_down_and_a_follower_takes_over(
    database: str, postgres_server: PostgresServer
) -> None:
    first, second = PostgresLeadership(database), PostgresLeadership(database)
    assert await first.check() is True
    assert await second.check() is False
    admin = await asyncpg.connect(postgres_server.dsn)
    try:  # the server ends the leader's session, as when its host vanishes and keepalives give up
        await admin.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = 22340"
            " AND database = (SELECT oid FROM pg_database WHERE datname = $1)",
            database.rsplit("/", 1)[1],
        )
    finally:
        await admin.close()
    assert await first.check() is False, "never act as leader without the lock"
    assert await second.check() is True
    assert await first.check() is False
    await first.close()
    await second.close()


async def test_sqlite_leadership_is_a_file_lock(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    first, second = leadership_for(url), leadership_for(url)
    assert isinstance(first, FileLeadership)
    assert await first.check() is True
    assert await second.check() is False
    await first.close()
    assert await second.check() is True
    await second.close()
    assert isinstance(leadership_for("sqlite+aiosqlite:///:memory:"), SoleLeadership)
    assert isinstance(leadership_for("postgresql+asyncpg://u@127.0.0.1/db"), PostgresLeadership)


async def test_leader_only_jobs_run_only_on_the_leader() -> None:
    ran: list[str] = []
    leading = False

    def job(name: str, *, every_replica: bool) -> Job:
        async def func() -> None:
            ran.append(name)

        return Job(id=name, func=func, interval_seconds=60, every_replica=every_replica)

    scheduler = JobScheduler("Asia/Seoul", is_leader=lambda: leading)
    scheduler.add_skills(
        [Skill(name="s", description="", jobs=[job("resync", every_replica=False), job("reload", every_replica=True)])]
    )

    async def fire_all() -> None:
        for scheduled in scheduler.scheduler.get_jobs():
            await scheduled.func()

    await fire_all()
    assert ran == ["reload"]
    leading = True
    await fire_all()
    assert ran == ["reload", "resync", "reload"]


def test_cron_jobs_keep_their_own_timezone() -> None:
    async def noop() -> None:
        return None

    scheduler = JobScheduler("Asia/Seoul")
    scheduler.add(Job(id="berlin", func=noop, cron={"hour": "6", "minute": "30"}, timezone="Europe/Berlin"))
    scheduler.add(Job(id="host", func=noop, cron={"hour": "6", "minute": "30"}))
    assert str(scheduler.scheduler.get_job("berlin").trigger.timezone) == "Europe/Berlin"
    assert str(scheduler.scheduler.get_job("host").trigger.timezone) == "Asia/Seoul"
    with pytest.raises(ValueError, match="unknown timezone"):
        scheduler.add(Job(id="bad", func=noop, cron={"hour": "6"}, timezone="Mars/Base"))


async def test_a_new_leader_runs_a_cron_job_missed_while_no_leader_was_alive() -> None:
    seoul = ZoneInfo("Asia/Seoul")
    store, clock = MemoryStore(), ManualClock(datetime(2026, 11, 30, 6, 31, tzinfo=seoul).astimezone(UTC))
    ran: list[str] = []

    async def handover() -> None:
        ran.append("handover")

    scheduler = JobScheduler("Asia/Seoul", store=store, clock=clock)
    job = Job(id="handover", func=handover, cron={"hour": "6", "minute": "30"}, misfire_grace_seconds=300)
    scheduler.add(job)
    assert await scheduler.catch_up() == [], "never ran before: nothing was missed"

    yesterday = datetime(2026, 11, 29, 6, 30, tzinfo=seoul)
    await store.put(RUNS, "handover", {"at": yesterday.isoformat()})
    assert await scheduler.catch_up() == ["handover"], "06:30 passed with no leader; it is 06:31"
    assert ran == ["handover"]
    assert await scheduler.catch_up() == [], "once"

    await store.put(RUNS, "handover", {"at": yesterday.isoformat()})
    clock.advance(10 * 60)  # 06:41: beyond the 5-minute misfire grace
    assert await scheduler.catch_up() == []
    assert ran == ["handover"]


async def test_only_the_leader_records_its_runs() -> None:
    store, clock = MemoryStore(), ManualClock()
    leading = False

    async def noop() -> None:
        return None

    scheduler = JobScheduler("Asia/Seoul", is_leader=lambda: leading, store=store, clock=clock)
    scheduler.add(Job(id="digest", func=noop, cron={"hour": "6"}))
    [scheduled] = scheduler.scheduler.get_jobs()
    await scheduled.func()
    assert await store.get(RUNS, "digest") is None
    leading = True
    await scheduled.func()
    assert await store.get(RUNS, "digest") == {"at": clock.now().isoformat()}


async def test_readyz_shows_one_leader_among_two_apps_on_one_sqlite_file(start_bot: BotFactory) -> None:
    first = await start_bot()
    second = await start_bot()  # same data folder, same database file
    assert first.settings.database == second.settings.database
    seen = []
    for running in (first, second):
        async with running.session.get(f"{running.url}/readyz") as response:
            seen.append((await response.json())["leader"])
    assert sorted(seen) == [False, True]
