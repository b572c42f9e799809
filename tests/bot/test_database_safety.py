"""The database under failure: no parameters or driver text in the logs, bounded waits, readiness that writes."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sqlite3
import time
from pathlib import Path

import pytest
from sqlalchemy.engine import make_url
from sqlalchemy.exc import SQLAlchemyError

from bot.logs import JsonFormatter, TextFormatter
from bot.storage import SqlStore
from tests.bot.conftest import BotFactory
from tests.fakes.teams import FakeConnector, teams_message

MARKER = "ZEBRAMARKER4471"
STORED = {"question": f"{MARKER} Kim Minji MAP?"}  # here, not in a line a traceback would quote


def formatted(records: list[logging.LogRecord]) -> str:
    """Every record as Wardline's two formatters would write it."""
    json_lines = [JsonFormatter().format(r) for r in records]
    text_lines = [TextFormatter().format(r) for r in records]
    return "\n".join(json_lines + text_lines)


async def test_a_failed_write_logs_neither_parameters_nor_the_question(
    start_bot: BotFactory, connector: FakeConnector, caplog: pytest.LogCaptureFixture
) -> None:
    bot = await start_bot()
    database = bot.settings.data_dir / "wardline.db"
    with contextlib.closing(sqlite3.connect(database)) as raw:  # every answer record write now fails
        raw.execute(
            "CREATE TRIGGER refuse_answers BEFORE INSERT ON records WHEN NEW.namespace = 'protocols.answers' "
            "BEGIN SELECT RAISE(ABORT, 'constraint failed'); END"
        )
        raw.commit()
    caplog.set_level(logging.DEBUG)
    await bot.post(teams_message(f"{MARKER} what MAP do we target in septic shock?", connector.url))
    assert "something went wrong" in connector.messages()[-1].text  # the turn failed and said so
    failures = [r for r in caplog.records if r.exc_info]
    assert failures, "the failure was logged"
    logged = formatted(caplog.records)
    assert "IntegrityError" in logged  # the type is kept: an operator can tell what failed
    assert MARKER not in logged
    assert "septic" not in logged


@pytest.fixture
def postgres_database(postgres_url: str) -> str:
    """A fresh database on the test server (tests/postgres.py), as its SQLAlchemy URL."""
    return postgres_url


async def test_driver_messages_that_quote_values_are_withheld(
    postgres_database: str, caplog: pytest.LogCaptureFixture
) -> None:
    store = SqlStore.from_url(postgres_database)
    await store.open()
    try:
        async with store.engine.begin() as connection:
            await connection.exec_driver_sql(
                "CREATE FUNCTION quote_it() RETURNS trigger AS $$ BEGIN "
                "RAISE EXCEPTION 'refused: %', NEW.value USING ERRCODE = 'check_violation'; END $$ LANGUAGE plpgsql"
            )
            await connection.exec_driver_sql(
                "CREATE TRIGGER quote_it BEFORE INSERT ON records FOR EACH ROW EXECUTE FUNCTION quote_it()"
            )
        caplog.set_level(logging.DEBUG)
        try:
            await store.put("protocols.answers", "r1", STORED)
        except Exception:
            logging.getLogger("wardline.test").exception("write failed")
        else:
            pytest.fail("the trigger should refuse the write")
    finally:
        await store.close()
    logged = formatted(caplog.records)
    assert "sqlstate=23514" in logged  # the code says what kind of failure it was
    assert MARKER not in logged and "Kim Minji" not in logged


