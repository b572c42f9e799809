"""The CloudAdapter, its authentication (every bad token is a 401), tenant and serviceUrl checks, /api/messages."""

from __future__ import annotations

import asyncio
import codecs
import functools
import ipaddress
import json
import logging
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from http import HTTPStatus
from types import SimpleNamespace
from typing import Any

from aiohttp import web
from botbuilder.core import InvokeResponse, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.integration.aiohttp.configuration_service_client_credential_factory import (
    ConfigurationServiceClientCredentialFactory,
)
from botbuilder.schema import Activity, ActivityTypes, ConversationReference, ResourceResponse
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
from bot.teams.connector import BotConnectorClient, BotTokenSource, is_loopback_url
from bot.teams.handler import WardlineBot, apologise
from bot.teams.turn import Inbound, tenant_of
from skills.core.ports import Notifier, Store
from skills.core.router import Router

log = logging.getLogger(__name__)

SECURITY_AUDIT = "audit.security"  # append-only: refused tenants (ids only, never message text)
_AUTH_WORKERS = 4


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
        # botframework fetches OpenID metadata and signing keys with blocking `requests` calls (no timeout): validate
        # on a small pool of our own, each call with its own loop, so a slow fetch neither stalls the event loop nor
        # starves the default pool that storage and retrieval use.
        self._executor = ThreadPoolExecutor(max_workers=_AUTH_WORKERS, thread_name_prefix="wardline-auth")

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)

    async def authenticate_request(self, activity: Activity, auth_header: str) -> AuthenticateRequestResult:
        try:
            coroutine = self.inner.authenticate_request(activity, auth_header)
            loop = asyncio.get_running_loop()
            return await loop.run_in_executor(self._executor, asyncio.run, coroutine)
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


class WardlineAdapter(CloudAdapter):  # type: ignore[misc]
    """A CloudAdapter whose sends, updates and deletes go through our non-blocking BotConnectorClient."""

    def __init__(self, authentication: BotFrameworkAuthentication, connector: BotConnectorClient) -> None:
        super().__init__(authentication)
        self.connector = connector

    async def send_activities(self, context: TurnContext, activities: list[Activity]) -> list[ResourceResponse]:
        responses: list[ResourceResponse] = []
        for activity in activities:
            activity.id = None
            if activity.type == ActivityTypes.invoke_response:
                context.turn_state[self._INVOKE_RESPONSE_KEY] = activity  # the route answers the invoke with it
                responses.append(ResourceResponse(id=""))
            elif activity.type in (ActivityTypes.trace, "delay"):
                responses.append(ResourceResponse(id=""))  # traces are for the emulator; this bot never delays
            else:
                service_url, conversation_id = _address(activity)
                body = activity.serialize()
                if activity.reply_to_id:
                    sent = await self.connector.reply_to_activity(
                        service_url, conversation_id, activity.reply_to_id, body
                    )
                else:
                    sent = await self.connector.send_to_conversation(service_url, conversation_id, body)
                responses.append(ResourceResponse(id=sent))
        return responses

    async def update_activity(self, context: TurnContext, activity: Activity) -> ResourceResponse | None:
        service_url, conversation_id = _address(activity)
        updated = await self.connector.update_activity(service_url, conversation_id, activity.id, activity.serialize())
        return ResourceResponse(id=updated) if updated else None

    async def delete_activity(self, context: TurnContext, reference: ConversationReference) -> None:
        service_url = reference.service_url or context.activity.service_url
        await self.connector.delete_activity(service_url, reference.conversation.id, reference.activity_id)


def _address(activity: Activity) -> tuple[str, str]:
    if not activity.service_url or not activity.conversation or not activity.conversation.id:
        raise ValueError("an outgoing activity needs serviceUrl and conversation.id")
    return str(activity.service_url), str(activity.conversation.id)


