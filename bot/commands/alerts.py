"""`wardline alerts audit` (what happened to which alarm) and `wardline alerts simulate` (a drill alarm over MLLP)."""

from __future__ import annotations

import argparse
import asyncio
import json
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from bot.ingress.mllp import END_BLOCK, frame
from bot.settings import Settings
from bot.storage import SqlStore
from skills.alerts.desk import audit_events
from skills.alerts.hl7 import build_oru_r40

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def duration(text: str) -> timedelta:
    """ "90s", "15m", "2h", "7d" as a timedelta (argparse type)."""
    match = _DURATION.match(text.strip().lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"expected a duration such as 15m, 2h or 7d, got {text!r}")
    return timedelta(**{_UNITS[match.group(2)]: int(match.group(1))})


def register(commands: Any) -> None:
    alerts = commands.add_parser("alerts", help="device alerts: audit trail and drills")
    sub = alerts.add_subparsers(dest="alerts_command", required=True)
    audit = sub.add_parser("audit", help="every step of every alarm (received, ACK, posted, accepted, ...)")
    audit.add_argument("--since", type=duration, default=timedelta(hours=2), help="how far back (default 2h)")
    audit.add_argument("--unit", help="only this unit, e.g. 7W")
    audit.add_argument("--json", action="store_true", help="print a JSON array")
    audit.set_defaults(func=_audit)
    simulate = sub.add_parser("simulate", help="send a realistic test alarm over MLLP (demo or drill)")
    simulate.add_argument("--unit", required=True, help="unit, e.g. 7W")
    simulate.add_argument("--priority", choices=("PH", "PM", "PL"), default="PH")
    simulate.add_argument("--room", default="701")
    simulate.add_argument("--bed", default="A")
    simulate.add_argument("--event", default="MDC_EVT_ECG_V_TACHY", help="MDC event code")
    simulate.add_argument("--end-after", type=float, default=None, help="send the end phase after this many seconds")
    simulate.add_argument("--host", help="MLLP host (default WARDLINE_MLLP_HOST)")
    simulate.add_argument("--port", type=int, help="MLLP port (default WARDLINE_MLLP_PORT)")
    simulate.set_defaults(func=_simulate)


def _audit(args: argparse.Namespace, settings: Settings) -> int:
    async def run() -> list[dict[str, Any]]:
        store = SqlStore.from_url(settings.database)
        await store.open()
        try:
            return await audit_events(store, since=datetime.now(UTC) - args.since, unit=args.unit)
        finally:
            await store.close()

    events = asyncio.run(run())
    if args.json:
        print(json.dumps(events, ensure_ascii=False, indent=1))
        return 0
    zone = ZoneInfo(settings.timezone)
    for event in events:
        at = datetime.fromisoformat(event["at"]).astimezone(zone).strftime("%Y-%m-%d %H:%M:%S %Z")
        extra = " ".join(
            f"{k}={v}" for k, v in event.items() if k not in ("seq", "at", "step", "unit", "alert", "actor")
        )
        where = f"{event.get('unit', ''):<8} {event.get('alert', '')}"
        print(f"{at}  {event['step']:<14} {where}  by {event['actor']}  {extra}".rstrip())
    if not events:
        print("no alert activity in that period")
    return 0


async def _send(host: str, port: int, message: str) -> str:
    reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port), 5)
    try:
        writer.write(frame(message.encode("utf-8")))
        await writer.drain()
        ack = await asyncio.wait_for(reader.readuntil(END_BLOCK), 5)
    finally:
        writer.close()
    return ack[1:-2].decode("utf-8", "replace")


def _simulate(args: argparse.Namespace, settings: Settings) -> int:
    host = args.host or settings.mllp_host
    port = args.port or settings.mllp_port
    alert_id = f"DRILL-{uuid.uuid4().hex[:8]}"

    def message(phase: str, state: str) -> str:
        return build_oru_r40(
            source="WARDLINE_DRILL",
            message_id=uuid.uuid4().hex[:20],
            alert_id=alert_id,
            unit=args.unit,
            room=args.room,
            bed=args.bed,
            event_code=args.event,
            event_text="Drill alarm",
            priority=args.priority,
            phase=phase,
            state=state,
            occurred_at=datetime.now(UTC),
            value="160 bpm",
        )

    async def run() -> int:
        phases = [("start", "active")] + ([("end", "inactive")] if args.end_after is not None else [])
        for n, (phase, state) in enumerate(phases):
            if n:
                await asyncio.sleep(args.end_after)
            ack = await _send(host, port, message(phase, state))
            code = ack.split("MSA|")[1][:2] if "MSA|" in ack else "??"
            print(f"{phase}: {code} ({alert_id})")
            if code != "CA":
                print(ack.replace("\r", "\n"))
                return 1
        return 0

    try:
        return asyncio.run(run())
    except (OSError, TimeoutError) as error:
        print(f"wardline: no MLLP listener answered at {host}:{port} ({error.__class__.__name__})")
        return 1
