"""A fake Bot Connector that can misbehave: scripted statuses with any Retry-After, and conversations that hang."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from aiohttp import web

from tests.fakes.teams import FakeConnector, Sent


@dataclass
class FaultyConnector(FakeConnector):
    """`faults` answers the next requests with (status, Retry-After), 200 passing through; `hang` ids never answer."""

    faults: list[tuple[int, str | None]] = field(default_factory=list)
    hang: set[str] = field(default_factory=set)
    hung: list[str] = field(default_factory=list)  # paths of requests that were left hanging
    _release: asyncio.Event = field(default_factory=asyncio.Event)

    def release(self) -> None:
        """Let every hanging request finish (tests call it before shutting the server down)."""
        self._release.set()

    async def _handle(self, request: web.Request) -> web.Response:
        if any(conversation in request.path for conversation in self.hang):
            self.hung.append(request.path)
            await self._release.wait()
            return web.json_response({"id": "too-late"})
        status, retry_after = self.faults.pop(0) if self.faults else (200, None)
        if status != 200:
            body = await request.json() if request.can_read_body else {}
            self.sent.append(Sent(request.method, request.path, body))
            headers = {"Retry-After": retry_after} if retry_after is not None else {}
            return web.json_response({"error": {"code": "scripted"}}, status=status, headers=headers)
        return await super()._handle(request)
