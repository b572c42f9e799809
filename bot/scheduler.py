"""Binds the skills' declared jobs to an APScheduler 3 AsyncIOScheduler owned by the app's lifecycle."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.clock import SystemClock
from bot.logs import bind, unbind
from skills.core.ports import Clock, Store
from skills.core.skill import Job, Skill

log = logging.getLogger(__name__)

RUNS = "scheduler.runs"  # leader-only job id -> when the leader last started it (for catch-up after a takeover)


class JobScheduler:
    """One scheduler per process; every job error goes to one handler, nothing is skipped silently.

    Every replica keeps every job scheduled; a job with `every_replica=False` does its work only while `is_leader()`
    says so (checked when it fires), so a takeover needs no re-scheduling. With a store, the leader records each such
    run; a new leader runs a cron job whose time came while no leader was alive (within its misfire grace) at once.
    """

    def __init__(
        self,
        timezone: str,
        *,
        is_leader: Callable[[], bool] = lambda: True,
        store: Store | None = None,
        clock: Clock | None = None,
    ) -> None:
        self.timezone = timezone
        self.is_leader = is_leader
        self.store = store
        self.clock = clock or SystemClock()
        self._jobs: dict[str, tuple[Job, Any, Callable[[], Awaitable[None]]]] = {}
        self._catching_up: set[asyncio.Task[list[str]]] = set()
        self.scheduler = AsyncIOScheduler(
            timezone=timezone,
            job_defaults={"coalesce": True, "max_instances": 1},
        )
        self.scheduler.add_listener(self._on_event, EVENT_JOB_ERROR | EVENT_JOB_MISSED)

    def add_skills(self, skills: Sequence[Skill]) -> None:
        for skill in skills:
            for job in skill.jobs:
                self.add(job)

    def add(self, job: Job) -> None:
        trigger: Any
        zone = job.timezone or self.timezone
        try:
            ZoneInfo(zone)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"job {job.id} has an unknown timezone {zone!r}") from None
        if job.cron is not None:
            trigger = CronTrigger(timezone=zone, **dict(job.cron))
        elif job.interval_seconds:
            trigger = IntervalTrigger(seconds=job.interval_seconds, timezone=self.timezone)
        else:
            raise ValueError(f"job {job.id} has neither cron nor interval")

        async def run() -> None:
            if not job.every_replica:
                if not self.is_leader():
                    return  # the leader runs it
                if self.store is not None:
                    await self.store.put(RUNS, job.id, {"at": self.clock.now().isoformat()})
            token = bind(job_id=job.id)
            try:
                await job.func()
            finally:
                unbind(token)

        self._jobs[job.id] = (job, trigger, run)

        self.scheduler.add_job(
            run,
            trigger,
            id=job.id,
            name=job.id,
            replace_existing=True,
            misfire_grace_time=job.misfire_grace_seconds,  # APScheduler's default of 1 s skips runs after a restart
            coalesce=True,  # several missed runs become one
            max_instances=1,
        )

    async def on_leadership(self, leading: bool) -> None:
        """Leadership listener: on becoming leader, catch up in the background (never blocks the election)."""
        if leading:
            task = asyncio.create_task(self.catch_up())
            self._catching_up.add(task)
            task.add_done_callback(self._catching_up.discard)

    async def catch_up(self) -> list[str]:
        """Run each leader-only cron job whose latest time (within its misfire grace) passed with no leader run."""
        if self.store is None:
            return []
        ran: list[str] = []
        now = self.clock.now().astimezone(UTC)
        for job, trigger, run in list(self._jobs.values()):
            if job.every_replica or job.cron is None:
                continue
            latest = _latest_fire_time(trigger, now - timedelta(seconds=job.misfire_grace_seconds), now)
            record = await self.store.get(RUNS, job.id)
            if latest is None or record is None:  # nothing due, or never run: not a missed run
                continue
            if datetime.fromisoformat(str(record["at"])) < latest:
                log.warning("running a job missed while no leader was alive", extra={"job_id": job.id})
                try:
                    await run()
                except Exception:
                    log.exception("scheduled job failed", extra={"job_id": job.id})
                ran.append(job.id)
        return ran

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        for task in self._catching_up:
            task.cancel()
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    @staticmethod
    def _on_event(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning("scheduled job missed its time", extra={"job_id": event.job_id})
        else:
            log.error("scheduled job failed", exc_info=event.exception, extra={"job_id": event.job_id})


def _latest_fire_time(trigger: Any, start: datetime, now: datetime) -> datetime | None:
    """The last time the trigger fires in [start, now], or None."""
    latest = None
    fire = trigger.get_next_fire_time(None, start)
    while fire is not None and fire <= now:
        latest = fire
        fire = trigger.get_next_fire_time(fire, fire + timedelta(microseconds=1))
    return latest