def create_connector(
    settings: Settings, credentials: ServiceClientCredentialsFactory, config: SimpleNamespace
) -> BotConnectorClient:
    """The outbound client: the bot's token (when it has an app id), a short timeout, loopback only when anonymous."""
    token = None
    if settings.app_id:
        token = BotTokenSource(
            credentials,
            app_id=settings.app_id,
            oauth_scope=getattr(
                config, "TO_CHANNEL_FROM_BOT_OAUTH_SCOPE", AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE
            ),
            login_endpoint=getattr(
                config, "TO_CHANNEL_FROM_BOT_LOGIN_URL", AuthenticationConstants.TO_CHANNEL_FROM_BOT_LOGIN_URL
            ),
        )
    return BotConnectorClient(
        timeout_s=settings.connector_timeout_s,
        token=token,
        loopback_only=not settings.app_id and not settings.insecure_anonymous,
    )


def create_adapter(settings: Settings, credentials: ServiceClientCredentialsFactory | None = None) -> WardlineAdapter:
    config = bot_configuration(settings)
    factory = CachingCredentialsFactory(credentials or ConfigurationServiceClientCredentialFactory(config))
    authentication = StrictAuthentication(ConfigurationBotFrameworkAuthentication(config, credentials_factory=factory))
    adapter = WardlineAdapter(authentication, create_connector(settings, factory, config))

    async def on_turn_error(context: TurnContext, error: Exception) -> None:
        await apologise(context, error)

    adapter.on_turn_error = on_turn_error
    return adapter


def _problem(status: int, detail: str) -> web.Response:
    return web.json_response({"error": detail}, status=status)


class BadActivity(ValueError):
    """The request is not an Activity this bot can handle; the message is safe to return to the caller."""


def read_activity(raw: bytes, charset: str | None) -> Activity:
    """Parse and check the body before anything acts on it: every problem is a BadActivity, never a crash."""
    try:
        text = raw.decode(codecs.lookup(charset).name if charset else "utf-8")
    except (LookupError, UnicodeDecodeError):
        raise BadActivity("body is not text in the declared charset") from None
    try:
        body = json.loads(text)
    except (ValueError, RecursionError):  # RecursionError: JSON nested thousands deep
        raise BadActivity("body is not JSON") from None
    if not isinstance(body, dict) or not isinstance(body.get("type"), str):
        raise BadActivity("body is not an Activity (no type)")
    try:
        activity = Activity().deserialize(body)
    except Exception:  # msrest raises several types on wrong shapes
        raise BadActivity("body is not a valid Activity") from None
    if not isinstance(activity.type, str) or not isinstance(activity.service_url, str) or not activity.service_url:
        raise BadActivity("Activity needs serviceUrl and conversation.id")
    if not activity.conversation or not isinstance(activity.conversation.id, str) or not activity.conversation.id:
        raise BadActivity("Activity needs serviceUrl and conversation.id")
    if not activity.recipient or not isinstance(activity.recipient.id, str) or not activity.recipient.id:
        raise BadActivity("Activity needs recipient.id")
    for entity in _entities(body):
        if not isinstance(entity.get("type"), str):
            raise BadActivity("every entity needs a type")  # botbuilder's mention lookup calls type.lower()
        if entity["type"].lower() == "mention":
            mentioned = entity.get("mentioned")
            if not isinstance(mentioned, dict) or not isinstance(mentioned.get("id"), str):
                raise BadActivity("a mention entity needs mentioned.id")
    return activity


def _entities(body: dict[str, Any]) -> list[dict[str, Any]]:
    entities = body.get("entities")
    if entities is None:
        return []
    if not isinstance(entities, list) or not all(isinstance(e, dict) for e in entities):
        raise BadActivity("entities must be a list of objects")
    return entities


def _is_loopback_peer(remote: str | None) -> bool:
    try:
        return remote is not None and ipaddress.ip_address(remote.split("%")[0]).is_loopback
    except ValueError:
        return False


