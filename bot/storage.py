"""SqlStore: the Store port on SQLAlchemy 2 async; SQLite by default, PostgreSQL for several replicas."""

from __future__ import annotations

import json
import os
import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from sqlalchemy import (
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    and_,
    delete,
    event,
    insert,
    inspect,
    select,
    text,
    update,
)
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.engine import Connection, make_url
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

metadata = MetaData()

records = Table(
    "records",
    metadata,
    Column("namespace", String(64), primary_key=True),
    Column("key", String(512), primary_key=True),
    Column("value", Text, nullable=False),
    Column("updated_at", DateTime(timezone=True), nullable=False),
    Column("version", BigInteger, nullable=False, server_default="1"),
)

events = Table(
    "events",
    metadata,
    Column("id", BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    Column("stream", String(64), nullable=False, index=True),
    Column("value", Text, nullable=False),
    Column("created_at", DateTime(timezone=True), nullable=False),
)

# Durable one-off timers (bot/timers.py; migration 0004).
timers = Table(
    "timers",
    metadata,
    Column("kind", String(64), primary_key=True),
    Column("key", String(512), primary_key=True),
    Column("due_at", DateTime(timezone=True), nullable=False),  # when the skill asked for it (the event's `due`)
    Column("run_at", DateTime(timezone=True), nullable=False),  # when to try next (later than due after a failure)
    Column("payload", Text, nullable=False),
    Column("state", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default="0"),
    Column("claim", String(64)),  # the token of the firing in progress; finishing requires it
    Column("claimed_by", String(128)),
    Column("lease_until", DateTime(timezone=True)),
    Column("fired_at", DateTime(timezone=True)),
    Column("error", String(200)),
    Column("updated_at", DateTime(timezone=True), nullable=False),
)
Index("ix_timers_state_run_at", timers.c.state, timers.c.run_at)

MIGRATIONS = Path(__file__).parent / "migrations"
HEALTH = "wardline.health"
HEARTBEAT_KEY = f"heartbeat:{socket.gethostname()}:{os.getpid()}"  # one record per replica


def alembic_config(connection: Connection | None = None) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["connection"] = connection
    return config


def upgrade_schema(connection: Connection, revision: str = "head") -> None:
    """Run Alembic migrations on a (sync) connection."""
    config = alembic_config(connection)
    if schema_revision(connection) is None and inspect(connection).has_table("records"):
        command.stamp(config, "0001")  # tables made by create_all before migrations existed: adopt them
    command.upgrade(config, revision)


def schema_revision(connection: Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()


def _like_prefix(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


class SqlStore:
    """Namespaced JSON records and append-only event streams in one SQL database."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self._dialect = engine.dialect.name
        self._file: Path | None = None  # the SQLite file, when there is one

    @classmethod
    def from_url(cls, url: str, *, timeout_s: float = 5.0) -> SqlStore:
        """An engine whose every wait is bounded by about `timeout_s`: connecting, each statement, a pool slot.

        Statement parameters never appear in SQLAlchemy's exception messages (`hide_parameters`): they carry
        questions, answers and patient text.
        """
        parsed = make_url(url)
        backend = parsed.get_backend_name()
        file_database = backend == "sqlite" and parsed.database not in (None, "", ":memory:")
        if file_database:
            Path(str(parsed.database)).parent.mkdir(parents=True, exist_ok=True)
        options: dict[str, Any] = {"pool_pre_ping": True, "hide_parameters": True}
        if backend == "postgresql" and parsed.get_driver_name() == "asyncpg":
            options["pool_timeout"] = timeout_s
            options["connect_args"] = {
                "timeout": timeout_s,  # TCP connect and authentication
                "command_timeout": timeout_s,  # client side: a server that accepts and never answers
                "server_settings": {"statement_timeout": str(int(timeout_s * 1000))},  # server side
            }
        elif file_database:
            options["pool_timeout"] = timeout_s
            options["connect_args"] = {"timeout": timeout_s}  # sqlite3's own wait for a lock
        engine = create_async_engine(url, **options)
        busy_ms = int(timeout_s * 1000)
        if engine.dialect.name == "sqlite":

            @event.listens_for(engine.sync_engine, "connect")
            def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
                cursor = dbapi_connection.cursor()
                cursor.execute("PRAGMA journal_mode=WAL")  # readers do not block the writer
                cursor.execute("PRAGMA synchronous=NORMAL")  # durable across crashes of the process in WAL mode
                cursor.execute(f"PRAGMA busy_timeout={busy_ms}")
                cursor.execute("PRAGMA case_sensitive_like=ON")  # prefixes match as in PostgreSQL
                cursor.close()

        store = cls(engine)
        store._file = Path(str(parsed.database)) if file_database else None
        return store

    async def open(self) -> None:
        """Bring the schema to the newest migration (creating it on an empty database)."""
        async with self.engine.begin() as connection:
            if self._dialect == "postgresql":  # replicas starting together migrate one after another
                await connection.execute(text("SELECT pg_advisory_xact_lock(22340, 2)"))
            await connection.run_sync(upgrade_schema)

    async def close(self) -> None:
        await self.engine.dispose()

    async def ping(self) -> bool:
        """Whether the database takes a write now: a heartbeat record is upserted (a read-only or deleted SQLite
        file, a full disk or a read-only PostgreSQL replica all answer False)."""
        if self._file is not None and not self._file.exists():
            return False  # open connections keep writing to a deleted file's inode: nothing would survive
        try:
            await self.put(HEALTH, HEARTBEAT_KEY, {"at": datetime.now(UTC).isoformat()})
        except Exception:  # any driver error means "not ready"; /readyz reports it
            return False
        return True

    async def get(self, namespace: str, key: str) -> dict[str, Any] | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(records.c.value).where(and_(records.c.namespace == namespace, records.c.key == key))
                )
            ).first()
        return json.loads(row[0]) if row else None

    async def put(self, namespace: str, key: str, value: Mapping[str, Any]) -> None:
        await self.put_many(namespace, [(key, value)])

    async def put_many(self, namespace: str, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        rows = [
            {"namespace": namespace, "key": k, "value": _dump(v), "updated_at": datetime.now(UTC)} for k, v in items
        ]
        if not rows:
            return
        dialect_insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
        statement = dialect_insert(records)
        statement = statement.on_conflict_do_update(
            index_elements=[records.c.namespace, records.c.key],
            set_={
                "value": statement.excluded.value,
                "updated_at": statement.excluded.updated_at,
                "version": records.c.version + 1,
            },
        )
        async with self.engine.begin() as connection:
            await connection.execute(statement, rows)

    async def get_versioned(self, namespace: str, key: str) -> tuple[dict[str, Any], int] | None:
        async with self.engine.connect() as connection:
            row = (
                await connection.execute(
                    select(records.c.value, records.c.version).where(
                        and_(records.c.namespace == namespace, records.c.key == key)
                    )
                )
            ).first()
        return (json.loads(row[0]), int(row[1])) if row else None

    async def put_if_version(
        self, namespace: str, key: str, value: Mapping[str, Any], *, expected: int | None
    ) -> int | None:
        now = datetime.now(UTC)
        async with self.engine.begin() as connection:
            if expected is None:
                dialect_insert = pg_insert if self._dialect == "postgresql" else sqlite_insert
                result = await connection.execute(
                    dialect_insert(records)
                    .values(namespace=namespace, key=key, value=_dump(value), updated_at=now, version=1)
                    .on_conflict_do_nothing(index_elements=[records.c.namespace, records.c.key])
                )
                return 1 if result.rowcount == 1 else None
            result = await connection.execute(
                update(records)
                .where(and_(records.c.namespace == namespace, records.c.key == key, records.c.version == expected))
                .values(value=_dump(value), updated_at=now, version=expected + 1)
            )
            return expected + 1 if result.rowcount == 1 else None

    async def delete(self, namespace: str, key: str) -> bool:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                delete(records).where(and_(records.c.namespace == namespace, records.c.key == key))
            )
        return bool(result.rowcount)

    async def scan(self, namespace: str, prefix: str = "") -> list[tuple[str, dict[str, Any]]]:
        query = select(records.c.key, records.c.value).where(records.c.namespace == namespace)
        if prefix:
            query = query.where(records.c.key.like(_like_prefix(prefix), escape="\\"))
        async with self.engine.connect() as connection:
            rows = (await connection.execute(query.order_by(records.c.key))).all()
        return [(row[0], json.loads(row[1])) for row in rows]

    async def replace_prefix(self, namespace: str, prefix: str, items: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
        now = datetime.now(UTC)
        rows = [{"namespace": namespace, "key": k, "value": _dump(v), "updated_at": now} for k, v in items]
        async with self.engine.begin() as connection:
            await connection.execute(
                delete(records).where(
                    and_(records.c.namespace == namespace, records.c.key.like(_like_prefix(prefix), escape="\\"))
                )
            )
            if rows:
                await connection.execute(insert(records), rows)

    async def append(self, stream: str, event_value: Mapping[str, Any]) -> int:
        async with self.engine.begin() as connection:
            result = await connection.execute(
                insert(events).returning(events.c.id),
                {"stream": stream, "value": _dump(event_value), "created_at": datetime.now(UTC)},
            )
            return int(result.scalar_one())

    async def delete_events_before(self, stream: str, before: datetime) -> int:
        """Delete a stream's events appended before `before` (retention); returns how many went."""
        async with self.engine.begin() as connection:
            result = await connection.execute(
                delete(events).where(and_(events.c.stream == stream, events.c.created_at < before))
            )
        return int(result.rowcount or 0)

    async def read(self, stream: str, *, after: int = 0, limit: int = 1000) -> list[tuple[int, dict[str, Any]]]:
        async with self.engine.connect() as connection:
            rows = (
                await connection.execute(
                    select(events.c.id, events.c.value)
                    .where(and_(events.c.stream == stream, events.c.id > after))
                    .order_by(events.c.id)
                    .limit(limit)
                )
            ).all()
        return [(int(row[0]), json.loads(row[1])) for row in rows]


def _dump(value: Mapping[str, Any]) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"), default=str)
