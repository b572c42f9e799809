"""A loopback fake Bot Connector and builders for the Activity JSON Teams really sends.

`FakeConnector` records every request the bot makes to `{serviceUrl}/v3/...` and answers like the connector
(ids for sent activities). `teams_message(...)` and friends build inbound activities shaped like Teams' own.
"""

from __future__ import annotations

import itertools
import time
import uuid
from collections import defaultdict
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote

from aiohttp import web

from tests.fakes.teams_contract import problems_with

TENANT = "72f988bf-86f1-41af-91ab-2d7cd011db47"
BOT_ID = "28:00000000-0000-0000-0000-00000000b07a"
USER_ID = "29:1nurse-aad-pairwise-id"
USER_AAD = "6a0f3b1e-0000-4000-8000-000000000001"
PERSONAL_CONVERSATION = "a:1personal-chat-with-nurse"
GROUP_CONVERSATION = "19:group-chat-7w@thread.v2"
CHANNEL_CONVERSATION = "19:7w-ward-channel@thread.tacv2;messageid=1700000000000"


@dataclass
class Sent:
    """One request the bot made to the connector."""

    method: str
    path: str
    body: dict[str, Any]
    response_id: str = ""
    received_at: float = 0.0  # time.monotonic() when the request arrived
    status: int = 200
    user_agent: str = ""

    @property
    def conversation_id(self) -> str:
        """The conversation of `/v3/conversations/{id}/activities[/...]` (empty for create-conversation)."""
        parts = self.path.split("/")
        return unquote(parts[3]) if len(parts) > 4 and parts[2] == "conversations" else ""

    @property
    def activity_id(self) -> str:
        """The activity a PUT or DELETE addresses."""
        parts = self.path.split("/")
        return unquote(parts[5]) if len(parts) > 5 else ""

    @property
    def activity_type(self) -> str:
        return str(self.body.get("type", ""))

    @property
    def text(self) -> str:
        return str(self.body.get("text") or "")

    def entity(self, entity_type: str) -> dict[str, Any] | None:
        for entity in self.body.get("entities") or []:
            if entity.get("type") == entity_type:
                return dict(entity)
        return None


@dataclass
class FakeConnector:
    """Answers /v3/conversations/... like the Bot Connector; `fail_next` scripts error statuses."""

    url: str = ""
    sent: list[Sent] = field(default_factory=list)
    fail_next: list[int] = field(default_factory=list)  # statuses for the next requests (200: pass through)
    violations: list[str] = field(default_factory=list)  # what Teams would reject (tests.fakes.teams_contract)
    # Per conversation: (status, Retry-After seconds or None) for its next requests, e.g. a 429 storm or a 403.
    scripted: dict[str, list[tuple[int, float | None]]] = field(default_factory=lambda: defaultdict(list))
    gone: set[str] = field(default_factory=set)  # conversations that answer 403 (the bot was removed)
    retry_after_s: float = 0.0  # Retry-After on `fail_next` 429s
    _ids: itertools.count[int] = field(default_factory=lambda: itertools.count(1))

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_route("*", "/v3/{tail:.*}", self._handle)
        return app

    async def _handle(self, request: web.Request) -> web.Response:
        received = time.monotonic()
        body = await request.json() if request.can_read_body else {}
        sent = Sent(request.method, request.path, body, received_at=received)
        sent.user_agent = request.headers.get("User-Agent", "")
        self.sent.append(sent)
        if isinstance(body, dict) and "type" in body:
            self.violations.extend(f"{body.get('type')} {request.path}: {p}" for p in problems_with(body))
        status, retry_after = (self.fail_next.pop(0), self.retry_after_s) if self.fail_next else (200, None)
        conversation = sent.conversation_id
        if status == 200 and self.scripted.get(conversation):
            status, retry_after = self.scripted[conversation].pop(0)
        if status == 200 and conversation in self.gone:
            status = 403
        if status != 200:
            sent.status = status
            headers = {"Retry-After": f"{retry_after:g}"} if retry_after is not None and status == 429 else {}
            return web.json_response({"error": {"code": "scripted"}}, status=status, headers=headers)
        if request.method == "DELETE":
            return web.Response(status=200)
        if request.method == "POST" and request.path == "/v3/conversations":
            sent.response_id = f"19:new-{next(self._ids)}@thread.tacv2"
            return web.json_response({"id": sent.response_id, "activityId": str(uuid.uuid4())})
        sent.response_id = f"activity-{next(self._ids)}"
        return web.json_response({"id": sent.response_id})

    def messages(self) -> list[Sent]:
        return [s for s in self.sent if s.activity_type == "message"]

    def typing(self) -> list[Sent]:
        return [s for s in self.sent if s.activity_type == "typing"]

    def clear(self) -> None:
        self.sent.clear()

    def delivered(self) -> list[Sent]:
        """Message posts the connector accepted (not PUT/DELETE, not refused)."""
        return [s for s in self.sent if s.method == "POST" and s.status == 200 and s.activity_type == "message"]

    def receive_times(self) -> dict[str, list[float]]:
        """Per conversation, when each request arrived (accepted or not): what Teams counts against its limits."""
        times: dict[str, list[float]] = defaultdict(list)
        for sent in self.sent:
            if sent.conversation_id:
                times[sent.conversation_id].append(sent.received_at)
        return {k: sorted(v) for k, v in times.items()}


