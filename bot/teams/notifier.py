"""TeamsNotifier: the Notifier port over the durable outbox, and the courier that delivers rows to the Bot Connector.

`post` resolves nothing but a role's people: it commits rows for logical targets and returns. The worker (bot.outbox)
asks `TeamsCourier` where each row goes now (links change, conversations break) and to send it, over aiohttp with a
short timeout: nothing here blocks the event loop.
"""

from __future__ import annotations

import asyncio
import email.utils
import logging
import re
import time
from collections.abc import Awaitable, Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass
from typing import Any, Protocol
from urllib.parse import quote

import aiohttp

from bot.outbox import (
    DELETE,
    POST,
    Destination,
    Gone,
    Hold,
    Outbox,
    OutboxItem,
    OutboxWorker,
    Rejected,
    Retry,
    SendResult,
    Sent,
    backoff_s,
    global_limits,
)
from bot.settings import Settings
from bot.storage import SqlStore
from bot.teams.conversations import ConversationBook
from bot.teams.render import reply_activity
from bot.teams.turn import REPLIES
from skills.core.i18n import is_korean
from skills.core.ports import Directory, Priority
from skills.core.types import Card, Citation, Reply

log = logging.getLogger(__name__)

_TARGET = re.compile(r"^(unit|user|conversation):(\S.{0,400})$|^role:([a-z]+)@(\S{1,100})$")
RETRYABLE = frozenset({412, 429, 500, 502, 503, 504})
GONE = frozenset({403, 404})
MAX_RETRY_AFTER_S = 300.0
UNROUTED = {
    "en": "unrouted: unit {unit} has no channel",
    "ko": "미배정: {unit} 병동에 연결된 채널이 없습니다",
}


def reply_to_json(reply: Reply) -> dict[str, Any]:
    """A Reply as JSON for the outbox row (rendered for Teams only when it is sent)."""
    data = asdict(reply)
    data["card"] = dict(reply.card.content) if reply.card is not None else None
    return data


def reply_from_json(data: Mapping[str, Any]) -> Reply:
    citations = [Citation(**{**c, "keywords": tuple(c.get("keywords") or ())}) for c in data.get("citations") or []]
    card = data.get("card")
    return Reply(
        text=str(data.get("text") or ""),
        citations=citations,
        ai_generated=bool(data.get("ai_generated")),
        feedback=bool(data.get("feedback")),
        card=Card(card) if isinstance(card, dict) else None,
        record_id=data.get("record_id"),
        skill=data.get("skill"),
    )


class ConnectorError(Exception):
    """The Bot Connector answered with an error status (or did not answer: status None)."""

    def __init__(self, status: int | None, retry_after: float | None = None) -> None:
        super().__init__(f"connector status {status}")
        self.status = status
        self.retry_after = retry_after


def retry_after_s(value: str | None, *, now: float | None = None) -> float | None:
    """Retry-After as seconds: a number, or an HTTP date."""
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class ActivityConnector(Protocol):
    """The three Bot Connector calls the outbox needs; swap in another client without touching the outbox."""

    async def post(self, service_url: str, conversation_id: str, activity: Mapping[str, Any]) -> str | None: ...

    async def update(
        self, service_url: str, conversation_id: str, activity_id: str, activity: Mapping[str, Any]
    ) -> None: ...

    async def delete(self, service_url: str, conversation_id: str, activity_id: str) -> None: ...


TokenSource = Callable[[], Awaitable[str | None]]


async def no_token() -> str | None:
    """Anonymous mode (no MicrosoftAppId): the local connector takes requests without a token."""
    return None


class BotFrameworkTokens:
    """App-only tokens for the connector from botbuilder's credentials (msal), fetched off the event loop."""

    def __init__(self, factory: Any, app_id: str, *, login_endpoint: str, scope: str, timeout_s: float = 10.0) -> None:
        self.factory = factory
        self.app_id = app_id
        self.login_endpoint = login_endpoint
        self.scope = scope
        self.timeout_s = timeout_s
        self._credentials: Any = None
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="outbox-token")  # msal is blocking

    async def __call__(self) -> str | None:
        if self._credentials is None:
            self._credentials = await self.factory.create_credentials(
                self.app_id, self.scope, self.login_endpoint, True
            )
        loop = asyncio.get_running_loop()
        token = await asyncio.wait_for(
            loop.run_in_executor(self._pool, self._credentials.get_access_token), self.timeout_s
        )
        return str(token) if token else None

    def close(self) -> None:
        self._pool.shutdown(wait=False, cancel_futures=True)


