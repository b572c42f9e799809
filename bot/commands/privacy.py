"""`wardline privacy purge --before DATE`: delete stored questions, answers, histories and feedback before a date."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime
from typing import Any

from sqlalchemy.exc import SQLAlchemyError

from bot.settings import Settings
from bot.storage import SqlStore
from skills.protocols.assistant import FEEDBACK_STREAM, purge_answers


def register(commands: Any) -> None:
    """Add `wardline privacy ...` to the command line."""
    privacy = commands.add_parser("privacy", help="privacy housekeeping of stored conversations")
    actions = privacy.add_subparsers(dest="privacy_command", required=True)
    purge = actions.add_parser(
        "purge",
        help="delete answers, chat histories and feedback stored before a date (the nightly job keeps "
        "WARDLINE_RETENTION_DAYS)",
    )
    purge.add_argument(
        "--before",
        required=True,
        type=_moment,
        help="YYYY-MM-DD (midnight in WARDLINE_TIMEZONE) or an ISO date-time with offset",
    )
    purge.set_defaults(func=_purge)


def _moment(value: str) -> datetime:
    """The cut-off as given; naive values are placed in the configured timezone once settings are loaded."""
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a date: {value!r} (use YYYY-MM-DD)") from None
    return moment


def _purge(args: argparse.Namespace, settings: Settings) -> int:
    before: datetime = args.before
    if before.tzinfo is None:
        before = before.replace(tzinfo=settings.tz)  # a plain date is midnight on the ward's clock
    answers, feedback = asyncio.run(_purge_async(settings, before))
    print(
        f"purged {answers} answers and chat histories and {feedback} feedback votes stored before {before.isoformat()}"
    )
    return 0


async def _purge_async(settings: Settings, before: datetime) -> tuple[int, int]:
    store = SqlStore.from_url(settings.database, timeout_s=settings.database_timeout_s)
    try:
        await store.open()
        answers = await purge_answers(store, before)
        feedback = await store.delete_events_before(FEEDBACK_STREAM, before)
    except (OSError, SQLAlchemyError) as exc:  # a database that cannot be reached: one line, no traceback
        print(f"wardline: cannot reach the database ({type(exc).__name__})", file=sys.stderr)
        raise SystemExit(1) from None
    finally:
        await store.close()
    return answers, feedback