TEAMS_LIMITS: tuple[tuple[int, float], ...] = ((7, 1.0), (8, 2.0), (60, 30.0), (1800, 3600.0))


def limit_breaches(times: list[float], limits: tuple[tuple[int, float], ...] = TEAMS_LIMITS) -> list[str]:
    """Every window in which more requests arrived than a limit allows (empty when the limits held)."""
    breaches = []
    for limit, window in limits:
        start = 0
        for end, at in enumerate(times):
            while at - times[start] >= window:
                start += 1
            if end - start + 1 > limit:
                breaches.append(f"{end - start + 1} requests within {window:g} s (limit {limit})")
                break
    return breaches


def peak_rate(times: list[float], window: float = 1.0) -> int:
    """The most requests that arrived within any `window` seconds."""
    peak, start = 0, 0
    for end, at in enumerate(times):
        while at - times[start] >= window:
            start += 1
        peak = max(peak, end - start + 1)
    return peak


def _conversation(kind: str) -> dict[str, Any]:
    if kind == "personal":
        return {"conversationType": "personal", "tenantId": TENANT, "id": PERSONAL_CONVERSATION}
    if kind == "groupChat":
        return {"isGroup": True, "conversationType": "groupChat", "tenantId": TENANT, "id": GROUP_CONVERSATION}
    return {"isGroup": True, "conversationType": "channel", "tenantId": TENANT, "id": CHANNEL_CONVERSATION}


def teams_message(
    text: str,
    service_url: str,
    *,
    kind: str = "personal",
    locale: str = "en-US",
    value: dict[str, Any] | None = None,
    user_id: str = USER_ID,
    user_name: str = "Kim Nurse",
) -> dict[str, Any]:
    """A message activity as Teams posts it. In channels and group chats the bot is @mentioned."""
    entities: list[dict[str, Any]] = [
        {"locale": locale, "country": "KR", "platform": "Web", "timezone": "Asia/Seoul", "type": "clientInfo"}
    ]
    if kind != "personal":
        mention = "<at>Wardline</at>"
        text = f"{mention} {text}"
        entities.append({"type": "mention", "text": mention, "mentioned": {"id": BOT_ID, "name": "Wardline"}})
    channel_data: dict[str, Any] = {"tenant": {"id": TENANT}}
    if kind == "channel":
        channel_data.update(
            {
                "teamsChannelId": "19:7w-ward-channel@thread.tacv2",
                "teamsTeamId": "19:ward-team@thread.tacv2",
                "channel": {"id": "19:7w-ward-channel@thread.tacv2"},
                "team": {"id": "19:ward-team@thread.tacv2"},
            }
        )
    activity: dict[str, Any] = {
        "text": text,
        "textFormat": "plain",
        "type": "message",
        "timestamp": "2026-11-29T01:02:03.456Z",
        "localTimestamp": "2026-11-29T10:02:03.456+09:00",
        "id": f"1700000{uuid.uuid4().int % 10**9:09d}",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": user_id, "name": user_name, "aadObjectId": USER_AAD},
        "conversation": _conversation(kind),
        "recipient": {"id": BOT_ID, "name": "Wardline"},
        "entities": entities,
        "channelData": channel_data,
        "locale": locale,
        "localTimezone": "Asia/Seoul",
    }
    if value is not None:
        activity["value"] = value
    return activity


def feedback_invoke(reply_to_id: str, reaction: str, service_url: str, comment: str = "") -> dict[str, Any]:
    """The `message/submitAction` invoke Teams sends for thumbs up/down."""
    return {
        "name": "message/submitAction",
        "type": "invoke",
        "timestamp": "2026-11-29T01:03:00.000Z",
        "id": f"f:{uuid.uuid4()}",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": USER_ID, "name": "Kim Nurse", "aadObjectId": USER_AAD},
        "conversation": _conversation("personal"),
        "recipient": {"id": BOT_ID, "name": "Wardline"},
        "entities": [{"locale": "en-US", "country": "KR", "platform": "Web", "type": "clientInfo"}],
        "channelData": {"tenant": {"id": TENANT}, "source": {"name": "message"}, "legacy": {"replyToId": reply_to_id}},
        "replyToId": reply_to_id,
        "value": {
            "actionName": "feedback",
            "actionValue": {"reaction": reaction, "feedback": f'{{"feedbackText":"{comment}"}}'},
        },
        "locale": "en-US",
    }


def install_update(service_url: str, kind: str = "personal") -> dict[str, Any]:
    """The conversationUpdate Teams sends when the app is added to a chat or team."""
    return {
        "membersAdded": [{"id": BOT_ID}],
        "type": "conversationUpdate",
        "timestamp": "2026-11-29T00:59:00.000Z",
        "id": f"c:{uuid.uuid4()}",
        "channelId": "msteams",
        "serviceUrl": service_url,
        "from": {"id": USER_ID, "aadObjectId": USER_AAD},
        "conversation": _conversation(kind),
        "recipient": {"id": BOT_ID, "name": "Wardline"},
        "channelData": {"tenant": {"id": TENANT}},
    }