class AiohttpConnector:
    """Bot Connector REST calls on aiohttp with a per-request timeout."""

    def __init__(
        self, tokens: TokenSource = no_token, *, timeout_s: float = 10.0, user_agent: str = "Wardline"
    ) -> None:
        self.tokens = tokens
        self.timeout = aiohttp.ClientTimeout(total=timeout_s)
        self.user_agent = user_agent  # names the worker, so a proxy log (or a test) can tell replicas apart
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=self.timeout, connector=aiohttp.TCPConnector(limit=64, limit_per_host=64)
            )
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()

    @staticmethod
    def _url(service_url: str, conversation_id: str, activity_id: str | None = None) -> str:
        url = f"{service_url.rstrip('/')}/v3/conversations/{quote(conversation_id, safe='')}/activities"
        return f"{url}/{quote(activity_id, safe='')}" if activity_id else url

    async def _call(self, method: str, url: str, body: Mapping[str, Any] | None) -> dict[str, Any]:
        headers = {"User-Agent": self.user_agent}
        token = await self.tokens()
        if token:
            headers["Authorization"] = f"Bearer {token}"
        try:
            async with self._client().request(method, url, json=body, headers=headers) as response:
                if response.status >= 400:
                    raise ConnectorError(response.status, retry_after_s(response.headers.get("Retry-After")))
                if response.content_type == "application/json":
                    data = await response.json()
                    return data if isinstance(data, dict) else {}
                return {}
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise ConnectorError(None) from exc

    async def post(self, service_url: str, conversation_id: str, activity: Mapping[str, Any]) -> str | None:
        data = await self._call("POST", self._url(service_url, conversation_id), activity)
        return str(data["id"]) if data.get("id") else None

    async def update(
        self, service_url: str, conversation_id: str, activity_id: str, activity: Mapping[str, Any]
    ) -> None:
        await self._call("PUT", self._url(service_url, conversation_id, activity_id), {**activity, "id": activity_id})

    async def delete(self, service_url: str, conversation_id: str, activity_id: str) -> None:
        await self._call("DELETE", self._url(service_url, conversation_id, activity_id), None)


@dataclass(frozen=True, slots=True)
class _Route:
    service_url: str
    conversation_id: str
    unrouted_unit: str | None = None  # set when a unit's post went to the fallback


