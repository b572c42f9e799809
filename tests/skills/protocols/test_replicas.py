"""Two replicas on one store: a re-sync on one moves the library generation and the other reloads (SQLite, PostgreSQL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from bot.storage import SqlStore
from skills.protocols.library import ProtocolLibrary
from tests.postgres import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def url(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'shared' / 'wardline.db'}"
        return
    async with fresh_database(request.getfixturevalue("postgres_server")) as database_url:  # tests/postgres.py
        yield database_url


async def sources(library: ProtocolLibrary, question: str) -> list[str]:
    return [h.chunk.source for h in await (await library.current()).search(question, 3, mode="lexical")]


async def test_a_peer_reloads_when_the_library_changes(url: str, tmp_path: Path) -> None:
    folder = tmp_path / "protocols"
    folder.mkdir()
    (folder / "sepsis.md").write_text("# Sepsis\n\n## Antibiotics\n\nGive antibiotics within one hour.\n")
    leader_store, peer_store = SqlStore.from_url(url), SqlStore.from_url(url)  # two processes' connections
    await leader_store.open()
    await peer_store.open()
    try:
        leader = ProtocolLibrary(leader_store)
        peer = ProtocolLibrary(peer_store, check_seconds=0.0)
        await leader.sync(folder)
        await peer.load()
        assert await sources(peer, "antibiotics within one hour") == ["sepsis.md"]
        first = peer.retriever

        assert await peer.refresh() is False  # nothing changed: one small read, no rebuild
        assert peer.retriever is first

        (folder / "falls.md").write_text("# Falls\n\n## Bed\n\nKeep the bed at its lowest height.\n")
        (folder / "sepsis.md").unlink()
        await leader.sync(folder)
        assert peer.generation != leader.generation

        # Answering checks the generation first (check_seconds=0 here; a few seconds in production).
        assert await sources(peer, "lowest bed height") == ["falls.md"]
        assert await sources(peer, "antibiotics within one hour") == []
        assert peer.generation == leader.generation
    finally:
        await leader_store.close()
        await peer_store.close()


async def test_the_periodic_check_is_cheap_and_rate_limited(tmp_path: Path) -> None:
    folder = tmp_path / "protocols"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n\n## Scope\n\nAll adult wards.\n")
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    one, two = SqlStore.from_url(url), SqlStore.from_url(url)
    await one.open()
    await two.open()
    try:
        leader = ProtocolLibrary(one)
        peer = ProtocolLibrary(two, check_seconds=3600.0)
        await leader.sync(folder)
        await peer.load()
        (folder / "b.md").write_text("# B\n\n## Scope\n\nChildren's wards only.\n")
        await leader.sync(folder)
        # Within check_seconds of the last look the peer answers from its snapshot without reading the store...
        assert [c.source for c in (await peer.current()).chunks] == ["a.md"]
        # ...and the every-replica job's refresh picks the change up.
        assert await peer.refresh() is True
        assert sorted({c.source for c in peer.retriever.chunks}) == ["a.md", "b.md"]
    finally:
        await one.close()
        await two.close()
