"""MLLP benchmark: ACK latency and frame-to-post latency of a running Wardline, beside a bare asyncio echo.

    python tests/bench/mllp_bench.py [--seconds 10] [--rates 20,100] [--database-url postgresql+asyncpg://...]

A sender on loopback sends high-priority alarms (hold-off 0) at a fixed rate over one MLLP connection into a real
Wardline process (tests/bot/ingress/alert_server.py: the app with a durable SQLite stand-in for the outbox). Each
alarm is ACKed only after it is stored. Measured: ACK latency (send -> ACK read) p50/p99, and frame-to-post latency
(send -> the outbox row's commit time) p50/p99. The floor is the same sender against a bare asyncio MLLP echo in
another process, in the same run. Afterwards every ACKed alarm must be in the store and posted exactly once.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.ingress.mllp import END_BLOCK, frame  # noqa: E402
from bot.storage import SqlStore  # noqa: E402
from skills.alerts.desk import INBOX  # noqa: E402
from skills.alerts.hl7 import build_oru_r40  # noqa: E402
from tests.bot.ingress.alert_server import OUTBOX  # noqa: E402

ECHO = """
import asyncio, sys
ACK = b"\\x0bMSH|^~\\\\&|ECHO|||||||ACK^R40^ACK|1|P|2.6\\rMSA|CA|1\\r\\x1c\\r"
async def serve(reader, writer):
    buffer = b""
    while data := await reader.read(65536):
        buffer += data
        while b"\\x1c\\r" in buffer:
            _, buffer = buffer.split(b"\\x1c\\r", 1)
            writer.write(ACK)
        await writer.drain()
async def main():
    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    print("MLLP", server.sockets[0].getsockname()[1], flush=True)
    await server.serve_forever()
asyncio.run(main())
"""


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def start(command: list[str]) -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(command, cwd=ROOT, stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None
    line = process.stdout.readline()
    if not line.startswith("MLLP "):
        raise RuntimeError(f"server did not start: {line!r}")
    return process, int(line.split()[1])


def stop(process: subprocess.Popen[str]) -> None:
    process.send_signal(signal.SIGTERM)
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
    if process.stdout is not None:
        process.stdout.close()


async def send_at_rate(port: int, rate: float, seconds: float, tag: str) -> tuple[dict[str, float], dict[str, float]]:
    """Open-loop sender: message i leaves at t0 + i/rate; returns send and ACK wall times by message id."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    total = int(rate * seconds)
    sent: dict[str, float] = {}
    acked: dict[str, float] = {}
    order: list[str] = []

    async def read_acks() -> None:
        for index in range(total):
            ack = await asyncio.wait_for(reader.readuntil(END_BLOCK), 30)
            if b"MSA|CA|" in ack:
                acked[order[index]] = time.time()

    acks = asyncio.create_task(read_acks())
    t0 = time.perf_counter()
    for n in range(total):
        delay = t0 + n / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        message_id = f"{tag}-{n:06d}"
        message = build_oru_r40(
            source="BENCH_GW",
            message_id=message_id,
            alert_id=message_id,
            unit="7W",
            room=str(700 + n % 40),
            bed="A",
            event_code="MDC_EVT_ECG_V_TACHY",
            event_text="VTach",
            priority="PH",
            phase="start",
            state="active",
            occurred_at=datetime.now(UTC),
        )
        order.append(message_id)
        sent[message_id] = time.time()
        writer.write(frame(message.encode()))
        await writer.drain()
    await acks
    writer.close()
    await writer.wait_closed()
    return sent, acked


async def verify(
    data_dir: Path, database_url: str, sent: dict[str, float], acked: dict[str, float]
) -> dict[str, float]:
    store = SqlStore.from_url(database_url or f"sqlite+aiosqlite:///{data_dir / 'wardline.db'}")
    outbox = SqlStore.from_url(f"sqlite+aiosqlite:///{data_dir / 'outbox.db'}")
    await store.open()
    await outbox.open()
    try:
        for _ in range(600):  # the worker may still be applying the tail of the run
            inbox = {key.split("|", 1)[1]: entry for key, entry in await store.scan(INBOX, "BENCH_GW|")}
            if all(entry["done"] for entry in inbox.values()) and len(inbox) >= len(acked):
                break
            await asyncio.sleep(0.1)
        posts = {key.split("|", 1)[1].split("&")[0]: row for key, row in await outbox.scan(OUTBOX, "alerts:BENCH_GW|")}
    finally:
        await store.close()
        await outbox.close()
    lost = [m for m in acked if m not in inbox]
    unposted = [m for m in acked if m not in posts]
    to_post = [(posts[m]["at"] - sent[m]) * 1000 for m in sent if m in posts]
    return {"lost": len(lost), "unposted": len(unposted), "posted": len(posts), "to_post": to_post}  # type: ignore[dict-item]


def summary(name: str, sent: dict[str, float], acked: dict[str, float]) -> dict[str, float]:
    latencies = [(acked[m] - sent[m]) * 1000 for m in acked]
    return {
        "sent": len(sent),
        "acked": len(acked),
        "ack_p50_ms": round(percentile(latencies, 50), 2),
        "ack_p99_ms": round(percentile(latencies, 99), 2),
        "ack_max_ms": round(max(latencies, default=float("nan")), 2),
    }


async def run(seconds: float, rates: list[float], database_url: str) -> dict[str, object]:
    results: dict[str, object] = {"seconds": seconds, "database": database_url.split(":")[0] or "sqlite"}
    echo, echo_port = start([sys.executable, "-c", ECHO])
    try:
        for rate in rates:
            sent, acked = await send_at_rate(echo_port, rate, seconds, f"echo{rate:g}")
            results[f"echo@{rate:g}/s"] = summary("echo", sent, acked)
    finally:
        stop(echo)
    for rate in rates:
        with tempfile.TemporaryDirectory(prefix="wardline-bench-") as folder:
            data_dir = Path(folder)
            server, port = start([sys.executable, "-m", "tests.bot.ingress.alert_server", str(data_dir), database_url])
            try:
                sent, acked = await send_at_rate(port, rate, seconds, f"bot{rate:g}")
                check = await verify(data_dir, database_url, sent, acked)
            finally:
                stop(server)
            to_post: list[float] = check.pop("to_post")  # type: ignore[assignment]
            results[f"wardline@{rate:g}/s"] = {
                **summary("wardline", sent, acked),
                "post_p50_ms": round(percentile(to_post, 50), 2),
                "post_p99_ms": round(percentile(to_post, 99), 2),
                "post_mean_ms": round(statistics.fmean(to_post), 2) if to_post else None,
                **check,
            }
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0, help="length of each run (the issue asks 60)")
    parser.add_argument("--rates", default="20,100", help="alarms per second, comma-separated")
    parser.add_argument("--database-url", default="", help="empty: SQLite in a temp folder")
    args = parser.parse_args()
    rates = [float(r) for r in args.rates.split(",")]
    results = asyncio.run(run(args.seconds, rates, args.database_url))
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
