"""`wardline channels list` and `wardline channels link UNIT CONVERSATION_ID`."""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from typing import Any

from bot.settings import Settings


def register(commands: Any) -> None:
    """Add `channels` to the `wardline` sub-commands."""
    channels = commands.add_parser("channels", help="Teams conversations the bot knows, and unit links")
    actions = channels.add_subparsers(dest="channels_command", required=True)
    listing = actions.add_parser("list", help="captured conversations, linked units, broken links, unrouted posts")
    listing.add_argument("--json", action="store_true", help="print one JSON object")
    listing.set_defaults(func=_list)
    link = actions.add_parser("link", help="send a unit's posts to a conversation (audited)")
    link.add_argument("unit")
    link.add_argument("conversation_id")
    link.set_defaults(func=_link)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    from bot.logs import configure_logging

    configure_logging("WARNING", settings.log_format)
    report = asyncio.run(_report(settings))
    if args.json:
        print(json.dumps(report, ensure_ascii=False, indent=2))
        return 0
    print("Conversations:")
    for conversation in report["conversations"]:
        units = ", ".join(conversation["units"]) or "-"
        names = " / ".join(n for n in (conversation["team_name"], conversation["channel_name"]) if n) or "-"
        state = "BROKEN" if conversation["broken"] else "ok"
        print(f"  {conversation['kind']:<9} {state:<6} units: {units:<12} {names}  {conversation['id']}")
    if not report["conversations"]:
        print("  (none yet: install the app in a team or chat)")
    print(f"Fallback channel: {report['fallback'] or 'NONE (unrouted posts stay queued)'}")
    for unit, link in report["links"].items():
        flag = " (BROKEN)" if link["broken"] else ""
        print(f"  unit {unit} -> {link['conversation_id']}{flag}")
    outbox = report["outbox"]
    print(f"Outbox: {outbox['queued']} queued, {outbox['unrouted']} unrouted, {outbox['failed']} failed")
    for reason, count in report["unrouted_reasons"].items():
        print(f"  unrouted: {count} x {reason}")
    return 0


async def _report(settings: Settings) -> dict[str, Any]:
    from bot.services import build_services

    services = await build_services(settings)
    try:
        assert services.delivery is not None
        book, outbox = services.delivery.book, services.delivery.outbox
        links = await book.links()
        records = dict(await book.conversations())
        units_by_conversation: dict[str, list[str]] = {}
        for unit, link in links.items():
            units_by_conversation.setdefault(link["conversation_id"], []).append(unit)
        fallback = settings.fallback_channel or await book.first_channel()
        return {
            "conversations": [
                {
                    "id": conversation_id,
                    "kind": record.get("conversation_type") or "personal",
                    "team_name": record.get("team_name"),
                    "channel_name": record.get("channel_name"),
                    "units": sorted(units_by_conversation.get(conversation_id, [])),
                    "broken": bool(record.get("broken")),
                }
                for conversation_id, record in records.items()
                if ";messageid=" not in conversation_id  # reply threads: their channel is listed itself
            ],
            "links": {
                unit: {
                    "conversation_id": link["conversation_id"],
                    "broken": bool((records.get(link["conversation_id"]) or {}).get("broken")),
                }
                for unit, link in links.items()
            },
            "fallback": fallback,
            "outbox": await outbox.counts(),
            "unrouted_reasons": await outbox.waiting_reasons(),
        }
    finally:
        await services.close()


def _link(args: argparse.Namespace, settings: Settings) -> int:
    from bot.logs import configure_logging

    configure_logging("WARNING", settings.log_format)
    return asyncio.run(_link_async(args, settings))


async def _link_async(args: argparse.Namespace, settings: Settings) -> int:
    from bot.services import build_services

    services = await build_services(settings)
    try:
        assert services.delivery is not None
        book = services.delivery.book
        if await book.get(args.conversation_id) is None:
            print(
                f"wardline channels link: the bot has never seen conversation {args.conversation_id}; "
                "install the app there first (see `wardline channels list`)",
                file=sys.stderr,
            )
            return 2
        previous = await book.link(args.unit, args.conversation_id, by="cli")
    finally:
        await services.close()
    note = f" (was {previous})" if previous and previous != args.conversation_id else ""
    print(f"unit {args.unit} -> {args.conversation_id}{note}")
    return 0