class TeamsCourier:
    """Resolves outbox targets to Teams conversations and sends them through an ActivityConnector."""

    def __init__(
        self,
        book: ConversationBook,
        connector: ActivityConnector,
        *,
        directory: Directory | None = None,
        fallback_channel: str = "",
        cache_s: float = 1.0,
    ) -> None:
        self.book = book
        self.connector = connector
        self.directory = directory
        self.fallback_channel = fallback_channel
        self.cache_s = cache_s
        self._cache: dict[tuple[str, str], tuple[float, Any]] = {}

    async def _lookup(self, kind: str, key: str, load: Callable[[str], Awaitable[Any]]) -> Any:
        # Links and references change rarely; a second of staleness saves two database reads per send.
        now = time.monotonic()
        hit = self._cache.get((kind, key))
        if hit is not None and hit[0] > now:
            return hit[1]
        value = await load(key)
        self._cache[(kind, key)] = (now + self.cache_s, value)
        return value

    async def _usable(self, conversation_id: str | None) -> dict[str, Any] | None:
        if not conversation_id:
            return None
        record = await self._lookup("conversation", conversation_id, self.book.get)
        if record is None or record.get("broken") or not record.get("service_url"):
            return None
        return dict(record)

    async def _unit_channel(self, unit: str) -> dict[str, Any] | None:
        linked = await self._usable(await self._lookup("link", unit, self.book.linked))
        if linked is not None:
            return linked
        configured = self.directory.unit(unit) if self.directory is not None else None
        if configured is not None and configured.options.get("channel"):
            return await self._usable(str(configured.options["channel"]))
        return None

    async def _fallback(self) -> dict[str, Any] | None:
        return await self._usable(self.fallback_channel or await self.book.first_channel())

    async def resolve(self, item: OutboxItem) -> Destination | Hold:
        if item.action != POST:  # updates and deletes go where the message is
            record = await self.book.get(item.conversation_id or "")
            if record is None or not item.conversation_id:
                return Hold("the posted message's conversation is unknown", 60.0)
            return Destination(item.conversation_id, _Route(record["service_url"], item.conversation_id))
        scheme, _, rest = item.target.partition(":")
        if scheme == "conversation":
            record = await self._usable(rest)
            if record is None:
                return Hold("conversation unknown or removed the bot", 60.0)
            return Destination(rest, _Route(record["service_url"], rest))
        if scheme == "user":
            chat = await self.book.personal_chat(rest)
            record = await self._usable(chat["conversation_id"] if chat else None)
            if chat is None or record is None:
                return Hold("no personal chat with this user", 60.0)
            return Destination(chat["conversation_id"], _Route(record["service_url"], chat["conversation_id"]))
        if scheme == "unit":
            record = await self._unit_channel(rest)
            unrouted = None
            if record is None:
                record, unrouted = await self._fallback(), rest
            if record is None:
                return Hold(f"unit {rest} has no channel and there is no fallback channel", 5.0)
            conversation_id = str(record["channel"] or record["reference"]["conversation"]["id"])
            return Destination(conversation_id, _Route(record["service_url"], conversation_id, unrouted))
        return Hold(f"unknown target kind {scheme!r}", 3600.0)

    def activity(self, item: OutboxItem, route: _Route) -> dict[str, Any]:
        """The activity JSON for a row, as the connector receives it."""
        reply = reply_from_json(item.payload["reply"])
        mentions = item.payload.get("mentions") or []
        if mentions:
            reply.text = f"{reply.text}\n\n" + " ".join(f"<at>{m['name']}</at>" for m in mentions)
        if route.unrouted_unit:
            language = "ko" if is_korean(reply.text) else "en"
            reply.text = f"_{UNROUTED[language].format(unit=route.unrouted_unit)}_\n\n{reply.text}"
        body: dict[str, Any] = reply_activity(reply).serialize()
        if mentions:
            body["entities"] = [
                *(body.get("entities") or []),
                *(
                    {
                        "type": "mention",
                        "text": f"<at>{m['name']}</at>",
                        "mentioned": {"id": m["id"], "name": m["name"]},
                    }
                    for m in mentions
                ),
            ]
        body["conversation"] = {"id": route.conversation_id}
        return body

    async def send(self, item: OutboxItem, destination: Destination) -> SendResult:
        route: _Route = destination.detail
        try:
            if item.action == POST:
                return Sent(
                    await self.connector.post(route.service_url, route.conversation_id, self.activity(item, route))
                )
            if not item.activity_id:
                return Sent(None)
            if item.action == DELETE:
                await self.connector.delete(route.service_url, route.conversation_id, item.activity_id)
            else:
                await self.connector.update(
                    route.service_url, route.conversation_id, item.activity_id, self.activity(item, route)
                )
            return Sent(item.activity_id)
        except ConnectorError as error:
            if error.status in GONE:
                return Gone(error.status or 0)
            if error.status is None or error.status in RETRYABLE or error.status == 401:
                asked = error.retry_after
                delay = min(asked, MAX_RETRY_AFTER_S) if asked is not None else backoff_s(item.attempts)
                return Retry(error.status, delay, lane_wait=error.status == 429)
            return Rejected(error.status)

    async def gone(self, item: OutboxItem, destination: Destination, status: int) -> None:
        await self.book.mark_broken(destination.lane, status)
        self._cache.pop(("conversation", destination.lane), None)

    async def delivered(self, item: OutboxItem, destination: Destination, activity_id: str | None) -> None:
        reply = item.payload.get("reply") or {}
        if activity_id and reply.get("record_id"):
            await self.book.store.put(
                REPLIES, activity_id, {"skill": reply.get("skill"), "record_id": reply["record_id"]}
            )


