"""One leader among the replicas: it alone runs the skills' leader-only jobs and fires durable timers.

On PostgreSQL the leader holds a session advisory lock on a dedicated connection (not the pool's): the lock lives as
long as that connection, so a dead replica's lock goes with its socket (at once for a killed process; within about
11 s through TCP keepalives for a vanished host). Followers retry every `check_s`; the leader re-checks that it still
holds the lock and steps down the moment its connection fails, before the server can hand the lock to another.
On SQLite (one host) an exclusive `flock` on a file beside the database plays the same part.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import importlib
import logging
import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

LOCK_CLASS = 0x5744  # "WD": the two-int advisory lock key (class, object) Wardline uses in its database
LOCK_OBJECT = 1
Listener = Callable[[bool], Awaitable[None]]
Notified = Callable[[], None]


class Leadership:
    """Leader state plus the callbacks that start and stop leader-only work when it changes."""

    def __init__(self) -> None:
        self.is_leader = False
        self._listeners: list[Listener] = []
        self._changed = asyncio.Event()

    def subscribe(self, listener: Listener) -> None:
        """Call `listener(True)` on becoming leader and `listener(False)` on stepping down."""
        self._listeners.append(listener)

    async def _set(self, leading: bool) -> None:
        if leading == self.is_leader:
            return
        self.is_leader = leading
        log.warning("became the leader" if leading else "no longer the leader", extra={"pid": os.getpid()})
        for listener in self._listeners:
            try:
                await listener(leading)
            except Exception:
                log.exception("leadership listener failed")
        self._changed.set()

    async def changed(self) -> None:
        """Wait for the next change of leadership (tests and the CLI)."""
        self._changed.clear()
        await self._changed.wait()

    async def run(self) -> None:
        raise NotImplementedError

    async def close(self) -> None:
        await self._set(False)


class PostgresLeadership(Leadership):
    """`pg_try_advisory_lock` held on its own connection; that connection also LISTENs for timer wake-ups."""

    def __init__(
        self,
        database_url: str,
        *,
        check_s: float = 2.0,
        timeout_s: float = 3.0,
        channel: str | None = None,
        on_notify: Notified | None = None,
    ) -> None:
        super().__init__()
        self.dsn = make_url(database_url).set(drivername="postgresql").render_as_string(hide_password=False)
        self.check_s = check_s
        self.timeout_s = timeout_s
        self.channel = channel
        self.on_notify = on_notify
        self._asyncpg: Any = importlib.import_module("asyncpg")  # the `postgres` extra; only needed here
        self._connection: Any = None
        self._trouble = False

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.check_s)

    async def check(self) -> bool:
        """Take the lock if free, or confirm it is still held; step down on any doubt. Return is_leader."""
        try:
            connection = await self._connect()
            if not self.is_leader:
                taken = await connection.fetchval(
                    "SELECT pg_try_advisory_lock($1, $2)", LOCK_CLASS, LOCK_OBJECT, timeout=self.timeout_s
                )
                if taken:
                    await self._set(True)
            else:
                held = await connection.fetchval(
                    "SELECT EXISTS (SELECT 1 FROM pg_locks WHERE locktype = 'advisory' AND granted"
                    " AND pid = pg_backend_pid() AND classid::bigint = $1 AND objid::bigint = $2 AND objsubid = 2)",
                    LOCK_CLASS,
                    LOCK_OBJECT,
                    timeout=self.timeout_s,
                )
                if not held:
                    await self._set(False)
            if self._trouble:
                log.warning("leader election connection is back")
                self._trouble = False
        except Exception as exc:  # asyncpg has several error families for a dead link; any doubt means step down
            if not self._trouble:  # once when it fails, once when it is back
                log.error("leader election connection failed", extra={"error": type(exc).__name__})
                self._trouble = True
            await self._disconnect()
            await self._set(False)  # the server drops our lock with the connection: never act as leader without it
        return self.is_leader

    async def _connect(self) -> Any:
        if self._connection is not None and not self._connection.is_closed():
            return self._connection
        connection = await self._asyncpg.connect(
            self.dsn,
            timeout=self.timeout_s,
            server_settings={
                "application_name": "wardline-leader",
                # A leader host that vanishes without closing its socket loses the lock in 5 + 2 * 3 = 11 s.
                "tcp_keepalives_idle": "5",
                "tcp_keepalives_interval": "2",
                "tcp_keepalives_count": "3",
            },
        )
        if self.channel and self.on_notify is not None:
            notify = self.on_notify
            await connection.add_listener(self.channel, lambda *_args: notify())
        self._connection = connection
        return connection

    async def _disconnect(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None:
            connection.terminate()

    async def close(self) -> None:
        """Release the lock at once (a graceful restart hands over without waiting for a timeout)."""
        connection = self._connection
        if connection is not None and not connection.is_closed():
            with contextlib.suppress(Exception):
                await asyncio.wait_for(connection.close(), timeout=self.timeout_s)
        await self._disconnect()
        await super().close()


class FileLeadership(Leadership):
    """SQLite: an exclusive, non-blocking flock on `<database>.leader`; the kernel drops it when the process dies."""

    def __init__(self, lock_path: Path, *, check_s: float = 2.0) -> None:
        super().__init__()
        self.lock_path = lock_path
        self.check_s = check_s
        self._fd: int | None = None

    async def run(self) -> None:
        while True:
            await self.check()
            await asyncio.sleep(self.check_s)

    async def check(self) -> bool:
        if self.is_leader:
            return True
        fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self._fd = fd
        await self._set(True)
        return True

    async def close(self) -> None:
        fd, self._fd = self._fd, None
        if fd is not None:
            os.close(fd)  # closing the descriptor releases the flock
        await super().close()


class SoleLeadership(Leadership):
    """An in-memory database: this process is the only one there is."""

    async def run(self) -> None:
        await self._set(True)
        await asyncio.Event().wait()


def leadership_for(database_url: str, **options: Any) -> Leadership:
    """The election that fits the database: advisory lock on PostgreSQL, file lock on SQLite."""
    url = make_url(database_url)
    if url.get_backend_name() == "postgresql":
        return PostgresLeadership(database_url, **options)
    if url.database in (None, "", ":memory:"):
        return SoleLeadership()
    check = {k: v for k, v in options.items() if k == "check_s"}
    return FileLeadership(Path(f"{url.database}.leader"), **check)
