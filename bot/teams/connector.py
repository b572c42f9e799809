"""Our own Bot Connector client: non-blocking aiohttp calls to `{serviceUrl}/v3/conversations/...` with a timeout.

botbuilder's client is msrest on blocking `requests` (100 s timeout) run on the default thread pool, so one hanging
connector stalls every conversation. This client never blocks the event loop, gives every request a short total
timeout, fetches the bot's token on a small dedicated pool and caches it until shortly before it expires. The outbox
reuses it for proactive sends.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any
from urllib.parse import quote, urlsplit

import aiohttp
import jwt
from yarl import URL

from bot.retry import retry_after_seconds

log = logging.getLogger(__name__)

TokenSource = Callable[[], Awaitable[str | None]]
_TRANSIENT = frozenset({408, 412, 429, 500, 502, 503, 504})
_TOKEN_MARGIN_S = 300.0  # refresh this long before the token says it expires
_OPAQUE_TOKEN_TTL_S = 300.0  # tokens we cannot read an expiry from are re-fetched this often


class ConnectorError(Exception):
    """The Bot Connector refused a call: `status` is its HTTP status, 0 when no answer came (timeout, network)."""

    def __init__(self, status: int, retry_after: float | None = None, detail: str = "") -> None:
        super().__init__(f"bot connector: {status or 'no answer'}{f' ({detail})' if detail else ''}")
        self.status = status
        self.retry_after = retry_after
        self.detail = detail

    @property
    def transient(self) -> bool:
        """Worth retrying: throttling, a gateway or server error, a timeout or a dropped connection."""
        return self.status == 0 or self.status in _TRANSIENT


class ServiceUrlRefused(ConnectorError):
    """The serviceUrl is not one this bot may post to (anonymous mode posts to loopback only)."""

    def __init__(self, detail: str) -> None:
        super().__init__(403, None, detail)

    @property
    def transient(self) -> bool:
        return False


def is_loopback_host(host: str) -> bool:
    """True for localhost and addresses in 127.0.0.0/8 or ::1 (not for 0.0.0.0 or an empty host: those are all)."""
    host = host.strip().strip("[]").lower()
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def is_loopback_url(url: str) -> bool:
    """True for http(s) URLs on 127.0.0.0/8, ::1 or localhost."""
    try:
        parts = urlsplit(url)
        host = parts.hostname or ""
    except ValueError:
        return False
    return parts.scheme in ("http", "https") and is_loopback_host(host)


def _segment(value: str) -> str:
    """One URL path segment: Teams ids contain ':', ';', '@' and '=' and must be escaped whole."""
    return quote(value, safe="")


class BotTokenSource:
    """The bot's outbound access token from a botbuilder credentials factory, off the event loop and cached."""

    def __init__(
        self,
        credentials_factory: Any,
        *,
        app_id: str,
        oauth_scope: str,
        login_endpoint: str,
        validate_authority: bool = True,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.credentials_factory = credentials_factory
        self.app_id = app_id
        self.oauth_scope = oauth_scope
        self.login_endpoint = login_endpoint
        self.validate_authority = validate_authority
        # msal blocks on the network; its own small pool keeps it away from the default pool and from token checks.
        self._executor = executor or ThreadPoolExecutor(max_workers=2, thread_name_prefix="wardline-token")
        self._lock = asyncio.Lock()
        self._token: str | None = None
        self._expires = 0.0
        self._force = False

    async def __call__(self) -> str | None:
        if not self.app_id:
            return None  # anonymous local mode: no token
        if self._token is not None and time.monotonic() < self._expires:
            return self._token
        async with self._lock:  # single flight: the others wait for one fetch and reuse it
            if self._token is not None and time.monotonic() < self._expires:
                return self._token
            credentials = await self.credentials_factory.create_credentials(
                self.app_id, self.oauth_scope, self.login_endpoint, self.validate_authority
            )
            force, self._force = self._force, False
            loop = asyncio.get_running_loop()
            token = await loop.run_in_executor(self._executor, credentials.get_access_token, force)
            if not isinstance(token, str) or not token:
                raise ConnectorError(401, detail="no bot token")
            self._token = token
            self._expires = time.monotonic() + _lifetime(token)
            return token

    def invalidate(self) -> None:
        """The connector refused the token: fetch a fresh one next time."""
        self._token = None
        self._force = True

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def _lifetime(token: str) -> float:
    """Seconds to keep a token: until shortly before its `exp` when it is a readable JWT."""
    try:
        claims = jwt.decode(token, options={"verify_signature": False})
    except jwt.PyJWTError:
        return _OPAQUE_TOKEN_TTL_S
    expires = claims.get("exp")
    if not isinstance(expires, int | float):
        return _OPAQUE_TOKEN_TTL_S
    return max(0.0, float(expires) - time.time() - _TOKEN_MARGIN_S)


class BotConnectorClient:
    """POST/PUT/DELETE on the Bot Connector's /v3/conversations API; every call has a timeout and typed errors."""

    def __init__(
        self,
        *,
        timeout_s: float,
        token: TokenSource | None = None,
        loopback_only: bool = False,
        session: aiohttp.ClientSession | None = None,
    ) -> None:
        self.timeout_s = timeout_s
        self.token = token
        self.loopback_only = loopback_only
        self._session = session
        self._own_session = session is None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            # Created lazily inside the running loop; no cookies, proxies from the environment ignored.
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=100, ttl_dns_cache=300),
                cookie_jar=aiohttp.DummyCookieJar(),
                trust_env=False,
            )
            self._own_session = True
        return self._session

    async def close(self) -> None:
        if self._own_session and self._session is not None and not self._session.closed:
            await self._session.close()
        if isinstance(self.token, BotTokenSource):
            self.token.close()

    async def send_to_conversation(self, service_url: str, conversation_id: str, activity: Mapping[str, Any]) -> str:
        """POST an activity to a conversation; returns the new activity's id ('' when the connector gave none)."""
        path = f"v3/conversations/{_segment(conversation_id)}/activities"
        return _id_of(await self._call("POST", service_url, path, activity))

    async def reply_to_activity(
        self,
        service_url: str,
        conversation_id: str,
        reply_to_id: str,
        activity: Mapping[str, Any],
    ) -> str:
        """POST an activity as a reply to another; returns the new activity's id."""
        path = f"v3/conversations/{_segment(conversation_id)}/activities/{_segment(reply_to_id)}"
        return _id_of(await self._call("POST", service_url, path, activity))

    async def update_activity(
        self,
        service_url: str,
        conversation_id: str,
        activity_id: str,
        activity: Mapping[str, Any],
    ) -> str:
        """PUT a replacement for a sent activity; returns its id."""
        path = f"v3/conversations/{_segment(conversation_id)}/activities/{_segment(activity_id)}"
        return _id_of(await self._call("PUT", service_url, path, activity)) or activity_id

    async def delete_activity(self, service_url: str, conversation_id: str, activity_id: str) -> None:
        """DELETE a sent activity."""
        path = f"v3/conversations/{_segment(conversation_id)}/activities/{_segment(activity_id)}"
        await self._call("DELETE", service_url, path, None)

    async def create_conversation(self, service_url: str, parameters: Mapping[str, Any]) -> dict[str, Any]:
        """POST /v3/conversations (a 1:1 chat, or a new thread in a channel); returns id, activityId, serviceUrl."""
        body = await self._call("POST", service_url, "v3/conversations", parameters)
        if not isinstance(body, dict) or not isinstance(body.get("id"), str):
            raise ConnectorError(502, detail="create_conversation answered without an id")
        return body

    async def _call(self, method: str, service_url: str, path: str, body: Mapping[str, Any] | None) -> Any:
        if self.loopback_only and not is_loopback_url(service_url):
            raise ServiceUrlRefused("anonymous mode posts only to a loopback serviceUrl")
        if not service_url.startswith(("https://", "http://")):
            raise ServiceUrlRefused("serviceUrl is not an http(s) URL")
        try:  # ids are escaped whole, like msrest does; `encoded=True` stops yarl from un-escaping ':' '@' ';'
            url = URL(str(URL(service_url.rstrip("/"))) + "/" + path, encoded=True)
        except ValueError as exc:
            raise ServiceUrlRefused("serviceUrl is not a valid URL") from exc
        deadline = time.monotonic() + self.timeout_s
        for attempt in (1, 2):  # a second attempt only after the connector refused a cached token
            headers = {"Content-Type": "application/json; charset=utf-8"}
            try:
                token = await self._bearer(deadline)
                if token:
                    headers["Authorization"] = f"Bearer {token}"
                async with self._client().request(
                    method,
                    url,
                    json=dict(body) if body is not None else None,
                    headers=headers,
                    timeout=aiohttp.ClientTimeout(total=max(0.1, deadline - time.monotonic())),
                    allow_redirects=False,
                ) as response:
                    status = response.status
                    if status == 401 and attempt == 1 and isinstance(self.token, BotTokenSource):
                        self.token.invalidate()
                        continue
                    if status >= 300:
                        asked = retry_after_seconds(response.headers)
                        log.warning(
                            "bot connector refused a call",
                            extra={"method": method, "status": status, "retry_after": asked},
                        )
                        raise ConnectorError(status, asked)
                    if response.content_length == 0:
                        return {}
                    try:
                        return await response.json(content_type=None)
                    except (ValueError, aiohttp.ContentTypeError):
                        return {}
            except (TimeoutError, aiohttp.ClientError) as exc:
                log.warning("bot connector did not answer", extra={"method": method, "error": type(exc).__name__})
                raise ConnectorError(0, None, type(exc).__name__) from exc
        raise ConnectorError(401, detail="token refused twice")

    async def _bearer(self, deadline: float) -> str | None:
        if self.token is None:
            return None
        try:
            return await asyncio.wait_for(self.token(), max(0.1, deadline - time.monotonic()))
        except (ConnectorError, TimeoutError):
            raise
        except Exception as exc:  # msal raises PermissionError and others for a refused secret or an unknown tenant
            log.error("bot token unavailable", extra={"error": type(exc).__name__})
            raise ConnectorError(401, detail="bot token unavailable") from exc


def _id_of(body: Any) -> str:
    return str(body.get("id") or "") if isinstance(body, dict) else ""
