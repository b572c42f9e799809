"""POST /api/alerts: device alerts as signed JSON, for gateways that speak HTTP rather than MLLP.

Signature: hex HMAC-SHA256, keyed with one of the configured secrets, over ``<timestamp>.<raw body>``, where the
timestamp (Unix seconds) is sent in ``X-Wardline-Timestamp`` and the signature in
``X-Wardline-Signature: sha256=<hex>``. Requests older or newer than five minutes are refused (replay).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from collections.abc import Sequence

from aiohttp import web

from skills.core.skill import ConsumerFunc

log = logging.getLogger(__name__)

TIMESTAMP_HEADER = "X-Wardline-Timestamp"
SIGNATURE_HEADER = "X-Wardline-Signature"
MAX_SKEW_S = 300


def sign(secret: str, timestamp: str, body: bytes) -> str:
    """The signature header value a sender computes (also used by tests and `wardline alerts simulate`)."""
    digest = hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()
    return f"sha256={digest}"


def _problem(status: int, error: str, field: str = "") -> web.Response:
    body = {"error": error, **({"field": field} if field else {})}
    return web.json_response(body, status=status)


class AlertWebhook:
    """The /api/alerts handler: 404 when no secret is set, 413 oversize, 401 bad signature, 400 bad body."""

    def __init__(self, consumer: ConsumerFunc | None, secrets: Sequence[str], *, max_bytes: int) -> None:
        self.consumer = consumer
        self.secrets = [s for s in secrets if s]
        self.max_bytes = max_bytes

    async def handle(self, request: web.Request) -> web.Response:
        if not self.secrets or self.consumer is None:
            raise web.HTTPNotFound()
        if request.content_length is not None and request.content_length > self.max_bytes:
            return _problem(413, f"the body is over {self.max_bytes} bytes")
        received = bytearray()  # chunked bodies carry no length: count while reading, stop past the limit
        async for chunk in request.content.iter_chunked(16 * 1024):
            received += chunk
            if len(received) > self.max_bytes:
                return _problem(413, f"the body is over {self.max_bytes} bytes")
        body = bytes(received)
        if not self._signed(request, body):
            log.warning("alert webhook: unsigned, forged or stale request refused")
            return _problem(401, "missing, invalid or stale signature")
        try:
            parsed = json.loads(body)
        except (ValueError, UnicodeDecodeError):
            return _problem(400, "the body is not valid JSON", "$")
        try:
            outcome = await self.consumer(parsed)
        except Exception:
            log.exception("alert webhook consumer failed")
            return _problem(503, "the alert could not be stored; send it again")
        if not outcome.accepted:
            if outcome.error == "internal":
                return _problem(503, outcome.reason)
            reason = f"{outcome.field}: {outcome.reason}" if outcome.field else outcome.reason
            return _problem(400, reason, outcome.field)
        response = web.json_response({"status": "accepted"}, status=202)
        if outcome.after_reply is not None:
            await outcome.after_reply()  # queues an audit step; the HTTP answer is already decided
        return response

    def _signed(self, request: web.Request, body: bytes) -> bool:
        timestamp = request.headers.get(TIMESTAMP_HEADER, "")
        signature = request.headers.get(SIGNATURE_HEADER, "")
        if not timestamp.isdigit() or not signature.startswith("sha256="):
            return False
        if abs(time.time() - int(timestamp)) > MAX_SKEW_S:
            return False
        return any(hmac.compare_digest(sign(secret, timestamp, body), signature) for secret in self.secrets)
