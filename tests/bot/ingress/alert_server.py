"""A real Wardline process for crash tests and the benchmark: the app with a durable stand-in for the outbox.

Usage: python -m tests.bot.ingress.alert_server DATA_DIR [DATABASE_URL]
prints "MLLP <port> HTTP <port>" once serving; SIGTERM stops it.
The stand-in outbox keeps one row per post key in its own SQLite file, like the real outbox (idempotent by key).
"""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from aiohttp import web

from bot.app import MLLP, create_app
from bot.services import HostPorts
from bot.settings import Settings
from bot.storage import SqlStore
from skills.core.fakes import ManualTimers
from skills.core.ports import Priority
from skills.core.types import Reply

OUTBOX = "outbox"
POST_CALLS = "outbox.calls"


class SqlOutbox:
    """Notifier: each key written once (the first post wins), every call counted; the row is committed first."""

    def __init__(self, store: SqlStore) -> None:
        self.store = store

    async def post(self, target: str, reply: Reply, *, key: str, priority: Priority = Priority.NORMAL) -> str:
        record: Mapping[str, Any] = {
            "target": target,
            "text": reply.text,
            "priority": int(priority),
            "at": time.time(),  # wall clock, for the benchmark's frame-to-post latency
        }
        await self.store.put_if_version(OUTBOX, key, record, expected=None)
        await self.store.append(POST_CALLS, {"key": key})
        return key

    async def update(self, message_ref: str, reply: Reply) -> None:
        await self.store.append(POST_CALLS, {"update": message_ref})

    async def delete(self, message_ref: str) -> None:
        return None


async def main(data_dir: Path, database_url: str = "") -> None:
    data_dir.mkdir(parents=True, exist_ok=True)
    (data_dir / "protocols").mkdir(exist_ok=True)
    outbox = SqlStore.from_url(f"sqlite+aiosqlite:///{data_dir / 'outbox.db'}")
    await outbox.open()
    settings = Settings().replace(
        data_dir=data_dir,
        database_url=database_url,
        protocols_dir=data_dir / "protocols",
        embeddings="none",
        resync_seconds=0,
        log_level="WARNING",
        mllp_port=0,
        port=0,
    )
    app = create_app(settings, ports=HostPorts(notifier=SqlOutbox(outbox), timers=ManualTimers()))
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    http_port = runner.addresses[0][1]
    print(f"MLLP {app[MLLP].value.port} HTTP {http_port}", flush=True)
    stop = asyncio.Event()
    asyncio.get_running_loop().add_signal_handler(signal.SIGTERM, stop.set)
    await stop.wait()
    await runner.cleanup()
    await outbox.close()


if __name__ == "__main__":
    asyncio.run(main(Path(sys.argv[1]), sys.argv[2] if len(sys.argv) > 2 else ""))
