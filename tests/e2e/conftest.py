"""E2E fixtures (see playground.py) and a screenshot of the page when a test fails."""

from __future__ import annotations

from collections.abc import Generator

import pytest

from tests.e2e.playground import (  # noqa: F401 - fixtures are found by name
    bot_endpoint,
    chromium,
    e2e_artifacts,
    playground,
    playground_config,
    playground_page,
)


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, object]:
    report = yield
    if call.when == "call":
        item.e2e_call_report = report  # type: ignore[attr-defined]
    return report
