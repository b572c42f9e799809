"""A throwaway Teams bot that proves the e2e harness: one canned, cited, AI-labelled answer with feedback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any, ClassVar

from aiohttp import web
from botbuilder.core import ActivityHandler, InvokeResponse, TurnContext
from botbuilder.integration.aiohttp import CloudAdapter, ConfigurationBotFrameworkAuthentication
from botbuilder.schema import Activity, ActivityTypes, ConversationParameters, Entity

CANNED_ANSWER = "Target a MAP of 65 mmHg [1]."
CITATION_NAME = "Sepsis protocol v7 - Vasopressors"
CITATION_URL = "https://protocols.example.org/sepsis/v7#vasopressors"
CITATION_ABSTRACT = "Start norepinephrine when MAP stays below 65 mmHg after fluid resuscitation."
STREAM_TRIGGER = "stream"
ANNOUNCE_TRIGGER = "announce"
ANNOUNCEMENT = "Wardline is now installed in this channel."
STREAM_CHUNKS = ("Checking the sepsis protocol", "Checking the sepsis protocol... found it.")

ActivityJson = dict[str, Any]


class JsonEntity(Entity):  # type: ignore[misc]
    """An Activity entity serialised verbatim: botbuilder's `Entity` would only keep `type`."""

    _attribute_map: ClassVar[dict[str, dict[str, str]]] = {
        "type": {"key": "type", "type": "str"},
        "additional_properties": {"key": "", "type": "{object}"},
    }

    def __init__(self, payload: dict[str, Any]) -> None:
        fields = dict(payload)
        super().__init__(type=fields.pop("type"))
        self.additional_properties = fields


def ai_message_entity() -> JsonEntity:
    """The one root entity with the AI label and a single citation (shape: shared/DOMAIN.md)."""
    return JsonEntity(
        {
            "type": "https://schema.org/Message",
            "@type": "Message",
            "@context": "https://schema.org",
            "additionalType": ["AIGeneratedContent"],
            "citation": [
                {
                    "@type": "Claim",
                    "position": 1,
                    "appearance": {
                        "@type": "DigitalDocument",
                        "name": CITATION_NAME,
                        "url": CITATION_URL,
                        "abstract": CITATION_ABSTRACT,
                        "keywords": ["sepsis", "vasopressors"],
                    },
                }
            ],
        }
    )


def canned_answer(*, stream_id: str | None = None) -> Activity:
    """The stub's answer to any message: text with `[1]`, AI label, citation and the feedback loop."""
    entities: list[Entity] = [ai_message_entity()]
    if stream_id is not None:
        entities.append(JsonEntity({"type": "streaminfo", "streamId": stream_id, "streamType": "final"}))
    return Activity(
        type=ActivityTypes.message,
        text=CANNED_ANSWER,
        entities=entities,
        channel_data={"feedbackLoop": {"type": "default"}},
    )


class StubBot(ActivityHandler):  # type: ignore[misc]
    """Answers every message with the canned answer and accepts feedback invokes."""

    async def on_message_activity(self, turn_context: TurnContext) -> None:
        text = (turn_context.activity.text or "").strip().lower()
        if STREAM_TRIGGER in text:
            await self._stream_answer(turn_context)
            return
        if ANNOUNCE_TRIGGER in text and turn_context.activity.conversation.conversation_type == "channel":
            await self._post_new_thread(turn_context)
            return
        await turn_context.send_activity(canned_answer())

    async def _post_new_thread(self, turn_context: TurnContext) -> None:
        """A proactive channel post (a new thread), as alerts will be sent."""
        incoming = turn_context.activity
        channel_id = (incoming.channel_data or {}).get("channel", {}).get("id")
        parameters = ConversationParameters(
            is_group=True,
            channel_data={"channel": {"id": channel_id}},
            activity=Activity(type=ActivityTypes.message, text=ANNOUNCEMENT),
        )

        async def posted(_: TurnContext) -> None:
            return None

        await turn_context.adapter.create_conversation(
            "", posted, parameters, channel_id=incoming.channel_id, service_url=incoming.service_url
        )

    async def _stream_answer(self, turn_context: TurnContext) -> None:
        """Teams streaming protocol: informative update, cumulative updates, then a final message."""
        first = await turn_context.send_activity(
            Activity(
                type=ActivityTypes.typing,
                text=STREAM_CHUNKS[0],
                entities=[JsonEntity({"type": "streaminfo", "streamType": "informative", "streamSequence": 1})],
            )
        )
        stream_id = first.id if first is not None else None
        for sequence, chunk in enumerate(STREAM_CHUNKS[1:], start=2):
            await turn_context.send_activity(
                Activity(
                    type=ActivityTypes.typing,
                    text=chunk,
                    entities=[
                        JsonEntity(
                            {
                                "type": "streaminfo",
                                "streamId": stream_id,
                                "streamType": "streaming",
                                "streamSequence": sequence,
                            }
                        )
                    ],
                )
            )
        await turn_context.send_activity(canned_answer(stream_id=stream_id))

    async def on_invoke_activity(self, turn_context: TurnContext) -> InvokeResponse:
        if turn_context.activity.name == "message/submitAction":
            # Teams wants 200 with an empty body; the route below writes no body for body=None.
            return InvokeResponse(status=200)
        return await super().on_invoke_activity(turn_context)


