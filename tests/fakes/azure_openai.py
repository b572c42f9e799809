"""A real fake Azure OpenAI service on loopback (aiohttp), for tests that must go over real sockets.

openai 3.x is built on httpx2, which respx / pytest-httpx cannot intercept, so this module serves the two REST calls
Wardline makes on 127.0.0.1 with an OS-chosen port:

- ``POST /openai/deployments/{deployment}/chat/completions?api-version=...``: a ``chat.completion`` JSON body, or with
  ``"stream": true`` a real SSE stream of ``chat.completion.chunk`` events ending with ``data: [DONE]`` (the first
  chunk carries Azure's ``prompt_filter_results`` and no choices, as the real service does).
- ``POST /openai/deployments/{deployment}/embeddings?api-version=...``: one deterministic vector per input (a hashed
  bag of words, unit length, ``fake.dimensions`` long), as floats or as base64 float32 (the openai client asks for
  base64 unless told otherwise).

Requests without the right ``api-key`` header (or ``Authorization: Bearer <fake.bearer_token>``) get 401, without
``api-version`` 404, to an unknown deployment (when ``fake.deployments`` is set) 404.

Use it through the ``fake_azure_openai`` fixture (import it into a test module or a conftest, or list
``"tests.fakes.azure_openai"`` in ``pytest_plugins`` of the root ``tests/conftest.py``; pytest refuses
``pytest_plugins`` in nested conftests)::

    from tests.fakes.azure_openai import Fail, Ok, fake_azure_openai  # noqa: F401 (the fixture)

    async def test_something(fake_azure_openai):
        fake = fake_azure_openai
        settings = fake.settings(llm_max_attempts=2)     # bot Settings aimed at the fake (key "test", "chat", "embed")
        fake.answer = "Give 30 mL/kg [1]."               # or a callable: lambda body: "..." (body = request JSON)
        fake.script("chat", [Fail(429, retry_after=1), Ok()])
        ...
        assert len(fake.requests_for("chat")) == 2
        assert "MRN" not in fake.requests_for("chat")[-1].json["messages"][-1]["content"]

Or without the fixture: ``async with FakeAzureOpenAI() as fake: ...``.

Knobs on the fake (all may be changed at any time during a test):

- ``url``: the endpoint (``http://127.0.0.1:PORT``) for ``AZURE_OPENAI_ENDPOINT`` / ``Settings.openai_endpoint``.
- ``answer``: the chat answer, a string or ``Callable[[dict], str]`` receiving the request JSON.
- ``delay``: seconds to wait before answering every request (on top of a scripted response's own ``delay``).
- ``chunk_delay``: seconds between stream chunks. ``chunker``: how an answer is cut into stream pieces (default:
  words with their trailing space, so the pieces concatenate back to the answer).
- ``dimensions``: embedding length (default 64). ``embed(text)`` gives the vector the fake would return for a text.
- ``reverse_embeddings``: answer embedding items in reverse index order (clients must sort by ``index``).
- ``api_key`` (default ``"test"``), ``bearer_token`` (default ``"test-token"``): accepted credentials.
- ``deployments``: a set of known deployment names, or None (default) to accept any.

Scripting: ``fake.script(kind, [response, ...])`` queues responses for ``kind`` ("chat" or "embeddings"); each request
of that kind takes the next one, and once the queue is empty requests are answered normally (``Ok()``). Responses:

- ``Ok(text=None, delay=0, finish_reason="stop", pieces=None)``: a success; ``text`` overrides ``fake.answer``,
  ``pieces`` the stream pieces.
- ``Fail(status, retry_after=None, retry_after_ms=None, code=None, message=None, delay=0, headers=None, inner=None)``:
  an Azure style error body ``{"error": {"code", "message", "innererror"?}}`` with optional ``Retry-After`` /
  ``retry-after-ms`` headers;
  ``content_filter()`` builds the 400 the content filter answers with.
- ``Drop(delay=0)``: close the connection without any answer.
- ``BrokenStream(after=1, how="abort" | "error" | "stall", stall_s=5.0)``: a stream that sends the first ``after``
  pieces of the answer and then the connection is cut ("abort"), an SSE error event is sent ("error"), or nothing more is sent
  for ``stall_s`` seconds ("stall"). For a non-streaming request it behaves like ``Drop()``.

Recording: ``fake.requests`` lists every request received, in order, as ``Received`` records (``kind``,
``deployment``, ``method``, ``path``, ``query``, ``headers`` with lower-case names, ``json``, ``at`` =
``time.monotonic()`` on arrival); ``requests_for(kind)`` filters them; ``pending(kind)`` lists unused scripted
responses; ``reset()`` clears scripts and records.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import math
import re
import struct
import time
import uuid
from collections import deque
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import pytest
from aiohttp import web

__all__ = [
    "BrokenStream",
    "Drop",
    "Fail",
    "FakeAzureOpenAI",
    "Ok",
    "Received",
    "content_filter",
    "fake_azure_openai",
]

_KINDS = ("chat", "embeddings")


@dataclass(frozen=True, slots=True)
class Ok:
    """A successful answer (the default once a script runs out)."""

    text: str | None = None
    delay: float = 0.0
    finish_reason: str = "stop"
    pieces: tuple[str, ...] | list[str] | None = None


@dataclass(frozen=True, slots=True)
class Fail:
    """An HTTP error with Azure's error body and optional Retry-After / retry-after-ms headers."""

    status: int
    retry_after: float | None = None
    retry_after_ms: float | None = None
    code: str | None = None
    message: str | None = None
    delay: float = 0.0
    headers: Mapping[str, str] | None = None
    inner: Mapping[str, Any] | None = None


