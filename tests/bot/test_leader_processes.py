"""Real bot processes on one PostgreSQL: one leader, SIGKILL takeover, timers fired exactly once across deaths."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from bot.clock import SystemClock
from bot.storage import SqlStore
from bot.timers import SqlTimers
from tests.fakes.timer_bot import FIRINGS, TICKS

ROOT = Path(__file__).resolve().parents[2]


@dataclass
class Replica:
    process: subprocess.Popen[bytes]
    url: str

    async def status(self, session: aiohttp.ClientSession) -> dict[str, Any] | None:
        try:
            async with session.get(f"{self.url}/readyz", timeout=aiohttp.ClientTimeout(total=2)) as response:
                body: dict[str, Any] = await response.json()
                return body if response.status == 200 else None
        except (aiohttp.ClientError, TimeoutError):
            return None

    def kill(self) -> None:
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def database(postgres_url: str) -> str:
    """A fresh database on the test server (tests/postgres.py)."""
    return postgres_url


@pytest.fixture
def launch(database: str, tmp_path: Path) -> Iterator[Any]:
    started: list[Replica] = []
    empty = tmp_path / "protocols"  # nothing to index: readiness is about the leader, not retrieval
    empty.mkdir()

    def start() -> Replica:
        port = free_port()
        env = {
            **os.environ,
            "WARDLINE_DATABASE_URL": database,
            "WARDLINE_DATA_DIR": str(tmp_path / f"var-{port}"),
            "WARDLINE_EMBEDDINGS": "none",
            "WARDLINE_RESYNC_SECONDS": "0",
            "WARDLINE_PROTOCOLS_DIR": str(empty),
            "WARDLINE_LOG_LEVEL": "WARNING",
            "PORT": str(port),
            "WARDLINE_MLLP_PORT": "0",  # replicas side by side: each its own MLLP port
        }
        process = subprocess.Popen(
            [sys.executable, "-m", "tests.fakes.timer_bot"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        replica = Replica(process, f"http://127.0.0.1:{port}")
        started.append(replica)
        return replica

    yield start
    for replica in started:
        if replica.process.poll() is None:
            replica.kill()


async def wait_ready(session: aiohttp.ClientSession, replicas: list[Replica], deadline: float) -> list[dict[str, Any]]:
    while time.monotonic() < deadline:
        statuses = [await replica.status(session) for replica in replicas]
        if all(statuses):
            return [s for s in statuses if s]
        await asyncio.sleep(0.2)
    raise AssertionError("replicas never became ready")


async def leaders(session: aiohttp.ClientSession, replicas: list[Replica]) -> list[Replica]:
    return [r for r in replicas if (s := await r.status(session)) is not None and s["leader"]]


async def events(store: SqlStore, stream: str) -> list[dict[str, Any]]:
    return [event for _, event in await store.read(stream)]


async def test_sigkill_the_leader_and_a_timer_due_later_fires_once_from_the_new_leader(
    database: str, launch: Any
) -> None:
    began = time.monotonic()
    store = SqlStore.from_url(database)
    async with aiohttp.ClientSession() as session:
        replicas = [launch() for _ in range(3)]  # all at once: migrations must serialise
        await wait_ready(session, replicas, began + 45)  # start-up speed is the machine's load
        await store.open()
        for _ in range(50):
            current = await leaders(session, replicas)
            if current:
                break
            await asyncio.sleep(0.1)
        assert len(current) == 1, "exactly one leader"
        [leader] = current
        survivors = [r for r in replicas if r is not leader]

        scenario = time.monotonic()
        timers = SqlTimers(store.engine, SystemClock())
        due = datetime.now(UTC) + timedelta(seconds=5)
        await timers.schedule_at("test.fire", "after-the-kill", due, {})
        ticks_before = await events(store, TICKS)
        leader.kill()
        killed_at = time.monotonic()
        while not await leaders(session, survivors):
            assert time.monotonic() - killed_at < 15, "no takeover within 15 s"
            await asyncio.sleep(0.05)
        takeover_s = time.monotonic() - killed_at
        print(f"takeover after SIGKILL: {takeover_s:.2f} s")

        firings: list[dict[str, Any]] = []
        while time.monotonic() < killed_at + 15 and not firings:
            firings = await events(store, FIRINGS)
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.5)  # room for a second, wrong firing to show up
        firings = await events(store, FIRINGS)
        assert len(firings) == 1, firings
        [firing] = firings
        survivor_pids = {r.process.pid for r in survivors}
        assert firing["pid"] in survivor_pids
        fired_at = datetime.fromisoformat(firing["at"])
        assert due <= fired_at < due + timedelta(seconds=4), "on time, not early"
        assert len(await leaders(session, survivors)) == 1

        ticks_after = await events(store, TICKS)
        assert {t["pid"] for t in ticks_before} <= {leader.process.pid}, "followers never ran the leader-only job"
        late = [t for t in ticks_after if datetime.fromisoformat(t["at"]) > due]
        assert late and {t["pid"] for t in late} == {firing["pid"]}, "the new leader runs the jobs"
        row = await timers.state("test.fire", "after-the-kill")
        assert row is not None and row["state"] == "done" and row["attempts"] == 1

        # The new leader's loop sleeps (nothing pending); a timer set from elsewhere wakes it through NOTIFY.
        soon = datetime.now(UTC) + timedelta(seconds=1)
        await timers.schedule_at("test.fire", "set-from-a-follower", soon, {})
        for _ in range(40):
            if len(await events(store, FIRINGS)) == 2:
                break
            await asyncio.sleep(0.1)
        second = (await events(store, FIRINGS))[1:]
        assert [f["key"] for f in second] == ["set-from-a-follower"]
        assert datetime.fromisoformat(second[0]["at"]) < soon + timedelta(seconds=2), "woken, not polled"
    await store.close()
    print(f"whole test {time.monotonic() - began:.1f} s, kill-to-verified scenario {time.monotonic() - scenario:.1f} s")
    assert time.monotonic() - scenario < 20


async def test_a_timer_due_while_no_leader_ran_fires_once_on_takeover(database: str, launch: Any) -> None:
    store = SqlStore.from_url(database)
    async with aiohttp.ClientSession() as session:
        first = launch()
        await wait_ready(session, [first], time.monotonic() + 45)
        await store.open()
        timers = SqlTimers(store.engine, SystemClock())
        due = datetime.now(UTC) + timedelta(seconds=2)
        await timers.schedule_at("test.fire", "during-downtime", due, {"bed": "12"})
        first.kill()
        await asyncio.sleep(max((due - datetime.now(UTC)).total_seconds(), 0) + 1)
        assert await events(store, FIRINGS) == [], "nobody was there to fire it"

        second = launch()
        await wait_ready(session, [second], time.monotonic() + 45)
        for _ in range(80):
            if await events(store, FIRINGS):
                break
            await asyncio.sleep(0.1)
        await asyncio.sleep(1.0)
        firings = await events(store, FIRINGS)
        assert [(f["key"], f["pid"]) for f in firings] == [("during-downtime", second.process.pid)]
    await store.close()
