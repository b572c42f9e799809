"""BotConnectorClient against a loopback fake connector: paths, ids, typed errors, timeouts, tokens, serviceUrl policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from email.utils import formatdate
from typing import Any

import jwt
import pytest
from aiohttp import web

from bot.retry import retry_after_seconds
from bot.teams.connector import (
    BotConnectorClient,
    BotTokenSource,
    ConnectorError,
    ServiceUrlRefused,
    is_loopback_host,
    is_loopback_url,
)
from tests.bot.conftest import serve


@dataclass
class Seen:
    method: str
    raw_path: str
    authorization: str | None
    body: Any


@dataclass
class Connector:
    url: str = ""
    seen: list[Seen] = field(default_factory=list)
    script: list[tuple[int, dict[str, str]]] = field(default_factory=list)
    hang: bool = False
    released: asyncio.Event = field(default_factory=asyncio.Event)

    async def handle(self, request: web.Request) -> web.Response:
        body = await request.json() if request.can_read_body else None
        self.seen.append(Seen(request.method, request.raw_path, request.headers.get("Authorization"), body))
        if self.hang:
            await self.released.wait()
        if self.script:
            status, headers = self.script.pop(0)
            if status != 200:
                return web.json_response({"error": {"code": "x"}}, status=status, headers=headers)
        if request.method == "DELETE":
            return web.Response(status=200)
        if request.path == "/v3/conversations":
            return web.json_response({"id": "19:new@thread.tacv2", "activityId": "1", "serviceUrl": self.url})
        return web.json_response({"id": f"sent-{len(self.seen)}"})


@pytest.fixture
async def fake() -> AsyncIterator[Connector]:
    connector = Connector()
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", connector.handle)
    runner, url = await serve(app)
    connector.url = url + "/"
    yield connector
    connector.released.set()
    await runner.cleanup()


@pytest.fixture
async def client() -> AsyncIterator[BotConnectorClient]:
    connector = BotConnectorClient(timeout_s=1.0, loopback_only=True)
    yield connector
    await connector.close()


CONVERSATION = "19:7w-ward-channel@thread.tacv2;messageid=1700000000000"


async def test_paths_escape_teams_ids_and_ids_come_back(fake: Connector, client: BotConnectorClient) -> None:
    message = {"type": "message", "text": "hi"}
    assert await client.send_to_conversation(fake.url, CONVERSATION, message) == "sent-1"
    assert await client.reply_to_activity(fake.url, "a:1chat", "17000;x", message) == "sent-2"
    assert await client.update_activity(fake.url, "a:1chat", "sent-1", message) == "sent-3"
    await client.delete_activity(fake.url, "a:1chat", "sent-1")
    created = await client.create_conversation(fake.url, {"isGroup": True, "activity": message})
    assert created["id"] == "19:new@thread.tacv2"
    assert [(s.method, s.raw_path) for s in fake.seen] == [
        ("POST", "/v3/conversations/19%3A7w-ward-channel%40thread.tacv2%3Bmessageid%3D1700000000000/activities"),
        ("POST", "/v3/conversations/a%3A1chat/activities/17000%3Bx"),
        ("PUT", "/v3/conversations/a%3A1chat/activities/sent-1"),
        ("DELETE", "/v3/conversations/a%3A1chat/activities/sent-1"),
        ("POST", "/v3/conversations"),
    ]
    assert fake.seen[0].body == message and fake.seen[0].authorization is None


async def test_errors_are_typed_with_status_and_retry_after(fake: Connector, client: BotConnectorClient) -> None:
    fake.script = [(429, {"Retry-After": "7"}), (502, {}), (404, {})]
    with pytest.raises(ConnectorError) as throttled:
        await client.send_to_conversation(fake.url, "a:1", {"type": "message"})
    assert (throttled.value.status, throttled.value.retry_after, throttled.value.transient) == (429, 7.0, True)
    with pytest.raises(ConnectorError) as gateway:
        await client.send_to_conversation(fake.url, "a:1", {"type": "message"})
    assert (gateway.value.status, gateway.value.retry_after, gateway.value.transient) == (502, None, True)
    with pytest.raises(ConnectorError) as missing:
        await client.send_to_conversation(fake.url, "a:1", {"type": "message"})
    assert (missing.value.status, missing.value.transient) == (404, False)


async def test_a_hanging_connector_times_out(fake: Connector, client: BotConnectorClient) -> None:
    fake.hang = True
    started = time.monotonic()
    with pytest.raises(ConnectorError) as hung:
        await client.send_to_conversation(fake.url, "a:1", {"type": "message"})
    assert hung.value.status == 0 and hung.value.transient
    assert time.monotonic() - started < 2.0


async def test_anonymous_client_posts_only_to_loopback(client: BotConnectorClient) -> None:
    for url in ("https://smba.trafficmanager.net/apac/", "http://10.0.0.1/", "file:///etc/passwd", "ftp://127.0.0.1/"):
        with pytest.raises(ServiceUrlRefused):
            await client.send_to_conversation(url, "a:1", {"type": "message"})


def test_loopback_rules() -> None:
    assert is_loopback_url("http://127.0.0.1:3978/") and is_loopback_url("https://localhost/")
    assert is_loopback_url("http://[::1]:80/")
    assert not is_loopback_url("http://127.0.0.1.evil.example/") and not is_loopback_url("http://0.0.0.0/")
    assert is_loopback_host("127.0.0.1") and is_loopback_host("::1") and is_loopback_host("[::1]")
    assert not is_loopback_host("0.0.0.0") and not is_loopback_host("") and not is_loopback_host("example.org")


class CountingCredentials:
    def __init__(self, tokens: list[str]) -> None:
        self.tokens = tokens
        self.calls: list[bool] = []

    def get_access_token(self, force_refresh: bool = False) -> str:
        self.calls.append(force_refresh)
        return self.tokens[min(len(self.calls), len(self.tokens)) - 1]


class Factory:
    def __init__(self, credentials: CountingCredentials) -> None:
        self.credentials = credentials
        self.created: list[tuple[str, str, str, bool]] = []

    async def create_credentials(self, app_id: str, scope: str, login: str, validate: bool) -> CountingCredentials:
        self.created.append((app_id, scope, login, validate))
        return self.credentials


def a_jwt(expires_in: float) -> str:
    return jwt.encode({"exp": int(time.time() + expires_in)}, "k" * 32, algorithm="HS256")


async def test_token_is_cached_until_near_expiry_and_refreshed_on_401(fake: Connector) -> None:
    first, second = a_jwt(3600), a_jwt(3600)
    credentials = CountingCredentials([first, second])
    tokens = BotTokenSource(
        Factory(credentials), app_id="app", oauth_scope="https://api.botframework.com", login_endpoint="x"
    )
    client = BotConnectorClient(timeout_s=1.0, token=tokens)
    try:
        results = await asyncio.gather(
            *(client.send_to_conversation(fake.url, "a:1", {"type": "typing"}) for _ in range(5))
        )
        assert len(results) == 5 and credentials.calls == [False], "one fetch, then the cache (single flight)"
        assert {s.authorization for s in fake.seen} == {f"Bearer {first}"}
        fake.script = [(401, {})]  # the connector refuses the cached token once
        await client.send_to_conversation(fake.url, "a:1", {"type": "typing"})
        assert credentials.calls == [False, True], "a refused token is fetched again, forcing a refresh"
        assert fake.seen[-1].authorization == f"Bearer {second}"
    finally:
        await client.close()


async def test_a_token_close_to_expiry_is_not_reused() -> None:
    credentials = CountingCredentials([a_jwt(60), a_jwt(3600)])
    tokens = BotTokenSource(Factory(credentials), app_id="app", oauth_scope="s", login_endpoint="l")
    try:
        await tokens()
        await tokens()
        assert len(credentials.calls) == 2, "a token within five minutes of expiry is refreshed"
    finally:
        tokens.close()


async def test_no_app_id_means_no_token() -> None:
    tokens = BotTokenSource(Factory(CountingCredentials(["t"])), app_id="", oauth_scope="s", login_endpoint="l")
    assert await tokens() is None
    tokens.close()


def test_retry_after_reader() -> None:
    assert retry_after_seconds({"Retry-After": "30"}) == 30.0
    assert retry_after_seconds({"retry-after": "1.5"}) == 1.5
    assert retry_after_seconds({"retry-after-ms": "250", "Retry-After": "9"}) == 0.25
    assert retry_after_seconds({"RETRY-AFTER": "-4"}) == 0.0
    assert retry_after_seconds({"Retry-After": "soon"}) is None
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None
    now = time.time()
    in_a_minute = formatdate(now + 60, usegmt=True)
    assert 58 <= (retry_after_seconds({"Retry-After": in_a_minute}, now=now) or 0) <= 61
    assert retry_after_seconds({"Retry-After": formatdate(now - 60, usegmt=True)}, now=now) == 0.0
