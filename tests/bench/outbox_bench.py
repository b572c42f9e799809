"""Outbox benchmark: fan-out against the Teams limits, and post-to-receive latency on an idle queue.

    python tests/bench/outbox_bench.py [--quick] [--postgres] [--json]

Fan-out: 1,000 posts to 50 channels through TeamsNotifier and the outbox worker (one process, the production
wiring from settings) against the loopback fake Bot Connector, which runs on its own thread and event loop. Reported
beside the floor: the shortest time in which the Teams limits (7/1 s, 8/2 s, 60/30 s, 1,800/h per conversation and
50/s for the bot) allow those sends at all, computed by an earliest-slot schedule. Latency: time from
`Notifier.post` returning to the connector receiving the post, one post at a time, beside a bare aiohttp POST to
the same connector in the same run. Targets: p99 < 50 ms idle, fan-out within 1.2x of the floor, nothing lost or
doubled.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import statistics
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.outbox import TEAMS_CONVERSATION_LIMITS, RateRule, global_limits  # noqa: E402
from bot.settings import Settings  # noqa: E402
from bot.storage import SqlStore  # noqa: E402
from bot.teams.notifier import build_delivery  # noqa: E402
from skills.core.ports import Priority  # noqa: E402
from skills.core.types import Reply  # noqa: E402
from tests.bot.outbox_support import channel_activity  # noqa: E402
from tests.fakes.teams import FakeConnector, limit_breaches, peak_rate  # noqa: E402

POSTGRES_SERVER = "postgresql://postgres@127.0.0.1:5432/postgres"


class ConnectorThread:
    """The fake connector on its own thread and loop, so its work does not slow the bot's loop (as in production)."""

    def __init__(self) -> None:
        self.fake = FakeConnector()
        self.url = ""
        self._ready = threading.Event()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self._run, daemon=True)

    def start(self) -> None:
        self._thread.start()
        self._ready.wait(10)

    def _run(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._loop.run_until_complete(self._serve())
        self._ready.set()
        self._loop.run_forever()

    async def _serve(self) -> None:
        self._runner = web.AppRunner(self.fake.app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        host, port = self._runner.addresses[0][:2]
        self.url = f"http://{host}:{port}/"

    def stop(self) -> None:
        if self._loop is not None and self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self._loop).result(10)
            self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)


def floor_seconds(per_lane: list[int], lane_rules: tuple[RateRule, ...], bot_rules: tuple[RateRule, ...]) -> float:
    """The earliest time the last send can happen when every post is queued at t=0 (earliest-slot schedule)."""

    def earliest(history: list[float], rules: tuple[RateRule, ...], t: float) -> float:
        for rule in rules:
            if len(history) >= rule.limit:
                t = max(t, history[-rule.limit] + rule.window_s)
        return t

    remaining = list(per_lane)
    lanes: list[list[float]] = [[] for _ in per_lane]
    bot: list[float] = []
    last = 0.0
    while any(remaining):
        best, best_lane = (float("inf"), 0), -1
        for index, left in enumerate(remaining):
            if left:
                t = earliest(bot, bot_rules, earliest(lanes[index], lane_rules, 0.0))
                if (t, len(lanes[index])) < best:  # ties: the lane with the fewest sends, so bursts spread out
                    best, best_lane = (t, len(lanes[index])), index
        lanes[best_lane].append(best[0])
        bot.append(best[0])
        remaining[best_lane] -= 1
        last = best[0]
    return last


def percentile(values: list[float], share: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(share * (len(ordered) - 1)))]


async def open_store(postgres: bool, folder: Path) -> tuple[SqlStore, Any]:
    if not postgres:
        store = SqlStore.from_url(f"sqlite+aiosqlite:///{folder / 'bench.db'}")
        await store.open()
        return store, None
    import asyncpg

    name = f"wardline_bench_{uuid.uuid4().hex[:10]}"
    server = await asyncpg.connect(POSTGRES_SERVER)
    await server.execute(f'CREATE DATABASE "{name}"')
    store = SqlStore.from_url(f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}")
    await store.open()
    return store, (server, name)


