"""Property-based tests over real HTTP to /api/messages: never a 500, a crashed turn or a partial write.

The bot and a fake connector run on loopback in a background thread with their own event loop, so hypothesis can
drive plain synchronous HTTP requests at them.
"""

from __future__ import annotations

import asyncio
import copy
import http.client
import json
import logging
import threading
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot.app import SERVICES, create_app
from bot.teams.handler import CONVERSATIONS
from tests.bot.conftest import bot_settings, serve
from tests.fakes.teams import FakeConnector, feedback_invoke, install_update, teams_message

FUZZ = settings(
    max_examples=120,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
ANSWERED = {200, 201, 501}  # a turn ran (501: an invoke this bot does not implement)
REFUSED = {400, 403, 413, 415}  # refused before anything acted on it


class TurnErrors(logging.Handler):
    """Collects ERROR records from the bot: a turn that crashed logs "turn failed"."""

    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


class LiveBot:
    """The bot and its fake connector on loopback, driven from the test thread."""

    def __init__(
        self,
        loop: asyncio.AbstractEventLoop,
        port: int,
        connector: FakeConnector,
        app: web.Application,
        errors: TurnErrors,
    ) -> None:
        self.loop = loop
        self.port = port
        self.connector = connector
        self.app = app
        self.errors = errors

    def __repr__(self) -> str:  # hypothesis prints the fixture in a falsifying example
        return f"LiveBot(port={self.port})"

    def run(self, coroutine: Any) -> Any:
        future: Future[Any] = asyncio.run_coroutine_threadsafe(coroutine, self.loop)
        return future.result(timeout=60)

    def post(self, body: bytes, content_type: str = "application/json") -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
        try:
            connection.request("POST", "/api/messages", body=body, headers={"Content-Type": content_type})
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def healthy(self) -> bool:
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/healthz")
            return connection.getresponse().status == 200
        finally:
            connection.close()

    def references(self) -> list[tuple[str, dict[str, Any]]]:
        store = self.app[SERVICES].store
        result: list[tuple[str, dict[str, Any]]] = self.run(store.scan(CONVERSATIONS))
        return result


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveBot]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    errors = TurnErrors()
    logging.getLogger("bot").addHandler(errors)

    async def start() -> tuple[LiveBot, list[web.AppRunner]]:
        connector = FakeConnector()
        connector_runner, url = await serve(connector.app())
        connector.url = url + "/"
        app = create_app(bot_settings(Path(tmp_path_factory.mktemp("fuzz"))))
        runner, bot_url = await serve(app)
        for _ in range(600):
            if SERVICES in app and app[SERVICES].library.retriever.chunks:
                break
            await asyncio.sleep(0.05)
        return LiveBot(loop, int(bot_url.rsplit(":", 1)[1]), connector, app, errors), [runner, connector_runner]

    bot, runners = asyncio.run_coroutine_threadsafe(start(), loop).result(timeout=120)
    yield bot
    for runner in runners:
        asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(timeout=60)
    logging.getLogger("bot").removeHandler(errors)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(timeout=10)
    loop.close()


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=4),
    max_leaves=12,
)


PLACEHOLDER_URL = "http://127.0.0.1:9/"  # swapped for the live fake connector's URL at request time
_TEMPLATES = (
    teams_message("What MAP do we target in septic shock?", PLACEHOLDER_URL),
    teams_message("help", PLACEHOLDER_URL, kind="channel"),
    teams_message("", PLACEHOLDER_URL, value={"verb": "x"}),
    install_update(PLACEHOLDER_URL),
    feedback_invoke("r-1", "like", PLACEHOLDER_URL, "ok"),
)


