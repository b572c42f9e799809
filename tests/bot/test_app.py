"""The app's lifecycle: health probes, first indexing, the scheduled re-sync of the protocol folder."""

from __future__ import annotations

from pathlib import Path

from bot.app import SERVICES
from bot.scheduler import JobScheduler
from tests.bot.conftest import BotFactory, RunningBot
from tests.fakes.teams import FakeConnector, teams_message


async def test_health_and_readiness(bot: RunningBot) -> None:
    async with bot.session.get(f"{bot.url}/healthz") as response:
        assert response.status == 200
        assert await response.json() == {"status": "ok"}
    async with bot.session.get(f"{bot.url}/readyz") as response:
        assert response.status == 200
        body = await response.json()
    assert body["status"] == "ready"
    assert body["database"] == "ok"
    assert body["chunks"] > 200  # the bundled samples
    assert body["retrieval"] == "lexical"
    assert body["generation"] == "extractive"


async def test_resync_job_picks_up_a_new_protocol(
    start_bot: BotFactory, connector: FakeConnector, tmp_path: Path
) -> None:
    folder = tmp_path / "library"
    folder.mkdir()
    (folder / "falls.md").write_text("# Falls\n## Bed safety\nKeep the bed at its lowest height.\n")
    bot = await start_bot(protocols_dir=folder, resync_seconds=600)
    services = bot.app[SERVICES]
    skill = next(s for s in services.skills if s.name == "protocols")
    jobs = {j.id: j for j in skill.jobs}
    assert jobs["protocols.refresh"].every_replica  # each replica checks the library generation
    assert not jobs["protocols.retention"].every_replica  # the leader purges
    job = jobs["protocols.resync"]
    assert not job.every_replica  # the leader re-reads the folder
    assert job.interval_seconds == 600
    scheduler = JobScheduler("Asia/Seoul")
    scheduler.add(job)
    scheduled = scheduler.scheduler.get_job("protocols.resync")
    assert scheduled is not None
    assert scheduled.misfire_grace_time == 600
    assert scheduled.coalesce is True

    (folder / "sepsis.md").write_text("# Sepsis\n## Vasopressors\nTarget a MAP of 65 mmHg in septic shock.\n")
    await job.func()  # what the scheduler runs every 600 s
    status, _ = await bot.post(teams_message("MAP target in septic shock?", connector.url))
    assert status == 201
    assert "65 mmHg" in connector.messages()[-1].text


async def test_thresholds_come_from_settings(start_bot: BotFactory, connector: FakeConnector) -> None:
    bot = await start_bot(min_coverage=1.0, min_similarity=1.0)
    assert bot.app[SERVICES].library.retriever.settings.min_coverage == 1.0
    # "target" and "septic" are in the sepsis protocol, "rattlesnake" is not: at 1.0 nothing is covered.
    await bot.post(teams_message("What MAP do we target in septic rattlesnake shock?", connector.url))
    assert "don't seem to cover" in connector.messages()[-1].text