@dataclass(frozen=True, slots=True)
class Drop:
    """Close the connection without answering."""

    delay: float = 0.0


@dataclass(frozen=True, slots=True)
class BrokenStream:
    """A stream that breaks after `after` content pieces."""

    after: int = 1
    how: Literal["abort", "error", "stall"] = "abort"
    stall_s: float = 5.0
    delay: float = 0.0


Response = Ok | Fail | Drop | BrokenStream


def content_filter(
    message: str = "The response was filtered due to the prompt triggering content management policy.",
) -> Fail:
    """The 400 Azure answers when the prompt trips the content filter."""
    return Fail(
        400,
        code="content_filter",
        message=message,
        inner={
            "code": "ResponsibleAIPolicyViolation",
            "content_filter_result": {"self_harm": {"filtered": True, "severity": "medium"}},
        },
    )


@dataclass(slots=True)
class Received:
    """One request as the fake saw it."""

    kind: str  # "chat", "embeddings" or "other"
    deployment: str
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    json: Any
    at: float = field(default_factory=time.monotonic)

    @property
    def stream(self) -> bool:
        return isinstance(self.json, dict) and bool(self.json.get("stream"))


def _words(text: str) -> list[str]:
    return re.findall(r"\S+\s*", text)


class FakeAzureOpenAI:
    """The fake service; see the module docstring for its API."""

    def __init__(self, *, host: str = "127.0.0.1", dimensions: int = 64) -> None:
        self.host = host
        self.port = 0
        self.answer: str | Callable[[dict[str, Any]], str] = "This is the fake answer."
        self.delay = 0.0
        self.chunk_delay = 0.0
        self.chunker: Callable[[str], list[str]] = _words
        self.dimensions = dimensions
        self.reverse_embeddings = False
        self.api_key = "test"
        self.bearer_token = "test-token"
        self.deployments: set[str] | None = None
        self.requests: list[Received] = []
        self._scripts: dict[str, deque[Response]] = {kind: deque() for kind in _KINDS}
        self._runner: web.AppRunner | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    async def start(self) -> FakeAzureOpenAI:
        app = web.Application()
        app.router.add_post("/openai/deployments/{deployment}/chat/completions", self._chat)
        app.router.add_post("/openai/deployments/{deployment}/embeddings", self._embeddings)
        app.router.add_route("*", "/{tail:.*}", self._unknown)
        # handler_cancellation: a client that gave up (timeout) cancels the sleeping handler, so shutdown is quick.
        self._runner = web.AppRunner(app, handler_cancellation=True, shutdown_timeout=1.0, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, 0)
        await site.start()
        self.port = int(self._runner.addresses[0][1])
        return self

    async def close(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeAzureOpenAI:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    # -- test API ----------------------------------------------------------------------------------------------

    def script(self, kind: str, responses: Iterable[Response]) -> None:
        """Queue responses for the next requests of one kind ("chat" or "embeddings")."""
        if kind not in self._scripts:
            raise ValueError(f"kind must be one of {_KINDS}, got {kind!r}")
        self._scripts[kind].extend(responses)

    def pending(self, kind: str) -> list[Response]:
        """Scripted responses not used yet."""
        return list(self._scripts[kind])

    def requests_for(self, kind: str) -> list[Received]:
        return [r for r in self.requests if r.kind == kind]

    def reset(self) -> None:
        self.requests.clear()
        for queue in self._scripts.values():
            queue.clear()

    def settings(self, **overrides: Any) -> Any:
        """bot.settings.Settings pointed at this fake (chat deployment "chat", embeddings "embed"), with overrides."""
        from bot.settings import Settings

        base = {
            "openai_endpoint": self.url,
            "openai_api_key": self.api_key,
            "openai_chat_deployment": "chat",
            "openai_embedding_deployment": "embed",
        }
        return Settings().replace(**{**base, **overrides})

    def embed(self, text: str) -> list[float]:
        """The vector this fake returns for a text: hashed bag of words, unit length."""
        vector = [0.0] * self.dimensions
        for word in re.findall(r"\w+", text.lower()):
            digest = hashlib.blake2b(word.encode(), digest_size=4).digest()
            vector[int.from_bytes(digest, "big") % self.dimensions] += 1.0
        norm = math.sqrt(sum(v * v for v in vector))
        if norm == 0:
            vector[0], norm = 1.0, 1.0
        return [v / norm for v in vector]

    def answer_for(self, body: dict[str, Any]) -> str:
        return self.answer(body) if callable(self.answer) else self.answer

    # -- handlers ----------------------------------------------------------------------------------------------

    async def _record(self, request: web.Request, kind: str) -> tuple[Received, web.StreamResponse | None]:
        raw = await request.read()
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw.decode("utf-8", "replace")
        received = Received(
            kind=kind,
            deployment=request.match_info.get("deployment", ""),
            method=request.method,
            path=request.path,
            query=dict(request.query),
            headers={k.lower(): v for k, v in request.headers.items()},
            json=body,
        )
        self.requests.append(received)
        return received, self._check(request, received)

    def _check(self, request: web.Request, received: Received) -> web.StreamResponse | None:
        key = request.headers.get("api-key")
        authorization = request.headers.get("Authorization", "")
        if not (key == self.api_key or authorization == f"Bearer {self.bearer_token}"):
            return _error(
                401,
                "401",
                "Access denied due to invalid subscription key or wrong API endpoint. Make sure to provide a valid "
                "key for an active subscription and use a correct regional API endpoint for your resource.",
            )
        if "api-version" not in request.query:
            return _error(404, "404", "Resource not found")
        if self.deployments is not None and received.deployment not in self.deployments:
            return _error(
                404,
                "DeploymentNotFound",
                "The API deployment for this resource does not exist. If you created the deployment within the last "
                "5 minutes, please wait a moment and try again.",
            )
        if not isinstance(received.json, dict):
            return _error(400, "BadRequest", "The request body must be a JSON object")
        return None

    def _next(self, kind: str) -> Response:
        queue = self._scripts[kind]
        return queue.popleft() if queue else Ok()

    async def _chat(self, request: web.Request) -> web.StreamResponse:
        received, refusal = await self._record(request, "chat")
        if refusal is not None:
            return refusal
        scripted = self._next("chat")
        await asyncio.sleep(self.delay + scripted.delay)
        if isinstance(scripted, Fail):
            return _fail(scripted)
        if isinstance(scripted, Drop) or (isinstance(scripted, BrokenStream) and not received.stream):
            return _drop(request)
        body: dict[str, Any] = received.json
        if isinstance(scripted, BrokenStream):
            return await self._stream(request, body, self.chunker(self.answer_for(body)), broken=scripted)
        text = scripted.text if scripted.text is not None else self.answer_for(body)
        if received.stream:
            pieces = list(scripted.pieces) if scripted.pieces is not None else self.chunker(text)
            return await self._stream(request, body, pieces, finish_reason=scripted.finish_reason)
        return web.json_response(self._completion(body, received.deployment, text, scripted.finish_reason))

    def _completion(self, body: dict[str, Any], deployment: str, text: str, finish_reason: str) -> dict[str, Any]:
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in body.get("messages", []))
        completion_tokens = len(text.split())
        return {
            "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": "gpt-4o-2024-11-20",
            "system_fingerprint": "fp_fake",
            "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _no_filter()}],
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": text or None, "refusal": None},
                    "finish_reason": finish_reason,
                    "logprobs": None,
                    "content_filter_results": _no_filter(),
                }
            ],
            "usage": {
                "prompt_tokens": prompt_tokens,
                "completion_tokens": completion_tokens,
                "total_tokens": prompt_tokens + completion_tokens,
            },
        }

    async def _stream(
        self,
        request: web.Request,
        body: dict[str, Any],
        pieces: list[str],
        *,
        finish_reason: str = "stop",
        broken: BrokenStream | None = None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(
            status=200, headers={"Content-Type": "text/event-stream; charset=utf-8", "Cache-Control": "no-cache"}
        )
        await response.prepare(request)
        ident = f"chatcmpl-{uuid.uuid4().hex[:24]}"
        created = int(time.time())

        def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
            return {
                "id": ident,
                "object": "chat.completion.chunk",
                "created": created,
                "model": "gpt-4o-2024-11-20",
                "system_fingerprint": "fp_fake",
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
            }

        async def send(payload: dict[str, Any] | str) -> None:
            data = payload if isinstance(payload, str) else json.dumps(payload, ensure_ascii=False)
            await response.write(f"data: {data}\n\n".encode())

        # Azure's first chunk: prompt filter results, no choices.
        await send(
            {
                "id": "",
                "object": "",
                "created": 0,
                "model": "",
                "choices": [],
                "prompt_filter_results": [{"prompt_index": 0, "content_filter_results": _no_filter()}],
            }
        )
        await send(chunk({"role": "assistant", "content": ""}))
        for number, piece in enumerate(pieces):
            if broken is not None and number >= broken.after:
                break
            if self.chunk_delay:
                await asyncio.sleep(self.chunk_delay)
            await send(chunk({"content": piece}))
        if broken is not None:
            if broken.how == "error":
                await send({"error": {"code": "server_error", "message": "The server had an error while streaming."}})
                await response.write_eof()
                return response
            if broken.how == "stall":
                await asyncio.sleep(broken.stall_s)
            return _drop(request, response)
        await send(chunk({}, finish_reason))
        await send("[DONE]")
        await response.write_eof()
        return response

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        received, refusal = await self._record(request, "embeddings")
        if refusal is not None:
            return refusal
        scripted = self._next("embeddings")
        await asyncio.sleep(self.delay + scripted.delay)
        if isinstance(scripted, Fail):
            return _fail(scripted)
        if isinstance(scripted, Drop | BrokenStream):
            return _drop(request)
        body: dict[str, Any] = received.json
        inputs = body.get("input")
        if isinstance(inputs, str):
            inputs = [inputs]
        if not isinstance(inputs, list) or not inputs or not all(isinstance(i, str) and i for i in inputs):
            return _error(400, "invalid_request_error", "'input' must be a non-empty string or list of strings")
        as_base64 = body.get("encoding_format") == "base64"
        items = []
        for index, text in enumerate(inputs):
            vector = self.embed(text)
            encoded: Any = (
                base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii") if as_base64 else vector
            )
            items.append({"object": "embedding", "index": index, "embedding": encoded})
        if self.reverse_embeddings:
            items.reverse()
        tokens = sum(len(t.split()) for t in inputs)
        return web.json_response(
            {
                "object": "list",
                "data": items,
                "model": "text-embedding-3-small",
                "usage": {"prompt_tokens": tokens, "total_tokens": tokens},
            }
        )

    async def _unknown(self, request: web.Request) -> web.StreamResponse:
        await self._record(request, "other")
        return _error(404, "404", "Resource not found")


def _no_filter() -> dict[str, Any]:
    return {
        category: {"filtered": False, "severity": "safe"} for category in ("hate", "self_harm", "sexual", "violence")
    }


def _error(status: int, code: str, message: str, headers: Mapping[str, str] | None = None) -> web.Response:
    return web.json_response({"error": {"code": code, "message": message}}, status=status, headers=headers)


def _fail(fail: Fail) -> web.Response:
    headers: dict[str, str] = dict(fail.headers or {})
    if fail.retry_after is not None:
        value = fail.retry_after
        headers["Retry-After"] = str(int(value)) if float(value).is_integer() else str(value)
    if fail.retry_after_ms is not None:
        headers["retry-after-ms"] = str(int(fail.retry_after_ms))
    error: dict[str, Any] = {
        "code": fail.code or str(fail.status),
        "message": fail.message or f"Scripted failure {fail.status}",
    }
    if fail.status == 400 and fail.code == "content_filter":
        error["param"] = "prompt"
        error["status"] = 400
    if fail.inner is not None:
        error["innererror"] = dict(fail.inner)
    return web.json_response({"error": error}, status=fail.status, headers=headers)


def _drop(request: web.Request, response: web.StreamResponse | None = None) -> web.StreamResponse:
    """Cut the connection; the client sees a broken response (or none at all)."""
    transport = request.transport
    if transport is not None:
        transport.abort()
    return response if response is not None else web.Response(status=204)


@pytest.fixture
async def fake_azure_openai() -> AsyncIterator[FakeAzureOpenAI]:
    """A started FakeAzureOpenAI on 127.0.0.1 (port chosen by the OS), closed after the test."""
    async with FakeAzureOpenAI() as fake:
        yield fake
