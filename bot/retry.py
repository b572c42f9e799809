"""How long a service asked us to wait: one Retry-After reader for Azure OpenAI and the Bot Connector."""

from __future__ import annotations

import email.utils
import time
from collections.abc import Mapping
from typing import Any


def _header(headers: Mapping[str, Any], name: str) -> str | None:
    """Case-insensitive header lookup that works for plain dicts as well as httpx/aiohttp header maps."""
    value = headers.get(name)
    if value is None:
        wanted = name.lower()
        value = next((v for k, v in headers.items() if isinstance(k, str) and k.lower() == wanted), None)
    return str(value).strip() if value is not None else None


def retry_after_seconds(headers: Mapping[str, Any] | None, *, now: float | None = None) -> float | None:
    """Seconds asked for by `retry-after-ms` or `Retry-After` (seconds or an HTTP date); None when not said."""
    if headers is None:
        return None
    milliseconds = _header(headers, "retry-after-ms")
    if milliseconds:
        try:
            return max(0.0, float(milliseconds) / 1000)
        except ValueError:
            pass
    value = _header(headers, "retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))