@dataclass(frozen=True)
class Answer:
    """The HTTP answer the stub gave to one inbound activity."""

    activity_id: str | None
    status: int
    body: bytes


@dataclass
class InboundLog:
    """Every activity the stub received (the raw JSON the client posted) and how it answered."""

    activities: list[ActivityJson] = field(default_factory=list)
    answers: list[Answer] = field(default_factory=list)
    _changed: asyncio.Condition = field(default_factory=asyncio.Condition)

    async def add(self, activity: ActivityJson) -> None:
        async with self._changed:
            self.activities.append(activity)
            self._changed.notify_all()

    def answer_to(self, activity: ActivityJson) -> Answer:
        return next(a for a in self.answers if a.activity_id == activity.get("id"))

    async def wait_for(
        self,
        predicate: Callable[[ActivityJson], bool],
        timeout: float = 10.0,  # noqa: ASYNC109 - seconds, like the page helpers
    ) -> ActivityJson:
        """The first received activity matching `predicate`, waiting up to `timeout` seconds for it."""

        def find() -> ActivityJson | None:
            return next((a for a in self.activities if predicate(a)), None)

        async with self._changed:
            try:
                await asyncio.wait_for(self._changed.wait_for(lambda: find() is not None), timeout)
            except TimeoutError:
                kinds = [(a.get("type"), a.get("name")) for a in self.activities]
                raise AssertionError(f"no matching activity within {timeout}s; received {kinds}") from None
        found = find()
        assert found is not None
        return found


def create_stub_app(log: InboundLog) -> web.Application:
    """The aiohttp app serving `POST /api/messages` anonymously (no app id), as in local development."""
    adapter = CloudAdapter(ConfigurationBotFrameworkAuthentication(_AnonymousConfig()))
    bot = StubBot()

    async def messages(request: web.Request) -> web.Response:
        body: ActivityJson = await request.json()
        await log.add(body)
        activity = Activity().deserialize(body)
        invoke = await adapter.process_activity(request.headers.get("Authorization", ""), activity, bot.on_turn)
        if invoke is None:
            response = web.Response(status=201)
        elif invoke.body is None:
            # CloudAdapter.process would serialise a missing body as the JSON text `null`.
            response = web.Response(status=invoke.status)
        else:
            response = web.json_response(invoke.body, status=invoke.status)
        log.answers.append(Answer(body.get("id"), response.status, response.body or b""))  # type: ignore[arg-type]
        return response

    app = web.Application()
    app.router.add_post("/api/messages", messages)
    return app


class _AnonymousConfig:
    APP_ID = ""
    APP_PASSWORD = ""
    APP_TYPE = "MultiTenant"
    APP_TENANTID = ""


@dataclass(frozen=True)
class RunningStubBot:
    """A stub bot listening on loopback."""

    endpoint: str
    inbound: InboundLog


@asynccontextmanager
async def run_stub_bot(port: int | None = None) -> AsyncIterator[RunningStubBot]:
    """Serve the stub bot on 127.0.0.1 for the duration of the context."""
    inbound = InboundLog()
    runner = web.AppRunner(create_stub_app(inbound))
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port or 0)
    await site.start()
    host, bound_port = runner.addresses[0][:2]
    try:
        yield RunningStubBot(endpoint=f"http://{host}:{bound_port}/api/messages", inbound=inbound)
    finally:
        await runner.cleanup()
