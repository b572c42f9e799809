"""A test-only entry point: the real app (`create_app`) plus a skill that records timer firings and job runs.

Run as `python -m tests.fakes.timer_bot`; settings come from the environment like `wardline serve`. Every firing of a
`test.fire` timer and every run of the leader-only `test.tick` job is appended to a store stream with this pid, so a
test can count them across processes.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from aiohttp import web

from bot.app import create_app
from bot.settings import Settings
from skills.core.ports import TimerEvent
from skills.core.skill import Context, Job, Skill, TimerHandler

FIRINGS = "test.timer_firings"
TICKS = "test.ticks"


def recording_skill(context: Context) -> Skill:
    """Records each timer firing and each leader-only job run, with the pid that did it."""

    async def on_fire(event: TimerEvent) -> None:
        await context.store.append(
            FIRINGS,
            {"key": event.key, "pid": os.getpid(), "due": event.due.isoformat(), "at": datetime.now(UTC).isoformat()},
        )

    async def tick() -> None:
        await context.store.append(TICKS, {"pid": os.getpid(), "at": datetime.now(UTC).isoformat()})

    return Skill(
        name="recorder",
        description="test skill",
        timers=[TimerHandler("test.fire", on_fire)],
        jobs=[Job(id="test.tick", func=tick, interval_seconds=1, misfire_grace_seconds=1)],
    )


def main() -> None:
    settings = Settings.load()
    app = create_app(settings, extra_skills=[recording_skill])
    web.run_app(app, host=settings.host, port=settings.port, print=None, handle_signals=True)


if __name__ == "__main__":
    main()
