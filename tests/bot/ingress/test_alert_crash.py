"""SIGKILL in the middle of a burst of 500 alarms: after a restart every acknowledged alarm is stored and posted
exactly once, and nothing unacknowledged is half-applied."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

from bot.ingress.mllp import END_BLOCK, frame
from bot.storage import SqlStore
from skills.alerts.desk import ALERTS, INBOX
from skills.alerts.hl7 import build_oru_r40
from tests.bot.ingress.alert_server import OUTBOX, POST_CALLS

ROOT = Path(__file__).resolve().parents[3]
BURST = 500
KILL_AFTER = 200


def start_server(data_dir: Path) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, "-m", "tests.bot.ingress.alert_server", str(data_dir)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # blocks until the app serves (a few seconds at most)
    assert line.startswith("MLLP "), line
    return process, int(line.split()[1])


def burst_message(n: int) -> str:
    return build_oru_r40(
        source="GW-CRASH",
        message_id=f"B{n:04d}",
        alert_id=f"ALARM-{n:04d}",
        unit="7W",
        room=str(700 + n % 30),
        bed="A",
        event_code="MDC_EVT_ECG_V_TACHY",
        event_text="VTach",
        priority="PH",
        phase="start",
        state="active",
        occurred_at=datetime.now(UTC),
    )


async def send_burst(port: int, process: subprocess.Popen[str]) -> set[str]:
    """Send alarms in windows of 10, SIGKILL the server after KILL_AFTER ACKs; return the acknowledged ids."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    acked: set[str] = set()
    sent = 0
    try:
        while sent < BURST:
            window = [burst_message(n) for n in range(sent, min(sent + 10, BURST))]
            writer.write(b"".join(frame(m.encode()) for m in window))
            await writer.drain()
            sent += len(window)
            if len(acked) >= KILL_AFTER:
                os.kill(process.pid, signal.SIGKILL)  # mid-window: some of these are stored, some not
            for _ in window:
                ack = (await asyncio.wait_for(reader.readuntil(END_BLOCK), 10)).decode()
                if "MSA|CA|" in ack:
                    acked.add(ack.split("MSA|CA|")[1].split("\r")[0])
    except (ConnectionError, asyncio.IncompleteReadError):
        pass  # the server died
    finally:
        writer.close()
    return acked


async def test_sigkill_mid_burst_loses_and_doubles_nothing(tmp_path: Path) -> None:
    process, port = start_server(tmp_path)
    try:
        acked = await send_burst(port, process)
    finally:
        process.kill()
        process.wait(timeout=10)
        process.stdout.close()  # type: ignore[union-attr]
    assert KILL_AFTER <= len(acked) < BURST

    process, _ = start_server(tmp_path)  # the restart re-applies what was stored but not yet applied
    store = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'wardline.db'}")
    outbox = SqlStore.from_url(f"sqlite+aiosqlite:///{tmp_path / 'outbox.db'}")
    await store.open()
    await outbox.open()
    try:
        for _ in range(200):
            inbox = await store.scan(INBOX)
            if all(entry["done"] for _, entry in inbox):
                break
            await asyncio.sleep(0.05)
        stored = {key.split("|", 1)[1] for key, _ in inbox}
        assert acked <= stored, f"acknowledged but lost: {sorted(acked - stored)[:5]}"
        assert all(entry["done"] for _, entry in inbox)
        alerts = await store.scan(ALERTS)
        assert len(alerts) == len(stored)
        assert all(record["status"] == "posted" for _, record in alerts)
        posts = await outbox.scan(OUTBOX)
        assert sorted(key for key, _ in posts) == sorted(f"alerts:{key}" for key, _ in alerts)
        calls = Counter(e.get("key") for _, e in await outbox.read(POST_CALLS, limit=10_000) if e.get("key"))
        assert max(calls.values()) <= 2  # at most one retry of a post interrupted by the kill, never more
    finally:
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        process.stdout.close()  # type: ignore[union-attr]
        await store.close()
        await outbox.close()
