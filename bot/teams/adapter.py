"""The CloudAdapter, its authentication (every bad token is a 401) and the /api/messages route."""

from __future__ import annotations

import asyncio
import json
import logging
from http import HTTPStatus
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.integration.aiohttp.configuration_service_client_credential_factory import (
    ConfigurationServiceClientCredentialFactory,
)
from botbuilder.schema import Activity
from botframework.connector.auth import (
    AuthenticateRequestResult,
    AuthenticationConstants,
    BotFrameworkAuthentication,
    ClaimsIdentity,
    ConnectorFactory,
    ServiceClientCredentialsFactory,
    UserTokenClient,
)
from botframework.connector.skills import BotFrameworkClient

from bot.settings import Settings
from bot.teams.handler import WardlineBot, apologise
from skills.core.ports import Store
from skills.core.router import Router

log = logging.getLogger(__name__)


class CachingCredentialsFactory(ServiceClientCredentialsFactory):  # type: ignore[misc]
    """Build app credentials once per (app id, scope) instead of on every turn (and every MSAL discovery)."""

    def __init__(self, inner: ServiceClientCredentialsFactory) -> None:
        self.inner = inner
        self._cache: dict[tuple[str, str, str, bool], Any] = {}

    async def is_valid_app_id(self, app_id: str) -> bool:
        return bool(await self.inner.is_valid_app_id(app_id))

    async def is_authentication_disabled(self) -> bool:
        return bool(await self.inner.is_authentication_disabled())

    async def create_credentials(
        self, app_id: str, oauth_scope: str, login_endpoint: str, validate_authority: bool
    ) -> Any:
        key = (app_id or "", oauth_scope or "", login_endpoint or "", bool(validate_authority))
        if key not in self._cache:
            self._cache[key] = await self.inner.create_credentials(
                app_id, oauth_scope, login_endpoint, validate_authority
            )
        return self._cache[key]


class StrictAuthentication(BotFrameworkAuthentication):  # type: ignore[misc]
    """Turns every token validation failure into PermissionError, which the route answers with 401."""

    def __init__(self, inner: BotFrameworkAuthentication) -> None:
        self.inner = inner

    async def authenticate_request(self, activity: Activity, auth_header: str) -> AuthenticateRequestResult:
        try:
            # botframework fetches OpenID metadata and signing keys with blocking `requests` calls (no timeout):
            # validate on a worker thread with its own loop so a slow fetch never stalls other conversations.
            return await asyncio.to_thread(asyncio.run, self.inner.authenticate_request(activity, auth_header))
        except PermissionError:
            raise
        except Exception as exc:  # expired, unsigned, unknown kid, garbage: all are "not authenticated"
            raise PermissionError(f"token rejected ({type(exc).__name__})") from exc

    async def authenticate_streaming_request(self, auth_header: str, channel_id_header: str) -> Any:
        try:
            return await self.inner.authenticate_streaming_request(auth_header, channel_id_header)
        except PermissionError:
            raise
        except Exception as exc:
            raise PermissionError(f"token rejected ({type(exc).__name__})") from exc

    def create_connector_factory(self, claims_identity: ClaimsIdentity) -> ConnectorFactory:
        return self.inner.create_connector_factory(claims_identity)

    async def create_user_token_client(self, claims_identity: ClaimsIdentity) -> UserTokenClient:
        return await self.inner.create_user_token_client(claims_identity)

    def create_bot_framework_client(self) -> BotFrameworkClient:
        return self.inner.create_bot_framework_client()

    def get_originating_audience(self) -> str:
        return str(self.inner.get_originating_audience())


def bot_configuration(settings: Settings) -> SimpleNamespace:
    """The attribute bag botbuilder's configuration classes read."""
    config = SimpleNamespace(
        APP_ID=settings.app_id,
        APP_PASSWORD=settings.app_password,
        APP_TYPE=settings.app_type,
        APP_TENANTID=settings.app_tenant_id,
    )
    if settings.openid_metadata_url:
        # Any such override drops botbuilder's public-cloud defaults, so restate the rest of them.
        config.TO_BOT_FROM_CHANNEL_OPENID_METADATA_URL = settings.openid_metadata_url
        config.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER = AuthenticationConstants.TO_BOT_FROM_CHANNEL_TOKEN_ISSUER
        config.TO_CHANNEL_FROM_BOT_LOGIN_URL = AuthenticationConstants.TO_CHANNEL_FROM_BOT_LOGIN_URL_PREFIX + (
            settings.app_tenant_id or AuthenticationConstants.DEFAULT_CHANNEL_AUTH_TENANT
        )
        config.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE = AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE
    return config


def create_adapter(settings: Settings, credentials: ServiceClientCredentialsFactory | None = None) -> CloudAdapter:
    config = bot_configuration(settings)
    factory = CachingCredentialsFactory(credentials or ConfigurationServiceClientCredentialFactory(config))
    authentication = StrictAuthentication(ConfigurationBotFrameworkAuthentication(config, credentials_factory=factory))
    adapter = CloudAdapter(authentication)

    async def on_turn_error(context: TurnContext, error: Exception) -> None:
        await apologise(context, error)

    adapter.on_turn_error = on_turn_error
    return adapter


def _problem(status: int, detail: str) -> web.Response:
    return web.json_response({"error": detail}, status=status)


async def handle_messages(request: web.Request, adapter: CloudAdapter, bot: WardlineBot) -> web.Response:
    """POST /api/messages: validate the request, run the turn, answer invokes exactly as Teams expects."""
    if "application/json" not in request.headers.get("Content-Type", ""):
        return _problem(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "expected application/json")
    try:
        body = await request.json()
    except (json.JSONDecodeError, UnicodeDecodeError):
        return _problem(HTTPStatus.BAD_REQUEST, "body is not JSON")
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        return _problem(HTTPStatus.BAD_REQUEST, "body is not an Activity (no type)")
    try:
        activity = Activity().deserialize(body)
    except Exception:  # msrest raises several types on wrong shapes
        return _problem(HTTPStatus.BAD_REQUEST, "body is not a valid Activity")
    if not activity.service_url or not activity.conversation or not activity.conversation.id:
        return _problem(HTTPStatus.BAD_REQUEST, "Activity needs serviceUrl and conversation.id")
    auth_header = request.headers.get("Authorization", "")
    try:
        response: InvokeResponse | None = await adapter.process_activity(auth_header, activity, bot.on_turn)
    except PermissionError as exc:
        log.warning("request rejected", extra={"reason": str(exc)})
        return _problem(HTTPStatus.UNAUTHORIZED, "unauthorized")
    if response is None:
        return web.Response(status=HTTPStatus.CREATED)
    if response.body is None:
        return web.Response(status=response.status)  # Teams wants an empty body, not `null`
    return web.json_response(response.body, status=response.status)


class TeamsEndpoint:
    """Everything the app needs from the Teams side: one object, so nothing outside bot/teams knows botbuilder."""

    def __init__(
        self,
        settings: Settings,
        router: Router,
        store: Store,
        credentials: ServiceClientCredentialsFactory | None = None,
    ) -> None:
        self.adapter = create_adapter(settings, credentials)
        self.bot = WardlineBot(router, store, streaming=settings.streaming)

    async def handle(self, request: web.Request) -> web.Response:
        return await handle_messages(request, self.adapter, self.bot)
