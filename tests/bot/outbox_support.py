"""Shared pieces of the outbox tests: stores on SQLite and PostgreSQL, seeded conversations, a waiting helper."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from botbuilder.schema import Activity

from bot.outbox import Outbox, OutboxWorker, RateRule, global_limits
from bot.storage import SqlStore
from bot.teams.conversations import ConversationBook
from bot.teams.notifier import AiohttpConnector, TeamsCourier, TeamsNotifier
from skills.core.ports import Directory
from tests.fakes.teams import TENANT, USER_AAD, install_update, teams_message
from tests.postgres import fresh_database, session_server


@asynccontextmanager
async def sql_store(kind: str, tmp_path: Path) -> AsyncIterator[SqlStore]:
    """A migrated store: SQLite in tmp_path, or a fresh PostgreSQL database dropped afterwards."""
    if kind == "sqlite":
        store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / f'{uuid.uuid4().hex[:6]}.db'}")
        await store.open()
        try:
            yield store
        finally:
            await store.close()
        return
    async with fresh_database(session_server()) as url:  # the test requested the postgres_server fixture
        store = SqlStore.from_url(url)
        await store.open()
        try:
            yield store
        finally:
            await store.close()


def channel_activity(
    service_url: str, channel: str, *, team_name: str = "Ward 7", channel_name: str = "7W"
) -> Activity:
    """The conversationUpdate Teams sends when the app is added to a team, for channel `channel`."""
    body = install_update(service_url, kind="channel")
    body["conversation"]["id"] = channel
    body["channelData"].update(
        {
            "team": {"id": "19:ward-team@thread.tacv2", "name": team_name},
            "channel": {"id": channel, "name": channel_name},
        }
    )
    return Activity().deserialize(body)


def personal_activity(
    service_url: str, *, aad: str = USER_AAD, user_id: str = "29:1nurse", name: str = "Kim"
) -> Activity:
    body = teams_message("hi", service_url, user_id=user_id, user_name=name)
    body["conversation"] = {"conversationType": "personal", "tenantId": TENANT, "id": f"a:1{aad}"}
    body["from"]["aadObjectId"] = aad
    return Activity().deserialize(body)


@dataclass
class Pipeline:
    """One process's outbox: book, outbox, courier, worker and notifier on one store."""

    store: SqlStore
    book: ConversationBook
    outbox: Outbox
    connector: AiohttpConnector
    worker: OutboxWorker
    notifier: TeamsNotifier

    async def close(self) -> None:
        await self.worker.stop()
        await self.connector.close()


def pipeline(
    store: SqlStore,
    *,
    directory: Directory | None = None,
    fallback: str = "",
    clock: Callable[[], float] = time.time,
    bot_rate: int = 50,
    lease_s: float = 30.0,
    conversation_limits: tuple[RateRule, ...] | None = None,
) -> Pipeline:
    book = ConversationBook(store)
    kwargs: dict[str, Any] = {"bot_limits": global_limits(bot_rate), "clock": clock}
    if conversation_limits is not None:
        kwargs["conversation_limits"] = conversation_limits
    outbox = Outbox(store.engine, **kwargs)
    connector = AiohttpConnector(timeout_s=5)
    courier = TeamsCourier(book, connector, directory=directory, fallback_channel=fallback)
    worker = OutboxWorker(outbox, courier, lease_s=lease_s, poll_s=0.05)
    return Pipeline(
        store, book, outbox, connector, worker, TeamsNotifier(outbox, book, directory=directory, worker=worker)
    )


async def until(condition: Callable[[], bool], *, within: float = 20.0, what: str = "condition") -> None:
    """Wait for a condition the system under test makes true (polling, bounded); fail with `what`."""
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.01)


class OffsetClock:
    """Wall-clock time that a test can move forward (the outbox's leases, backoffs and holds)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset

    def advance(self, seconds: float) -> None:
        self.offset += seconds