class TeamsEndpoint:
    """Everything the app needs from the Teams side: one object, so nothing outside bot/teams knows botbuilder."""

    def __init__(
        self,
        settings: Settings,
        router: Router,
        store: Store,
        credentials: ServiceClientCredentialsFactory | None = None,
        notifier: Notifier | None = None,
    ) -> None:
        self.settings = settings
        self.store = store
        self.tenants = settings.tenant_allowlist  # raises SettingsError for a bot with an app id and no tenant
        self.adapter = create_adapter(settings, credentials)
        self.connector = self.adapter.connector  # the outbox reuses it for proactive sends
        self.bot = WardlineBot(
            router, store, streaming=settings.streaming, notifier=notifier, reply_window_s=settings.reply_window_s
        )

    async def close(self) -> None:
        await self.connector.close()
        authentication = self.adapter.bot_framework_authentication
        if isinstance(authentication, StrictAuthentication):
            authentication.close()

    async def handle(self, request: web.Request) -> web.Response:
        """POST /api/messages: validate the request, authenticate, check tenant and serviceUrl, run the turn."""
        received = time.monotonic()
        if request.content_type != "application/json":  # the parsed media type, not a substring of the header
            return _problem(HTTPStatus.UNSUPPORTED_MEDIA_TYPE, "expected application/json")
        try:
            activity = read_activity(await request.read(), request.charset)
        except BadActivity as exc:
            return _problem(HTTPStatus.BAD_REQUEST, str(exc))
        try:
            auth = await self.adapter.bot_framework_authentication.authenticate_request(
                activity, request.headers.get("Authorization", "")
            )
        except PermissionError as exc:
            log.warning("request rejected", extra={"reason": str(exc)})
            return _problem(HTTPStatus.UNAUTHORIZED, "unauthorized")
        # With an app id, reaching here means the token was valid; anonymous mode yields an anonymous identity.
        identity = auth.claims_identity
        authenticated = bool(self.settings.app_id) and bool(identity is not None and identity.is_authenticated)
        refusal = await self._refusal(activity, authenticated)
        if refusal is not None:
            return refusal
        inbound = Inbound(trusted=authenticated or _is_loopback_peer(request.remote), received=received)
        logic = functools.partial(self.bot.on_turn, inbound=inbound)
        response: InvokeResponse | None = await self.adapter.process_activity(auth, activity, logic)
        if response is None:
            return web.Response(status=HTTPStatus.CREATED)
        if response.body is None:
            return web.Response(status=response.status)  # Teams wants an empty body, not `null`
        return web.json_response(response.body, status=response.status)

    async def _refusal(self, activity: Activity, authenticated: bool) -> web.Response | None:
        """403 for a tenant outside the allow-list (audited) or, when anonymous, a serviceUrl off this machine."""
        if not authenticated and not self.settings.insecure_anonymous and not is_loopback_url(activity.service_url):
            log.warning("anonymous activity with a non-loopback serviceUrl refused", extra={"activity_id": activity.id})
            return _problem(HTTPStatus.FORBIDDEN, "anonymous mode answers only a loopback serviceUrl")
        if self.tenants is None:
            return None
        claimed = {t.lower() for t in (tenant_of(activity), getattr(activity.conversation, "tenant_id", None)) if t}
        if len(claimed) == 1 and claimed <= self.tenants:
            return None
        tenant = ",".join(sorted(claimed))[:200] or None
        log.warning("activity from a tenant that is not allowed refused", extra={"activity_id": activity.id})
        await self.store.append(
            SECURITY_AUDIT,
            {
                "event": "tenant_refused",
                "at": datetime.now(UTC).isoformat(),
                "tenant_id": tenant,
                "authenticated": authenticated,
                "activity_id": str(activity.id or "")[:200],
                "conversation_id": str(activity.conversation.id)[:200],
                "service_url": str(activity.service_url)[:200],
            },
        )
        return _problem(HTTPStatus.FORBIDDEN, "tenant not allowed")
