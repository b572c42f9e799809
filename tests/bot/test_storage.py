"""SqlStore on the embedded SQLite and on PostgreSQL (tests/postgres.py: the configured or a throwaway server)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from bot.storage import SqlStore
from tests.postgres import fresh_database


@pytest.fixture(params=["sqlite", "postgresql"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[SqlStore]:
    if request.param == "sqlite":
        sql = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'nested' / 'w.db'}")
        await sql.open()
        yield sql
        await sql.close()
        return
    # A fresh database on the test server (tests/postgres.py): migrations start from nothing.
    async with fresh_database(request.getfixturevalue("postgres_server")) as url:
        sql = SqlStore.from_url(url)
        await sql.open()
        yield sql
        await sql.close()


def head_revision() -> str | None:
    from alembic.script import ScriptDirectory

    from bot.storage import alembic_config

    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def ns() -> str:
    return f"t{uuid.uuid4().hex[:10]}"


async def test_records_round_trip(store: SqlStore) -> None:
    space = ns()
    await store.put(space, "a", {"x": 1, "ko": "한글"})
    await store.put(space, "a", {"x": 2, "ko": "한글"})
    assert await store.get(space, "a") == {"x": 2, "ko": "한글"}
    assert await store.get(space, "missing") is None
    assert await store.delete(space, "a") is True
    assert await store.delete(space, "a") is False


async def test_prefix_scan_treats_like_wildcards_literally(store: SqlStore) -> None:
    space = ns()
    await store.put_many(space, [("a_1", {"n": 1}), ("ab", {"n": 2}), ("a%", {"n": 3}), ("b", {"n": 4})])
    assert [k for k, _ in await store.scan(space, "a_")] == ["a_1"]
    assert [k for k, _ in await store.scan(space, "a%")] == ["a%"]
    assert [k for k, _ in await store.scan(space)] == ["a%", "a_1", "ab", "b"]


async def test_replace_prefix_is_atomic(store: SqlStore) -> None:
    space = ns()
    await store.put_many(space, [("doc#1", {"v": 1}), ("doc#2", {"v": 2}), ("other#1", {"v": 3})])
    with pytest.raises(IntegrityError):  # a duplicate key makes the insert fail inside the transaction
        await store.replace_prefix(space, "doc#", [("doc#9", {"v": 9}), ("doc#9", {"v": 9})])
    assert [k for k, _ in await store.scan(space)] == ["doc#1", "doc#2", "other#1"]  # nothing was deleted
    await store.replace_prefix(space, "doc#", [("doc#3", {"v": 3})])
    assert [k for k, _ in await store.scan(space)] == ["doc#3", "other#1"]


async def test_streams_are_append_only_and_ordered(store: SqlStore) -> None:
    stream = ns()
    ids = [await store.append(stream, {"n": n}) for n in range(5)]
    assert ids == sorted(ids)
    events = await store.read(stream)
    assert [e["n"] for _, e in events] == [0, 1, 2, 3, 4]
    assert [e["n"] for _, e in await store.read(stream, after=ids[2])] == [3, 4]
    assert len(await store.read(stream, limit=2)) == 2


async def test_concurrent_writers(store: SqlStore) -> None:
    stream = ns()
    await asyncio.gather(*(store.append(stream, {"n": n}) for n in range(40)))
    assert sorted(e["n"] for _, e in await store.read(stream)) == list(range(40))


async def test_data_survives_a_restart(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    first = SqlStore.from_url(url)
    await first.open()
    await first.put("ns", "k", {"kept": True})
    await first.close()
    second = SqlStore.from_url(url)
    await second.open()
    assert await second.get("ns", "k") == {"kept": True}
    assert await second.ping()
    await second.close()


async def test_migrations_build_exactly_the_declared_schema(store: SqlStore) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    import bot.outbox  # noqa: F401  (its tables belong to the declared schema)
    from bot.storage import metadata, schema_revision

    def check(connection):  # type: ignore[no-untyped-def]
        context = MigrationContext.configure(connection, opts={"compare_type": True})
        return compare_metadata(context, metadata), schema_revision(connection)

    async with store.engine.connect() as connection:
        differences, revision = await connection.run_sync(check)
    assert differences == []
    assert revision == head_revision()


async def test_a_database_from_before_migrations_is_adopted(tmp_path: Path) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    from bot.storage import metadata, schema_revision

    url = f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
    engine = create_async_engine(url)
    old = sa.MetaData()
    for name in ("records", "events"):  # the first development builds' tables: records had no version yet
        metadata.tables[name].to_metadata(old)
    old.tables["records"]._columns.remove(old.tables["records"].c.version)
    async with engine.begin() as connection:
        await connection.run_sync(old.create_all)
        await connection.execute(sa.text("INSERT INTO records VALUES ('ns', 'k', '{\"v\": 1}', '2026-01-01')"))
    await engine.dispose()
    store = SqlStore.from_url(url)
    await store.open()
    async with store.engine.connect() as connection:
        assert await connection.run_sync(schema_revision) == head_revision()
    assert await store.get_versioned("ns", "k") == ({"v": 1}, 1)
    await store.close()


async def test_compare_and_set_has_one_winner(store: SqlStore) -> None:
    assert await store.put_if_version("cas", "alert-1", {"owner": "a"}, expected=None) == 1
    assert await store.put_if_version("cas", "alert-1", {"owner": "b"}, expected=None) is None
    assert await store.get_versioned("cas", "alert-1") == ({"owner": "a"}, 1)
    results = await asyncio.gather(
        *(store.put_if_version("cas", "alert-1", {"owner": name}, expected=1) for name in "cdefgh")
    )
    winners = [r for r in results if r is not None]
    assert winners == [2]
    value, version = await store.get_versioned("cas", "alert-1")  # type: ignore[misc]
    assert version == 2 and value["owner"] in "cdefgh"
    await store.put("cas", "alert-1", {"owner": "z"})  # a plain write moves the version too
    assert await store.get_versioned("cas", "alert-1") == ({"owner": "z"}, 3)
    assert await store.put_if_version("cas", "alert-1", {"owner": "late"}, expected=2) is None
    assert await store.get_versioned("cas", "missing") is None


async def test_opening_twice_is_harmless(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'w.db'}"
    for _ in range(2):
        store = SqlStore.from_url(url)
        await store.open()
        await store.put("ns", "k", {"v": 1})
        await store.close()
