"""Two replicas over one database: two Accepts pressed at once on different replicas have exactly one winner."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from bot.storage import SqlStore
from skills.alerts.desk import ALERTS
from tests.postgres import fresh_database
from tests.skills.alerts.rig import KEY, Rig, alarm


class RacingStore:
    """A SqlStore whose next compare-and-set on an alert waits until the other replica reached its own."""

    def __init__(self, store: SqlStore, barrier: asyncio.Barrier) -> None:
        self._store = store
        self._barrier = barrier
        self.armed = False

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)

    async def put_if_version(
        self, namespace: str, key: str, value: Mapping[str, Any], *, expected: int | None
    ) -> int | None:
        if self.armed and namespace == ALERTS:
            self.armed = False
            await self._barrier.wait()  # both replicas have read the same version by now
        return await self._store.put_if_version(namespace, key, value, expected=expected)


@pytest.fixture(params=["sqlite", "postgresql"])
async def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'replicas.db'}"
        return
    async with fresh_database(request.getfixturevalue("postgres_server")) as url:  # tests/postgres.py
        yield url


async def test_two_accepts_on_two_replicas_have_one_winner(database_url: str) -> None:
    one, two = SqlStore.from_url(database_url), SqlStore.from_url(database_url)
    await one.open()
    await two.open()
    try:
        barrier = asyncio.Barrier(2)
        racing_one, racing_two = RacingStore(one, barrier), RacingStore(two, barrier)
        replica_one, replica_two = Rig(store=racing_one), Rig(store=racing_two)  # type: ignore[arg-type]
        replica_two.notifier = replica_one.notifier
        replica_two.desk.notifier = replica_one.notifier
        await replica_one.send(alarm())
        racing_one.armed = racing_two.armed = True
        first, second = await asyncio.gather(
            replica_one.press("alerts.accept", "aad-nurse", KEY), replica_two.press("alerts.accept", "aad-other", KEY)
        )
        record = await one.get(ALERTS, KEY)
        assert record is not None
        winner = record["accepted"]["name"]
        assert winner in ("Kim Nurse", "Lee Nurse")
        assert [f"Accepted by {winner}" in str(t.refreshed[0].content) for t in (first, second)] == [True, True]
        accepted = [e for _, e in await one.read("alerts.audit") if e["step"] == "accepted"]
        assert len(accepted) == 1
        assert not racing_one.armed and not racing_two.armed  # both really raced
    finally:
        await one.close()
        await two.close()
