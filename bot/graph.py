"""Entra group membership through Microsoft Graph (`checkMemberGroups`), with an app-only token from msal.

Answers are cached per user. When Graph fails (network, 5xx, 429, a token error) the user keeps the memberships
already known (a stale cache entry), and nobody is granted a group Graph has not confirmed.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import aiohttp
import msal

log = logging.getLogger(__name__)

GRAPH_URL = "https://graph.microsoft.com"
_CHUNK = 20  # checkMemberGroups takes at most 20 group ids per call


class GraphError(Exception):
    """Graph did not answer usably; the caller keeps what it knew."""


class GraphToken:
    """App-only (client credentials) tokens for Graph from msal, off the event loop, one refresh at a time."""

    def __init__(
        self,
        client_id: str,
        client_secret: str,
        authority: str,
        *,
        scope: str = f"{GRAPH_URL}/.default",
        http_client: Any = None,
        instance_discovery: bool | None = None,
    ) -> None:
        options: dict[str, Any] = {"timeout": 10}
        if http_client is not None:
            options["http_client"] = http_client
        if instance_discovery is not None:
            options["instance_discovery"] = instance_discovery
        self._client = (client_id, client_secret, authority, options)
        self._app: Any = None  # built on first use, on a worker thread: msal may fetch authority metadata
        self.scope = scope
        self._lock = asyncio.Lock()

    def _acquire(self) -> dict[str, Any]:
        if self._app is None:
            client_id, secret, authority, options = self._client
            self._app = msal.ConfidentialClientApplication(
                client_id, client_credential=secret, authority=authority, **options
            )
        result: dict[str, Any] = self._app.acquire_token_for_client([self.scope])
        return result

    async def __call__(self) -> str:
        async with self._lock:  # single flight: msal's cache serves the waiters once one refresh lands
            try:
                result = await asyncio.to_thread(self._acquire)
            except Exception as exc:  # msal raises requests/ValueError on network and discovery failures
                raise GraphError(f"token request failed ({type(exc).__name__})") from None
        token = result.get("access_token")
        if not isinstance(token, str):
            raise GraphError(f"token request refused ({result.get('error', 'unknown error')})")
        return token


@dataclass(slots=True)
class _Known:
    checked: frozenset[str]  # the group ids asked about
    member_of: frozenset[str]
    at: float


class GraphGroups:
    """Which of the directory's groups a user is in; cached per user, failing closed for new grants."""

    def __init__(
        self,
        token: Callable[[], Any],
        *,
        base_url: str = GRAPH_URL,
        cache_s: float = 900.0,
        timeout_s: float = 5.0,
        pause_s: float = 30.0,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self.token = token
        self.base_url = base_url.rstrip("/")
        self.cache_s = cache_s
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.monotonic = monotonic
        self.pause_s = pause_s
        self.calls = 0
        self._known: dict[str, _Known] = {}
        self._session: aiohttp.ClientSession | None = None
        self._inflight: dict[str, asyncio.Future[frozenset[str]]] = {}
        self._blocked_until = 0.0  # after a failure: no calls (and no waits for a timeout) until this time
        self._failing = False

    async def member_of(self, aad_object_id: str, group_ids: Sequence[str]) -> frozenset[str]:
        wanted = frozenset(group_ids)
        if not wanted:
            return frozenset()
        known = self._known.get(aad_object_id)
        now = self.monotonic()
        if known is not None and wanted <= known.checked and now - known.at < self.cache_s:
            return known.member_of & wanted
        if now < self._blocked_until:
            return self._fallback(known, wanted)
        running = self._inflight.get(aad_object_id)
        if running is not None:  # one Graph call per user at a time; the others share its answer
            return await asyncio.shield(running) & wanted
        future: asyncio.Future[frozenset[str]] = asyncio.get_running_loop().create_future()
        self._inflight[aad_object_id] = future
        try:
            joined = await self._check(aad_object_id, sorted(wanted))
        except BaseException as exc:
            if not isinstance(exc, GraphError):
                del self._inflight[aad_object_id]
                future.cancel()  # cancelled mid-call: waiters ask again
                raise
            if not self._failing:  # once when it fails, once when it is back
                log.error("Graph group lookup failed; keeping known roles", extra={"error": str(exc)})
                self._failing = True
            # A down Graph would otherwise cost every message a full timeout: pause calls briefly (429: Retry-After).
            self._blocked_until = max(self._blocked_until, self.monotonic() + self.pause_s)
            result = self._fallback(known, wanted)
        else:
            if self._failing:
                log.warning("Graph group lookup works again")
                self._failing = False
            self._known[aad_object_id] = _Known(wanted, joined, self.monotonic())
            result = joined
        del self._inflight[aad_object_id]
        future.set_result(result)
        return result

    @staticmethod
    def _fallback(known: _Known | None, wanted: frozenset[str]) -> frozenset[str]:
        """What Graph confirmed before, however old; never a group it has not confirmed."""
        return known.member_of & wanted if known is not None else frozenset()

    async def _check(self, aad_object_id: str, group_ids: list[str]) -> frozenset[str]:
        token = await self.token()
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(timeout=self.timeout)
        url = f"{self.base_url}/v1.0/users/{quote(aad_object_id, safe='')}/checkMemberGroups"
        joined: set[str] = set()
        for start in range(0, len(group_ids), _CHUNK):
            body = {"groupIds": group_ids[start : start + _CHUNK]}
            self.calls += 1
            try:
                async with self._session.post(url, json=body, headers={"Authorization": f"Bearer {token}"}) as reply:
                    if reply.status == 404:
                        return frozenset()  # no such user in the tenant: a member of nothing
                    if reply.status == 429:
                        self._blocked_until = self.monotonic() + _retry_after(reply.headers.get("Retry-After"))
                    if reply.status != 200:
                        raise GraphError(f"checkMemberGroups answered {reply.status}")
                    data = await reply.json(content_type=None)
            except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
                raise GraphError(f"checkMemberGroups failed ({type(exc).__name__})") from None
            values = data.get("value") if isinstance(data, dict) else None
            if not isinstance(values, list):
                raise GraphError("checkMemberGroups answered without a value list")
            joined |= {str(v).lower() for v in values}
        return frozenset(joined) & frozenset(group_ids)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()


def _retry_after(value: str | None) -> float:
    try:
        return min(max(float(value or 30), 1.0), 600.0)
    except ValueError:
        return 30.0
