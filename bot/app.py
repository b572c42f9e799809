"""The aiohttp application: /api/messages, health probes, and the lifecycle of storage, index and scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from bot.logs import silence_payload_loggers
from bot.scheduler import JobScheduler
from bot.services import Services, build_services
from bot.settings import Settings
from bot.teams import TeamsEndpoint

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)
READY = web.AppKey("ready", asyncio.Event)
ENDPOINT = web.AppKey("endpoint", TeamsEndpoint)


class _Box:
    def __init__(self, value: Any) -> None:
        self.value = value


CREDENTIALS = web.AppKey("credentials", _Box)


def create_app(settings: Settings, *, credentials: Any = None) -> web.Application:
    """The whole bot as one aiohttp app; nothing starts until the app runs.

    `credentials` replaces the outbound Bot Framework credentials factory (tests, or a custom token source).
    """
    silence_payload_loggers()  # whoever configured logging, payload-logging libraries stay quiet
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app[CREDENTIALS] = _Box(credentials)
    app[READY] = asyncio.Event()
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_post("/api/messages", _messages)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    services = await build_services(settings)
    app[SERVICES] = services
    await services.library.load()  # serve what the store already holds while the folder is re-read
    app[ENDPOINT] = TeamsEndpoint(settings, services.router, services.store, app[CREDENTIALS].value)
    scheduler = JobScheduler(settings.timezone)
    scheduler.add_skills(services.skills)

    async def start_skills() -> None:
        for skill in services.skills:
            if skill.startup is not None:
                try:
                    await skill.startup()
                except Exception:
                    log.exception("skill start-up failed", extra={"skill": skill.name})
        app[READY].set()
        log.info("ready", extra={"chunks": len(services.library.retriever.chunks)})

    starting = asyncio.create_task(start_skills())
    if services.delivery is not None:
        services.delivery.start()  # the outbox worker: proactive posts, on every replica
    scheduler.start()
    try:
        yield
    finally:
        scheduler.shutdown()
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        await services.close()


async def _messages(request: web.Request) -> web.Response:
    return await request.app[ENDPOINT].handle(request)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    app = request.app
    services = app[SERVICES]
    database = await services.store.ping()
    indexed = app[READY].is_set()
    body: dict[str, Any] = {
        "database": "ok" if database else "unreachable",
        "protocols": "indexed" if indexed else "indexing",
        "chunks": len(services.library.retriever.chunks),
        "retrieval": services.library.retriever.mode,
        "generation": "azure-openai" if services.llm else "extractive",
    }
    for skill in services.skills:  # each skill's own view (e.g. channels: queued and unrouted posts)
        if skill.health is not None:
            try:
                body[skill.name] = dict(await skill.health())
            except Exception:
                log.exception("skill health check failed", extra={"skill": skill.name})
                body[skill.name] = {"ready": False}
    return web.json_response(
        {"status": "ready" if database and indexed else "starting", **body}, status=200 if database and indexed else 503
    )