async def run(posts: int, channels: int, samples: int, postgres: bool) -> dict[str, Any]:
    connector = ConnectorThread()
    connector.start()
    fake = connector.fake
    with tempfile.TemporaryDirectory() as tmp:
        store, cleanup = await open_store(postgres, Path(tmp))
        settings = Settings().replace(data_dir=Path(tmp), log_level="WARNING")
        delivery = build_delivery(settings, store)
        try:
            names = [f"19:bench-{n}@thread.tacv2" for n in range(channels)]
            for n, channel in enumerate(names):
                await delivery.book.remember(channel_activity(connector.url, channel))
                await delivery.book.link(f"U{n}", channel, by="bench")
            delivery.start()

            # Fan-out: every post committed as fast as the skills can, then drained within the limits.
            keys = [f"fan-{n}" for n in range(posts)]
            started = time.monotonic()
            for chunk in range(0, posts, 50):
                await asyncio.gather(
                    *(
                        delivery.notifier.post(
                            f"unit:U{n % channels}", Reply(text=f"post {keys[n]}"), key=keys[n], priority=Priority.BULK
                        )
                        for n in range(chunk, min(posts, chunk + 50))
                    )
                )
            committed = time.monotonic()
            while len(fake.delivered()) < posts:
                await asyncio.sleep(0.01)
                if time.monotonic() - started > 600:
                    raise RuntimeError("fan-out did not finish in 10 minutes")
            fan_out = [s for s in fake.delivered()]
            wall = max(s.received_at for s in fan_out) - started
            first = min(s.received_at for s in fan_out)
            counts = Counter(s.text for s in fan_out)
            lost = posts - len(counts)
            doubled = sum(n - 1 for n in counts.values())
            times = fake.receive_times()
            breaches = {c: b for c, t in times.items() if (b := limit_breaches(t))}
            peak = max(peak_rate(t) for t in times.values())
            floor = floor_seconds([posts // channels] * channels, TEAMS_CONVERSATION_LIMITS, global_limits(50))

            # Idle latency: one post at a time, spread over the channels so no limit binds.
            await asyncio.sleep(2.1)  # let the 1 s and 2 s windows of the fan-out pass
            latencies, commits = [], []
            for n in range(samples):
                before = len(fake.sent)
                t0 = time.monotonic()
                await delivery.notifier.post(f"unit:U{n % channels}", Reply(text=f"idle {n}"), key=f"idle-{n}")
                t1 = time.monotonic()
                while len(fake.sent) == before:  # noqa: ASYNC110  (the connector runs on another thread's loop)
                    await asyncio.sleep(0.0005)
                latencies.append((fake.sent[before].received_at - t1) * 1000)
                commits.append((t1 - t0) * 1000)
                await asyncio.sleep(0.03)  # stay under 50/s
            bare = []
            async with aiohttp.ClientSession() as session:
                body = {"type": "message", "text": "bare", "textFormat": "markdown"}
                url = f"{connector.url}v3/conversations/{names[0]}/activities"
                for _ in range(samples):
                    before = len(fake.sent)
                    t0 = time.monotonic()
                    async with session.post(url, json=body) as response:
                        await response.read()
                    bare.append((fake.sent[before].received_at - t0) * 1000)
        finally:
            await delivery.close()
            await store.close()
            connector.stop()
            if cleanup is not None:
                server, name = cleanup
                await server.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
                await server.close()
    return {
        "database": "postgresql" if postgres else "sqlite",
        "posts": posts,
        "channels": channels,
        "fan_out_wall_s": round(wall, 2),
        "fan_out_floor_s": round(floor, 2),
        "fan_out_ratio": round(wall / floor, 3) if floor else None,
        "commit_all_s": round(committed - started, 2),
        "first_receive_ms": round((first - started) * 1000, 1),
        "peak_per_conversation_per_s": peak,
        "limit_breaches": breaches,
        "lost": lost,
        "doubled": doubled,
        "idle_p50_ms": round(statistics.median(latencies), 2),
        "idle_p99_ms": round(percentile(latencies, 0.99), 2),
        "post_commit_p50_ms": round(statistics.median(commits), 2),
        "bare_post_p50_ms": round(statistics.median(bare), 2),
        "bare_post_p99_ms": round(percentile(bare, 0.99), 2),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="200 posts to 10 channels, 50 latency samples")
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL on 127.0.0.1:5432 instead of SQLite")
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    posts, channels, samples = (200, 10, 50) if args.quick else (1000, 50, 200)
    result = asyncio.run(run(posts, channels, samples, args.postgres))
    if args.json:
        print(json.dumps(result, indent=2))
    else:
        print(f"outbox on {result['database']}: {posts} posts to {channels} channels")
        print(
            f"fan-out {result['fan_out_wall_s']} s vs floor {result['fan_out_floor_s']} s "
            f"({result['fan_out_ratio']}x); peak {result['peak_per_conversation_per_s']}/s per conversation; "
            f"lost {result['lost']}, doubled {result['doubled']}, limit breaches {len(result['limit_breaches'])}"
        )
        print(
            f"idle post->receive p50 {result['idle_p50_ms']} ms, p99 {result['idle_p99_ms']} ms "
            f"(bare aiohttp POST p50 {result['bare_post_p50_ms']} ms, p99 {result['bare_post_p99_ms']} ms); "
            f"post() commit p50 {result['post_commit_p50_ms']} ms"
        )
    ok = (
        result["lost"] == 0
        and result["doubled"] == 0
        and not result["limit_breaches"]
        and result["idle_p99_ms"] < 50
        and (result["fan_out_ratio"] or 0) <= 1.2
    )
    return 0 if ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
