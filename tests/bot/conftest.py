"""Fixtures that run the real app on a loopback port against a loopback fake Bot Connector."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from bot.app import create_app
from bot.settings import Settings
from tests.fakes.teams import FakeConnector


async def serve(app: web.Application) -> tuple[web.AppRunner, str]:
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    host, port = runner.addresses[0][:2]
    return runner, f"http://{host}:{port}"


@pytest.fixture
async def connector() -> AsyncIterator[FakeConnector]:
    fake = FakeConnector()
    runner, url = await serve(fake.app())
    fake.url = url + "/"
    yield fake
    await runner.cleanup()
    assert fake.violations == [], "the bot sent what Teams would reject"


@dataclass
class RunningBot:
    """The app on a real socket; `post` sends an Activity like Teams does."""

    url: str
    settings: Settings
    app: web.Application
    session: aiohttp.ClientSession

    async def post(self, activity: dict[str, Any], headers: dict[str, str] | None = None) -> tuple[int, bytes]:
        async with self.session.post(f"{self.url}/api/messages", json=activity, headers=headers or {}) as response:
            return response.status, await response.read()

    async def post_raw(self, data: bytes, content_type: str) -> tuple[int, bytes]:
        headers = {"Content-Type": content_type}
        async with self.session.post(f"{self.url}/api/messages", data=data, headers=headers) as response:
            return response.status, await response.read()


BotFactory = Callable[..., Awaitable[RunningBot]]


def bot_settings(tmp_path: Path, **overrides: Any) -> Settings:
    """Embedded defaults in a temp folder: SQLite, bundled samples, lexical retrieval, no Azure."""
    base = Settings().replace(
        data_dir=tmp_path / "var",
        embeddings="none",
        resync_seconds=0,
        log_level="WARNING",
        mllp_port=0,  # any free port: tests run side by side
    )
    return base.replace(**overrides)


@pytest.fixture
async def start_bot(tmp_path: Path) -> AsyncIterator[BotFactory]:
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def start(**overrides: Any) -> RunningBot:
        settings = bot_settings(tmp_path, **overrides)
        app = create_app(settings)
        runner, url = await serve(app)
        runners.append(runner)
        session = aiohttp.ClientSession()
        sessions.append(session)
        for _ in range(600):  # the first sync indexes the samples in the background
            async with session.get(f"{url}/readyz") as response:
                if response.status == 200:
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("bot never became ready")
        return RunningBot(url, settings, app, session)

    yield start
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


@pytest.fixture
async def bot(start_bot: BotFactory) -> RunningBot:
    return await start_bot()