class TeamsNotifier:
    """The Notifier port: commits rows to the outbox before returning; the worker delivers them."""

    def __init__(
        self,
        outbox: Outbox,
        book: ConversationBook,
        *,
        directory: Directory | None = None,
        worker: OutboxWorker | None = None,
    ) -> None:
        self.outbox = outbox
        self.book = book
        self.directory = directory
        self.worker = worker

    async def post(self, target: str, reply: Reply, *, key: str, priority: Priority = Priority.NORMAL) -> str:
        match = _TARGET.match(target)
        if match is None:
            raise ValueError(
                f"unknown notifier target {target!r}: use unit:, role:<role>@<unit>, user: or conversation:"
            )
        if not key or len(key) > 512:
            raise ValueError("a notifier key must be 1 to 512 characters")
        body = {"reply": reply_to_json(reply)}
        parts: list[tuple[str, dict[str, Any]]]
        if match.group(3):
            role, unit = match.group(3), match.group(4)
            people = list(self.directory.staff(unit=unit, role=role)) if self.directory is not None else []
            mentions = []
            personal: list[tuple[str, dict[str, Any]]] = []
            for person in people:
                chat = await self.book.personal_chat(person.aad_object_id)
                mention_id = chat["user_id"] if chat and chat.get("user_id") else person.aad_object_id
                mentions.append({"id": mention_id, "name": person.name or (chat or {}).get("name") or role})
                if chat is not None:
                    personal.append((f"user:{person.aad_object_id}", body))
            parts = [(f"unit:{unit}", {**body, "mentions": mentions}), *personal]
        else:
            parts = [(target, body)]
        await self.outbox.enqueue(key, parts, priority=int(priority))
        if self.worker is not None:
            self.worker.wake()
        return key

    async def update(self, message_ref: str, reply: Reply) -> None:
        new = reply_to_json(reply)
        await self.outbox.update(message_ref, lambda payload: {**payload, "reply": new})
        if self.worker is not None:
            self.worker.wake()

    async def delete(self, message_ref: str) -> None:
        await self.outbox.delete(message_ref)
        if self.worker is not None:
            self.worker.wake()


@dataclass(slots=True)
class Delivery:
    """The outbox, its courier and worker, and the Notifier on top: what the host starts and stops."""

    outbox: Outbox
    book: ConversationBook
    courier: TeamsCourier
    connector: AiohttpConnector
    worker: OutboxWorker
    notifier: TeamsNotifier
    tokens: BotFrameworkTokens | None = None
    started: bool = False

    def start(self) -> None:
        """Start draining (the web app does; CLI commands only commit rows for a running bot to send)."""
        if not self.started:
            self.worker.start()
            self.started = True

    async def close(self) -> None:
        if self.started:
            await self.worker.stop()
            self.started = False
        await self.connector.close()
        if self.tokens is not None:
            self.tokens.close()


def build_delivery(settings: Settings, store: SqlStore, *, directory: Directory | None = None) -> Delivery:
    """Wire the outbox on the store's database, with the connector's credentials from settings."""
    outbox = Outbox(store.engine, bot_limits=global_limits(settings.outbox_global_rate))
    book = ConversationBook(store)
    tokens = None
    if settings.app_id:
        from botbuilder.integration.aiohttp.configuration_service_client_credential_factory import (
            ConfigurationServiceClientCredentialFactory,
        )
        from botframework.connector.auth import AuthenticationConstants

        from bot.teams.adapter import CachingCredentialsFactory, bot_configuration

        tenant = settings.app_tenant_id or AuthenticationConstants.DEFAULT_CHANNEL_AUTH_TENANT
        tokens = BotFrameworkTokens(
            CachingCredentialsFactory(ConfigurationServiceClientCredentialFactory(bot_configuration(settings))),
            settings.app_id,
            login_endpoint=AuthenticationConstants.TO_CHANNEL_FROM_BOT_LOGIN_URL_PREFIX + tenant,
            scope=AuthenticationConstants.TO_CHANNEL_FROM_BOT_OAUTH_SCOPE,
            timeout_s=settings.outbox_send_timeout_s,
        )
    connector = AiohttpConnector(tokens or no_token, timeout_s=settings.outbox_send_timeout_s)
    courier = TeamsCourier(book, connector, directory=directory, fallback_channel=settings.fallback_channel)
    worker = OutboxWorker(outbox, courier, lease_s=settings.outbox_lease_s, poll_s=settings.outbox_poll_s)
    connector.user_agent = f"Wardline (outbox {worker.owner[:8]})"
    notifier = TeamsNotifier(outbox, book, directory=directory, worker=worker)
    return Delivery(outbox, book, courier, connector, worker, notifier, tokens)
