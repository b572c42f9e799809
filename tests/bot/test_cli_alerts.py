"""`wardline alerts audit` and `wardline alerts simulate`, run as the CLI runs them."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from bot.cli import main
from bot.ingress.mllp import MllpServer
from bot.storage import SqlStore
from skills.alerts.desk import AUDIT
from skills.alerts.hl7 import parse_oru_r40
from skills.core.skill import Outcome


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no developer .env; var/ lands in the temp folder
    monkeypatch.setenv("WARDLINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.setenv("WARDLINE_TIMEZONE", "Asia/Seoul")
    return tmp_path


def write_audit(tmp_path: Path) -> None:
    async def run() -> None:
        store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'var' / 'wardline.db'}")
        await store.open()
        now = datetime.now(UTC)
        for at, step, unit in [
            (now - timedelta(hours=3), "posted", "7W"),
            (now - timedelta(minutes=5), "posted", "7W"),
            (now - timedelta(minutes=4), "accepted", "7W"),
            (now - timedelta(minutes=3), "posted", "5E"),
        ]:
            await store.append(
                AUDIT, {"at": at.isoformat(), "actor": "aad-nurse", "step": step, "unit": unit, "alert": "GW|A"}
            )
        await store.close()  # fmt: skip

    asyncio.run(run())


def test_audit_filters_by_time_and_unit(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write_audit(tmp_path)
    assert main(["alerts", "audit", "--since", "2h", "--unit", "7W", "--json"]) == 0
    events = json.loads(capsys.readouterr().out)
    assert [e["step"] for e in events] == ["posted", "accepted"]
    assert main(["alerts", "audit", "--since", "1d"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert len(lines) == 4 and "KST" in lines[0] and "by aad-nurse" in lines[0]


def test_audit_rejects_a_bad_duration(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "audit", "--since", "two hours"]) == 2  # a usage error: one line, exit 2
    assert "expected a duration" in capsys.readouterr().err


@pytest.fixture
def listener() -> Iterator[tuple[int, list[str]]]:
    received: list[str] = []
    loop = asyncio.new_event_loop()

    async def consumer(text: str) -> Outcome:
        received.append(text)
        return Outcome.ok()

    server = MllpServer(consumer, host="127.0.0.1", port=0, max_bytes=65536, idle_timeout_s=5)
    loop.run_until_complete(server.start())
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield server.port, received
    asyncio.run_coroutine_threadsafe(server.stop(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)
    loop.close()


def test_simulate_sends_a_realistic_alarm_over_mllp(
    listener: tuple[int, list[str]], capsys: pytest.CaptureFixture[str]
) -> None:
    port, received = listener
    assert (
        main(["alerts", "simulate", "--unit", "7W", "--priority", "PH", "--port", str(port), "--end-after", "0"]) == 0
    )
    out = capsys.readouterr().out
    assert out.startswith("start: CA (DRILL-") and "end: CA" in out
    start, end = (parse_oru_r40(text, default_zone=UTC) for text in received)
    assert (start.unit, start.priority, start.phase, end.phase) == ("7W", "PH", "start", "end")
    assert start.alert_id == end.alert_id


def test_simulate_without_a_listener_says_so(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["alerts", "simulate", "--unit", "7W", "--port", "1"]) == 1
    assert "no MLLP listener answered" in capsys.readouterr().out
