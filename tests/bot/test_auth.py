"""With an app id, every request needs a valid Bot Framework token: anything else is a 401, never a 500."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import aiohttp
import jwt
import pytest
from aiohttp import web
from botframework.connector.auth import AppCredentials
from cryptography.hazmat.primitives.asymmetric import rsa
from jwt.algorithms import RSAAlgorithm

from bot.app import SERVICES, create_app
from bot.settings import Settings, SettingsError
from bot.teams.adapter import SECURITY_AUDIT
from bot.teams.handler import CONVERSATIONS
from tests.bot.conftest import bot_settings, serve
from tests.fakes.teams import TENANT, FakeConnector, teams_message

APP_ID = "11111111-2222-3333-4444-555555555555"
ISSUER = "https://api.botframework.com"


class KeyServer:
    """OpenID metadata and JWKS on a thread: botframework fetches them with blocking calls."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        jwk = json.loads(RSAAlgorithm.to_jwk(self.key.public_key()))
        jwk.update({"kid": "test-kid", "use": "sig", "endorsements": ["msteams"]})
        self.jwks = {"keys": [jwk]}
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                base = f"http://127.0.0.1:{server.httpd.server_address[1]}"
                body = (
                    {"issuer": ISSUER, "jwks_uri": f"{base}/keys", "id_token_signing_alg_values_supported": ["RS256"]}
                    if self.path.endswith("openid-configuration")
                    else server.jwks
                )
                data = json.dumps(body).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args: Any) -> None:
                return

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/.well-known/openid-configuration"

    def token(self, service_url: str, **overrides: Any) -> str:
        claims = {
            "iss": ISSUER,
            "aud": APP_ID,
            "serviceurl": service_url,
            "nbf": int(time.time()) - 60,
            "exp": int(time.time()) + 3600,
            **overrides,
        }
        return jwt.encode(claims, self.key, algorithm="RS256", headers={"kid": "test-kid"})

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


class StaticCredentials(AppCredentials):  # type: ignore[misc]
    """Outbound calls carry a fixed token instead of asking Entra ID (which is not reachable here)."""

    def get_access_token(self, force_refresh: bool = False) -> str:
        return "outbound-test-token"


class StaticCredentialsFactory:
    async def is_valid_app_id(self, app_id: str) -> bool:
        return app_id == APP_ID

    async def is_authentication_disabled(self) -> bool:
        return False

    async def create_credentials(self, app_id: str, oauth_scope: str, login_endpoint: str, validate: bool) -> Any:
        return StaticCredentials(app_id=app_id, oauth_scope=oauth_scope)


@pytest.fixture
def keys() -> Iterator[KeyServer]:
    server = KeyServer()
    yield server
    server.close()


async def test_tokens_are_checked(tmp_path: Any, keys: KeyServer, connector: FakeConnector) -> None:
    settings = bot_settings(
        tmp_path, app_id=APP_ID, app_password="x", openid_metadata_url=keys.url, allowed_tenants=(TENANT,)
    )
    runner, url = await serve(create_app(settings, credentials=StaticCredentialsFactory()))
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(200):
                async with session.get(f"{url}/readyz") as ready:
                    if ready.status == 200:
                        break
                await asyncio.sleep(0.05)

            async def post(token: str | None) -> int:
                headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
                activity = teams_message("What MAP do we target in septic shock?", connector.url)
                async with session.post(f"{url}/api/messages", json=activity, headers=headers) as response:
                    return response.status

            other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
            forged = jwt.encode(
                {"iss": ISSUER, "aud": APP_ID, "serviceurl": connector.url, "exp": int(time.time()) + 600},
                other_key,
                algorithm="RS256",
                headers={"kid": "test-kid"},
            )
            unsigned = jwt.encode(
                {"iss": ISSUER, "aud": APP_ID, "serviceurl": connector.url, "exp": int(time.time()) + 600},
                None,
                algorithm="none",
            )
            rejected = {
                "no token": await post(None),
                "garbage": await post("not.a.jwt"),
                "unsigned": await post(unsigned),
                "wrong key": await post(forged),
                "expired": await post(keys.token(connector.url, exp=int(time.time()) - 600)),
                "wrong audience": await post(keys.token(connector.url, aud="someone-else")),
                "wrong issuer": await post(keys.token(connector.url, iss="https://evil.example")),
                "other serviceUrl": await post(keys.token("https://elsewhere.example/")),
                "unknown kid": await post(
                    jwt.encode({"iss": ISSUER, "aud": APP_ID}, keys.key, algorithm="RS256", headers={"kid": "nope"})
                ),
            }
            assert rejected == dict.fromkeys(rejected, 401)
            assert connector.sent == [], "a rejected request must not reach the bot"

            assert await post(keys.token(connector.url)) == 201
            reply = connector.messages()[-1]
            assert "65 mmHg" in reply.text
    finally:
        await runner.cleanup()


