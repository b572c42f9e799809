"""`wardline handover report` and `wardline broadcasts report`: what was handed over and who acknowledged it."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from collections.abc import Awaitable, Callable
from datetime import date
from typing import Any

from bot.settings import Settings
from skills.core.ports import Store


def register(commands: Any) -> None:
    """Add `handover report` and `broadcasts report` to the `wardline` sub-commands."""
    handover = commands.add_parser("handover", help="shift handovers (I-PASS)")
    handover_commands = handover.add_subparsers(dest="handover_command", required=True)
    report = handover_commands.add_parser("report", help="what was handed over, by whom, and what was acknowledged")
    report.add_argument("--unit", required=True, help="unit id, e.g. 7W")
    report.add_argument("--date", required=True, type=date.fromisoformat, help="the shifts' local start date")
    report.add_argument("--shift", help="only this shift code, e.g. D, E or N")
    report.add_argument("--json", action="store_true", help="print one JSON array")
    report.set_defaults(func=_handover_report)

    broadcasts = commands.add_parser("broadcasts", help="manager broadcasts")
    broadcast_commands = broadcasts.add_subparsers(dest="broadcasts_command", required=True)
    breport = broadcast_commands.add_parser("report", help="where a broadcast went and who acknowledged it")
    breport.add_argument("id", help="broadcast id, e.g. B12")
    output = breport.add_mutually_exclusive_group()
    output.add_argument("--json", action="store_true", help="print one JSON object")
    output.add_argument("--csv", action="store_true", help="print one CSV row per unit")
    breport.set_defaults(func=_broadcasts_report)


async def _with_store(settings: Settings, work: Callable[[Store], Awaitable[int]]) -> int:
    from bot.storage import SqlStore

    store = SqlStore.from_url(settings.database)
    await store.open()
    try:
        return await work(store)
    finally:
        await store.close()


def _handover_report(args: argparse.Namespace, settings: Settings) -> int:
    from skills.handover.service import handover_report

    async def work(store: Store) -> int:
        shifts = await handover_report(store, args.unit, args.date, args.shift)
        if args.json:
            print(json.dumps(shifts, ensure_ascii=False, indent=2))
            return 0
        if not shifts:
            print(f"No handover recorded for {args.unit} on {args.date.isoformat()}.", file=sys.stderr)
            return 1
        for shift in shifts:
            late = " (late)" if shift["late"] else ""
            when = shift["posted_at"] or shift["missed_at"]
            print(f"{shift['unit']} {shift['shift']}: {shift['status']}{late} at {when}")
            if shift["unit_acknowledged_by"]:
                print(f"  whole unit taken over by {shift['unit_acknowledged_by']} at {shift['unit_acknowledged_at']}")
            for bed in shift["beds"]:
                if not bed["has_note"]:
                    print(f"  bed {bed['bed']}: no note")
                    continue
                ack = (
                    f"acknowledged by {bed['acknowledged_by']} at {bed['acknowledged_at']}"
                    if bed["acknowledged_by"]
                    else "not acknowledged"
                )
                print(
                    f"  bed {bed['bed']}: {bed['severity']}, {bed['open_actions']} open to-dos,"
                    f" v{bed['version']} by {bed['written_by']} at {bed['saved_at']}; {ack}"
                )
        return 0

    return asyncio.run(_with_store(settings, work))


def _broadcasts_report(args: argparse.Namespace, settings: Settings) -> int:
    from skills.broadcast.service import ITEMS, report_csv

    async def work(store: Store) -> int:
        from bot.clock import SystemClock
        from skills.broadcast import Broadcasts
        from skills.core.skill import Context

        try:
            report = await Broadcasts(Context(store=store, clock=SystemClock())).report(args.id)
        except LookupError:
            known = ", ".join(key for key, _ in (await store.scan(ITEMS))[-10:]) or "none"
            print(f"wardline: no broadcast {args.id} (recent: {known})", file=sys.stderr)
            return 1
        if args.json:
            print(json.dumps(report, ensure_ascii=False, indent=2))
        elif args.csv:
            sys.stdout.write(report_csv(report))
        else:
            acked = sum(1 for u in report["units"] if u["acknowledged"])
            when = report["sent_at"] or report["scheduled_for"]
            print(f"{report['id']} by {report['author']}, {report['status']} at {when}")
            if report["ack_requested"]:
                print(f"acknowledged by {acked} of {len(report['units'])} units; {report['reminders']} reminders")
            for unit in report["units"]:
                state = (
                    f"acknowledged by {unit['acknowledged_by']} at {unit['acknowledged_at']}"
                    if unit["acknowledged"]
                    else ("posted" if unit["posted"] else "not posted")
                )
                print(f"  {unit['unit']}: {state}")
        return 0

    return asyncio.run(_with_store(settings, work))
