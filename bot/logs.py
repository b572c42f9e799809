"""Logging: JSON lines for collectors or plain text for people; fields come from `extra`, never message text."""

from __future__ import annotations

import json
import logging
import sys
import traceback
from contextvars import ContextVar, Token
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

_STANDARD = frozenset(vars(logging.makeLogRecord({})).keys()) | {"message", "asctime", "taskName"}

# Ids of the turn or job being handled (activity, conversation, job): every log line inside it carries them.
_context: ContextVar[dict[str, str]] = ContextVar("wardline_log_context", default={})  # noqa: B039 - never mutated


def bind(**ids: str | None) -> Token[dict[str, str]]:
    """Add ids to every log line of the current task; `unbind(token)` restores the previous set."""
    return _context.set({**_context.get(), **{k: v for k, v in ids.items() if v}})


def unbind(token: Token[dict[str, str]]) -> None:
    _context.reset(token)


class ContextFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        for key, value in _context.get().items():
            if not hasattr(record, key):
                setattr(record, key, value)
        return True


# Exceptions from these packages quote SQL parameters, key values or the text they failed on (e.g. asyncpg's
# "DETAIL: Key (...)=(...)"): their messages are replaced by the type and the error code.
_DATABASE_MODULES = ("sqlalchemy", "asyncpg", "sqlite3", "aiosqlite", "psycopg", "psycopg2")

ExcInfo = tuple[type[BaseException], BaseException, TracebackType | None] | tuple[None, None, None]


def _is_database_error(exc: BaseException) -> bool:
    return type(exc).__module__.split(".")[0] in _DATABASE_MODULES


def _withheld(exc: BaseException) -> str:
    """What may be said about a database error: its codes, never its text."""
    code = getattr(exc, "code", None)
    codes = [f"code={code}"] if isinstance(code, str) else []
    original = getattr(exc, "orig", None) or exc
    for attribute in ("sqlstate", "sqlite_errorname", "pgcode"):
        value = getattr(original, attribute, None)
        if isinstance(value, str | int) and value:
            codes.append(f"{attribute}={value}")
    if original is not exc:
        codes.append(f"driver={type(original).__module__}.{type(original).__qualname__}")
    return "(message withheld: database errors quote parameters) " + " ".join(codes)


_LINKS = {
    True: "\nThe above exception was the direct cause of the following exception:\n\n",
    False: "\nDuring handling of the above exception, another exception occurred:\n\n",
}


def format_exception(exc_info: ExcInfo) -> str:
    """A traceback like the standard one, with database exception messages replaced by type and code."""
    exc = exc_info[1]
    chain: list[BaseException] = []
    while exc is not None and all(exc is not seen for seen in chain):
        chain.append(exc)
        exc = exc.__cause__ or (None if exc.__suppress_context__ else exc.__context__)
    lines: list[str] = []
    for position, item in enumerate(reversed(chain)):
        if position:
            lines.append(_LINKS[item.__cause__ is not None])
        lines.append("Traceback (most recent call last):\n")
        lines.extend(traceback.format_tb(item.__traceback__))
        name = f"{type(item).__module__}.{type(item).__qualname__}"
        lines.append(f"{name}: {_withheld(item) if _is_database_error(item) else item}\n")
    return "".join(lines).rstrip("\n")


def _fields(record: logging.LogRecord) -> dict[str, Any]:
    return {k: v for k, v in vars(record).items() if k not in _STANDARD}


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            **_fields(record),
        }
        if record.exc_info:
            entry["exception"] = format_exception(record.exc_info)
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        extra = " ".join(f"{k}={v}" for k, v in _fields(record).items())
        line = f"{self.formatTime(record, '%H:%M:%S')} {record.levelname:<7} {record.name}: {record.getMessage()}"
        line = f"{line} {extra}" if extra else line
        if record.exc_info:
            line += "\n" + format_exception(record.exc_info)
        return line


def configure_logging(level: str = "INFO", fmt: str = "text") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    handler.addFilter(ContextFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    silence_payload_loggers()


# Libraries that log request bodies, SQL parameters or activities at DEBUG/INFO: with them, a DEBUG run would write
# questions, answers and patient details to the log. They never log below WARNING, whatever the root level is.
PAYLOAD_LOGGERS = (
    "aiosqlite",
    "sqlalchemy",
    "asyncpg",
    "openai",
    "httpx",
    "httpx2",
    "httpcore",
    "msal",
    "msrest",
    "botbuilder",
    "botframework",
    "aiohttp.access",
    "apscheduler",
    "sentence_transformers",
    "transformers",
)


def silence_payload_loggers() -> None:
    for name in PAYLOAD_LOGGERS:
        logging.getLogger(name).setLevel(logging.WARNING)