FOREIGN_TENANT = "0badc0de-0000-4000-8000-00000000f00d"


@asynccontextmanager
async def authenticated_bot(tmp_path: Path, keys: KeyServer, **overrides: Any) -> AsyncIterator[AuthedBot]:
    settings = bot_settings(tmp_path, app_id=APP_ID, app_password="x", openid_metadata_url=keys.url, **overrides)
    app = create_app(settings, credentials=StaticCredentialsFactory())
    runner, url = await serve(app)
    try:
        async with aiohttp.ClientSession() as session:
            for _ in range(400):
                async with session.get(f"{url}/readyz") as ready:
                    if ready.status == 200:
                        break
                await asyncio.sleep(0.05)
            yield AuthedBot(app, session, url, keys)
    finally:
        await runner.cleanup()


@dataclass
class AuthedBot:
    app: web.Application
    session: aiohttp.ClientSession
    url: str
    keys: KeyServer

    async def post(self, activity: dict[str, Any]) -> int:
        headers = {"Authorization": f"Bearer {self.keys.token(activity['serviceUrl'])}"}
        async with self.session.post(f"{self.url}/api/messages", json=activity, headers=headers) as response:
            return response.status


def from_tenant(service_url: str, tenant: str | None) -> dict[str, Any]:
    activity = teams_message("What MAP do we target in septic shock?", service_url)
    if tenant is None:
        del activity["channelData"]["tenant"]
        del activity["conversation"]["tenantId"]
    else:
        activity["channelData"]["tenant"]["id"] = tenant
        activity["conversation"]["tenantId"] = tenant
    return activity


async def test_a_foreign_tenant_is_refused_and_audited(
    tmp_path: Path, keys: KeyServer, connector: FakeConnector
) -> None:
    async with authenticated_bot(tmp_path, keys, allowed_tenants=(TENANT,)) as bot:
        store = bot.app[SERVICES].store
        assert await bot.post(from_tenant(connector.url, FOREIGN_TENANT)) == 403
        assert await bot.post(from_tenant(connector.url, None)) == 403, "no tenant is not an allowed tenant"
        mixed = from_tenant(connector.url, TENANT)
        mixed["conversation"]["tenantID"] = FOREIGN_TENANT  # two different tenants in one activity
        assert await bot.post(mixed) == 403
        assert connector.sent == [], "a refused tenant gets no answer"
        assert await store.scan(CONVERSATIONS) == [], "nor may it store a conversation reference"
        audit = [event for _, event in await store.read(SECURITY_AUDIT)]
        assert [event["event"] for event in audit] == ["tenant_refused"] * 3
        assert audit[0]["tenant_id"] == FOREIGN_TENANT and audit[0]["authenticated"] is True
        assert audit[1]["tenant_id"] is None
        assert all("septic" not in str(event) for event in audit), "ids only, never message text"
        assert await bot.post(from_tenant(connector.url, TENANT.upper())) == 201
        assert "65 mmHg" in connector.messages()[-1].text


async def test_single_tenant_answers_its_own_tenant_by_default(
    tmp_path: Path, keys: KeyServer, connector: FakeConnector
) -> None:
    async with authenticated_bot(tmp_path, keys, app_type="SingleTenant", app_tenant_id=TENANT) as bot:
        assert await bot.post(from_tenant(connector.url, FOREIGN_TENANT)) == 403
        assert connector.sent == []
        assert await bot.post(from_tenant(connector.url, TENANT)) == 201
        assert await bot.app[SERVICES].store.get(CONVERSATIONS, from_tenant("", TENANT)["conversation"]["id"])


async def test_every_tenant_only_when_asked_explicitly(
    tmp_path: Path, keys: KeyServer, connector: FakeConnector
) -> None:
    with pytest.raises(SettingsError, match="WARDLINE_ALLOWED_TENANTS"):
        create_app(bot_settings(tmp_path, app_id=APP_ID, app_password="x"))
    with pytest.raises(SettingsError, match="only with MicrosoftAppType=MultiTenant"):
        Settings.load(
            {"MicrosoftAppType": "SingleTenant", "MicrosoftAppTenantId": TENANT, "WARDLINE_ALLOWED_TENANTS": "*"},
            env_file=None,
        )
    loaded = Settings.load({"MicrosoftAppId": APP_ID, "WARDLINE_ALLOWED_TENANTS": f" {TENANT}, other "}, env_file=None)
    assert loaded.tenant_allowlist == {TENANT, "other"}
    async with authenticated_bot(tmp_path, keys, allowed_tenants=("*",)) as bot:
        assert await bot.post(from_tenant(connector.url, FOREIGN_TENANT)) == 201
