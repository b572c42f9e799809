"""Real `wardline serve` processes on one PostgreSQL: SIGKILL mid-drain, and three replicas sharing the queue."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import and_, select

from bot.outbox import PENDING, outbox
from bot.storage import SqlStore
from skills.core.types import Reply
from tests.bot.outbox_support import channel_activity, pipeline, until
from tests.fakes.teams import FakeConnector, limit_breaches

ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture
def database(postgres_url: str) -> str:
    """A fresh database on the test server (tests/postgres.py)."""
    return postgres_url


async def start_bot(url: str, tmp_path: Path, name: str) -> asyncio.subprocess.Process:
    """`wardline serve` as operators run it, configured only through the environment."""
    folder = tmp_path / name
    library = tmp_path / "protocols"  # replicas share one folder (one document: these tests are about delivery)
    library.mkdir(parents=True, exist_ok=True)
    folder.mkdir(parents=True, exist_ok=True)
    (library / "falls.md").write_text("# Falls\n## Bed safety\nKeep the bed at its lowest height.\n")
    env = {
        "PATH": os.environ.get("PATH", ""),
        "HOME": str(folder),
        "WARDLINE_DATABASE_URL": url,
        "WARDLINE_DATA_DIR": str(folder),
        "WARDLINE_EMBEDDINGS": "none",
        "WARDLINE_PROTOCOLS_DIR": str(library),
        "WARDLINE_RESYNC_SECONDS": "0",
        "WARDLINE_LOG_LEVEL": "WARNING",
        "WARDLINE_OUTBOX_LEASE_S": "3",
        "WARDLINE_OUTBOX_GLOBAL_RATE": "200",
        "PORT": str(free_port()),
        "WARDLINE_MLLP_PORT": "0",  # replicas side by side: each its own MLLP port
    }
    with (folder / "stderr.log").open("wb") as log:  # the child keeps its own copy of the descriptor
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "bot", "serve", cwd=folder, env=env, stdout=asyncio.subprocess.DEVNULL, stderr=log
        )


async def seed(store: SqlStore, connector: FakeConnector, units: int) -> list[str]:
    """Channels linked to units U0..Un, as if admins had linked each."""
    line = pipeline(store)
    channels = []
    for n in range(units):
        channel = f"19:unit-{n}@thread.tacv2"
        await line.book.remember(channel_activity(connector.url, channel))
        await line.book.link(f"U{n}", channel, by="test")
        channels.append(channel)
    await line.connector.close()
    return channels


async def post_many(store: SqlStore, keys: list[str], units: int) -> None:
    """Commit posts from this process through TeamsNotifier.post, exactly as a skill on some replica would."""
    producer = pipeline(store)
    numbered = list(enumerate(keys))
    for start in range(0, len(numbered), 25):  # many skills posting at once, as on a busy replica
        await asyncio.gather(
            *(
                producer.notifier.post(f"unit:U{n % units}", Reply(text=f"post {key}"), key=key)
                for n, key in numbered[start : start + 25]
            )
        )
    await producer.connector.close()


def delivered_keys(connector: FakeConnector) -> Counter[str]:
    return Counter(s.text.removeprefix("post ") for s in connector.delivered())


async def stop(process: asyncio.subprocess.Process) -> None:
    if process.returncode is None:
        process.send_signal(signal.SIGINT)
        try:
            await asyncio.wait_for(process.wait(), 15)
        except TimeoutError:
            process.kill()
            await process.wait()


async def test_sigkill_mid_drain_then_restart_delivers_every_post(
    database: str, tmp_path: Path, connector: FakeConnector
) -> None:
    store = SqlStore.from_url(database)
    await store.open()
    try:
        await seed(store, connector, 50)
        keys = [f"crash-{n}" for n in range(500)]
        await post_many(store, keys, 50)
        first = await start_bot(database, tmp_path, "first")
        try:
            await until(lambda: len(connector.delivered()) >= 60, within=60, what="the first bot to start sending")
        finally:
            first.kill()  # SIGKILL: no cleanup, leases stay taken until they expire
            await first.wait()
        delivered_before = sum(delivered_keys(connector).values())
        async with store.engine.connect() as connection:
            held = {
                row[0]
                for row in (
                    await connection.execute(
                        select(outbox.c.ref).where(and_(outbox.c.state == PENDING, outbox.c.lease_owner.is_not(None)))
                    )
                ).all()
            }
        assert delivered_before < 500, "the kill came too late to test anything"
        second = await start_bot(database, tmp_path, "second")
        try:
            await until(lambda: set(delivered_keys(connector)) == set(keys), within=60, what="every post")
            await asyncio.sleep(0.5)  # a late duplicate would arrive within this
        finally:
            await stop(second)
    finally:
        await store.close()
    counts = delivered_keys(connector)
    doubled = {key for key, n in counts.items() if n > 1}
    # A send on the wire at the instant of SIGKILL may have reached Teams before its success was recorded, and Teams
    # has no idempotency key: only those (held by the dead worker) may arrive twice; nothing else may.
    assert doubled <= held, doubled - held
    assert len(doubled) <= 32  # at most the worker's in-flight limit
    for channel, times in connector.receive_times().items():
        assert limit_breaches(times) == [], channel  # the ledger in the database outlived the crash
    print(f"\nkilled after {delivered_before} of 500; {len(held)} held by the dead worker; {len(doubled)} doubled")


async def test_three_replicas_share_one_queue_and_deliver_each_post_once(
    database: str, tmp_path: Path, connector: FakeConnector
) -> None:
    store = SqlStore.from_url(database)
    await store.open()
    bots = []
    try:
        await seed(store, connector, 100)
        keys = [f"fan-{n}" for n in range(1000)]
        await post_many(store, keys[:700], 100)  # queued before the replicas start: all three race to claim
        started = time.monotonic()
        bots = [await start_bot(database, tmp_path, f"replica-{n}") for n in range(3)]
        await until(lambda: len(connector.delivered()) >= 10, within=60, what="the replicas to start")
        ready = time.monotonic()
        await post_many(store, keys[700:], 100)  # and more committed while they drain
        await until(lambda: set(delivered_keys(connector)) == set(keys), within=60, what="all 1,000 posts")
        print(f"\nstart {ready - started:.1f} s, all delivered {time.monotonic() - ready:.1f} s later")
        await asyncio.sleep(0.5)
    finally:
        for bot in bots:
            await stop(bot)
        await store.close()
    counts = delivered_keys(connector)
    assert sum(counts.values()) == 1000 and set(counts.values()) == {1}  # no crash here: exactly once, strictly
    senders = Counter(s.user_agent for s in connector.delivered())
    assert len(senders) == 3, senders  # every replica took part
    for channel, times in connector.receive_times().items():
        assert limit_breaches(times) == [], channel  # limits hold across replicas (one shared ledger)
    print(f"\nposts per replica: {sorted(senders.values())}")