_FIELDS = (
    "type", "text", "id", "serviceUrl", "from", "conversation", "recipient", "entities", "channelData", "value",
    "locale", "name", "replyToId", "membersAdded", "action", "textFormat", "attachments", "timestamp",
)  # fmt: skip
_NESTED = (
    ("from", "id"), ("from", "aadObjectId"), ("conversation", "id"), ("conversation", "conversationType"),
    ("recipient", "id"), ("channelData", "tenant"), ("channelData", "team"), ("value", "action"),
    ("value", "actionValue"),
)  # fmt: skip


@st.composite
def mutated_activities(draw: st.DrawFn) -> dict[str, Any]:
    """A real Teams activity with a few fields deleted or replaced by arbitrary JSON."""
    activity = copy.deepcopy(draw(st.sampled_from(_TEMPLATES)))
    for _ in range(draw(st.integers(1, 3))):
        if draw(st.booleans()):
            key = draw(st.sampled_from(_FIELDS))
            if draw(st.booleans()):
                activity.pop(key, None)
            else:
                activity[key] = copy.deepcopy(draw(json_values))
        else:
            outer, inner = draw(st.sampled_from(_NESTED))
            holder = activity.get(outer)
            if isinstance(holder, dict):
                holder[inner] = copy.deepcopy(draw(json_values))
            elif draw(st.booleans()):
                activity[outer] = {inner: copy.deepcopy(draw(json_values))}
        if draw(st.booleans()) and isinstance(activity.get("entities"), list) and activity["entities"]:
            entity = activity["entities"][0]
            if isinstance(entity, dict):
                entity[draw(st.sampled_from(("type", "mentioned", "text")))] = copy.deepcopy(draw(json_values))
    return activity


def check(bot: LiveBot, status: int, body: bytes, before_refs: Any, before_sent: int) -> None:
    assert status != 500 and status in ANSWERED | REFUSED, (status, body[:200])
    assert b"Traceback" not in body
    if status in REFUSED:
        assert bot.references() == before_refs, "a refused request changed a stored reference"
        assert len(bot.connector.sent) == before_sent, "a refused request reached the connector"
    crashed = [r.getMessage() for r in bot.errors.records]
    bot.errors.records.clear()
    assert crashed == [], crashed


@FUZZ
@given(activity=mutated_activities())
def test_mutated_teams_activities_never_crash(live: LiveBot, activity: dict[str, Any]) -> None:
    body = json.dumps(activity).replace(PLACEHOLDER_URL, live.connector.url)
    before_refs, before_sent = live.references(), len(live.connector.sent)
    status, answer = live.post(body.encode())
    check(live, status, answer, before_refs, before_sent)


@FUZZ
@given(body=json_values)
def test_arbitrary_json_is_refused_cleanly(live: LiveBot, body: Any) -> None:
    before_refs, before_sent = live.references(), len(live.connector.sent)
    status, answer = live.post(json.dumps(body).encode())
    assert status in REFUSED, (status, body)
    check(live, status, answer, before_refs, before_sent)


@FUZZ
@given(
    raw=st.binary(max_size=300) | st.text(max_size=100).map(str.encode),
    content_type=st.sampled_from(
        [
            "application/json",
            "application/json; charset=utf-8",
            "application/json; charset=latin-1",
            "application/json; charset=utf-16",
            "application/json; charset=nope",
            "application/json; charset=",
            "text/plain; x=application/json",
            "application/jsonx",
            "",
        ]
    ),
)
def test_arbitrary_bytes_and_content_types_are_refused_cleanly(live: LiveBot, raw: bytes, content_type: str) -> None:
    before_refs, before_sent = live.references(), len(live.connector.sent)
    status, answer = live.post(raw, content_type)
    assert status in REFUSED, (status, raw, content_type)
    check(live, status, answer, before_refs, before_sent)


def test_deeply_nested_json_is_400_and_the_bot_survives(live: LiveBot) -> None:
    for depth in (1_000, 5_000, 100_000):
        nested = b'{"type":"message","value":' + b"[" * depth + b"]" * depth + b"}"
        status, _ = live.post(nested)
        assert status == 400, depth
    assert live.healthy()
