"""Binds the skills' declared jobs to an APScheduler 3 AsyncIOScheduler owned by the app's lifecycle."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_MISSED, JobExecutionEvent
from apscheduler.schedulers.asyncio import AsyncIOScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from bot.logs import bind, unbind
from skills.core.skill import Job, Skill

log = logging.getLogger(__name__)


class JobScheduler:
    """One scheduler per process; every job error goes to one handler, nothing is skipped silently.

    Every replica keeps every job scheduled; a job with `every_replica=False` does its work only while `is_leader()`
    says so (checked when it fires), so a takeover needs no re-scheduling and misfire grace keeps its meaning.
    """

    def __init__(self, timezone: str, *, is_leader: Callable[[], bool] = lambda: True) -> None:
        self.timezone = timezone
        self.is_leader = is_leader
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
            if not job.every_replica and not self.is_leader():
                return  # the leader runs it
            token = bind(job_id=job.id)
            try:
                await job.func()
            finally:
                unbind(token)

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

    def start(self) -> None:
        self.scheduler.start()

    def shutdown(self) -> None:
        if self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    @staticmethod
    def _on_event(event: JobExecutionEvent) -> None:
        if event.code == EVENT_JOB_MISSED:
            log.warning("scheduled job missed its time", extra={"job_id": event.job_id})
        else:
            log.error("scheduled job failed", exc_info=event.exception, extra={"job_id": event.job_id})
