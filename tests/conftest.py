"""Shared test set-up: no test may reach beyond loopback (a fake does the talking)."""

from __future__ import annotations

import ipaddress
import os
import socket
from collections.abc import Iterator
from typing import Any

import pytest

pytest_plugins = [
    "tests.fakes.azure_openai",  # the fake_azure_openai fixture
    "tests.postgres",  # postgres_server and postgres_url: a configured or throwaway PostgreSQL
]

_real_connect = socket.socket.connect
_real_connect_ex = socket.socket.connect_ex


def _is_local(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
        if host in ("localhost", ""):
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return True  # AF_UNIX paths


def _guarded_connect(self: socket.socket, address: Any) -> None:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
        raise OSError(f"test tried to reach {address!r}: only loopback is allowed in tests")
    _real_connect(self, address)


def _guarded_connect_ex(self: socket.socket, address: Any) -> int:
    if self.family in (socket.AF_INET, socket.AF_INET6) and not _is_local(address):
        raise OSError(f"test tried to reach {address!r}: only loopback is allowed in tests")
    return _real_connect_ex(self, address)


@pytest.fixture(autouse=True, scope="session")
def _loopback_only() -> Iterator[None]:
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _guarded_connect_ex  # type: ignore[method-assign]
    yield
    socket.socket.connect = _real_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _real_connect_ex  # type: ignore[method-assign]


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """`make test` sets WARDLINE_FAIL_ON_SKIP: there every test must run, so one skip fails the run."""
    if not os.environ.get("WARDLINE_FAIL_ON_SKIP"):
        return
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = len(reporter.stats.get("skipped", [])) if reporter is not None else 0
    if skipped and exitstatus == 0:
        print(f"\nWARDLINE_FAIL_ON_SKIP: {skipped} test(s) skipped; make test runs every test (install every extra)")
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