class SilentServer:
    """A TCP server on loopback that accepts connections and never answers (a hung database host)."""

    def __init__(self) -> None:
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: list[asyncio.StreamWriter] = []

    async def __aenter__(self) -> SilentServer:
        async def hold(_reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            self._writers.append(writer)

        self._server = await asyncio.start_server(hold, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for writer in self._writers:
            writer.close()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def test_a_database_that_never_answers_fails_fast() -> None:
    async with SilentServer() as silent:
        store = SqlStore.from_url(f"postgresql+asyncpg://postgres@127.0.0.1:{silent.port}/wardline", timeout_s=1)
        started = time.monotonic()
        assert await store.ping() is False
        with pytest.raises((OSError, SQLAlchemyError)):  # TimeoutError is an OSError
            await store.get("protocols.history", "c|u")
        elapsed = time.monotonic() - started
        await store.close()
    assert elapsed < 5, f"waited {elapsed:.1f} s on a silent database"


class FreezableProxy:
    """Forwards loopback TCP to PostgreSQL until `freeze()`: from then on nothing passes either way."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self.frozen = asyncio.Event()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: list[asyncio.StreamWriter] = []

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, asyncio.CancelledError):
            while data := await reader.read(65536):
                if self.frozen.is_set():
                    await asyncio.Event().wait()  # swallow everything from now on, like a hung host
                writer.write(data)
                await writer.drain()

    async def __aenter__(self) -> FreezableProxy:
        async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            up_reader, up_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
            self._writers += [writer, up_writer]
            for task in (self._pipe(reader, up_writer), self._pipe(up_reader, writer)):
                running = asyncio.create_task(task)
                self._tasks.add(running)
                running.add_done_callback(self._tasks.discard)

        self._server = await asyncio.start_server(accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *_exc: object) -> None:
        for task in list(self._tasks):
            task.cancel()
        for writer in self._writers:
            writer.close()
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()


async def test_turns_and_readiness_answer_quickly_when_postgresql_stops_answering(
    start_bot: BotFactory, connector: FakeConnector, postgres_database: str
) -> None:
    target = make_url(postgres_database)
    async with FreezableProxy(target_port=int(target.port or 5432)) as proxy:
        url = target.set(host="127.0.0.1", port=proxy.port).render_as_string(hide_password=False)
        bot = await start_bot(database_url=url, database_timeout_s=1.0)
        async with bot.session.get(f"{bot.url}/readyz") as response:
            assert response.status == 200
        proxy.frozen.set()
        started = time.monotonic()
        async with bot.session.get(f"{bot.url}/readyz") as response:
            assert response.status == 503
            assert (await response.json())["database"] == "unreachable"
        assert time.monotonic() - started < 3
        started = time.monotonic()
        await bot.post(teams_message("What MAP do we target in septic shock?", connector.url))
        assert time.monotonic() - started < 8
        assert "something went wrong" in connector.messages()[-1].text


async def test_readiness_fails_when_writes_fail_though_reads_work(start_bot: BotFactory) -> None:
    bot = await start_bot()
    database = bot.settings.data_dir / "wardline.db"
    with contextlib.closing(sqlite3.connect(database)) as raw:  # like a read-only file or a full disk
        raw.execute("CREATE TRIGGER read_only BEFORE INSERT ON records BEGIN SELECT RAISE(ABORT, 'read-only'); END")
        raw.commit()
    async with bot.session.get(f"{bot.url}/readyz") as response:
        assert response.status == 503
        assert (await response.json())["database"] == "unreachable"


async def test_readiness_fails_when_the_sqlite_file_is_deleted(start_bot: BotFactory) -> None:
    bot = await start_bot()
    database: Path = bot.settings.data_dir / "wardline.db"
    for path in database.parent.glob("wardline.db*"):
        path.unlink()
    async with bot.session.get(f"{bot.url}/readyz") as response:
        assert response.status == 503


def test_other_exceptions_keep_their_message_and_chain() -> None:
    from bot.logs import format_exception

    try:
        try:
            raise sqlite3.OperationalError(f"no such table: {MARKER}")
        except sqlite3.OperationalError as inner:
            raise RuntimeError("store unavailable") from inner
    except RuntimeError as outer:
        text = format_exception((type(outer), outer, outer.__traceback__))
    assert "builtins.RuntimeError: store unavailable" in text
    assert "direct cause" in text and "sqlite3.OperationalError: (message withheld" in text
    assert MARKER not in text
