"""The aiohttp application: /api/messages, health probes, and the lifecycle of storage, index and scheduler."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from typing import Any

from aiohttp import web

from bot.ingress.mllp import MllpServer
from bot.ingress.webhook import AlertWebhook
from bot.leader import Leadership, leadership_for
from bot.logs import silence_payload_loggers
from bot.scheduler import JobScheduler
from bot.services import HostPorts, Services, SkillFactory, build_services
from bot.settings import Settings, SettingsError
from bot.teams import TeamsEndpoint
from bot.timers import NOTIFY_CHANNEL

log = logging.getLogger(__name__)

SETTINGS = web.AppKey("settings", Settings)
SERVICES = web.AppKey("services", Services)
READY = web.AppKey("ready", asyncio.Event)
ENDPOINT = web.AppKey("endpoint", TeamsEndpoint)


class _Box:
    def __init__(self, value: Any) -> None:
        self.value = value


CREDENTIALS = web.AppKey("credentials", _Box)
EXTRA_SKILLS: web.AppKey[tuple[SkillFactory, ...]] = web.AppKey("extra_skills")
LEADERSHIP = web.AppKey("leadership", Leadership)
PORTS = web.AppKey("ports", _Box)
MLLP = web.AppKey("mllp", _Box)  # the running MllpServer (None when disabled), e.g. for its port
WEBHOOK = web.AppKey("webhook", AlertWebhook)


def create_app(
    settings: Settings,
    *,
    credentials: Any = None,
    extra_skills: Sequence[SkillFactory] = (),
    ports: HostPorts | None = None,
) -> web.Application:
    """The whole bot as one aiohttp app; nothing starts until the app runs.

    `credentials` replaces the outbound Bot Framework credentials factory (tests, or a custom token source);
    `extra_skills` adds skill factories beside the built-in ones (tests, site-specific add-ons);
    `ports` hands skills a notifier, durable timers, a directory or a clock (test doubles instead of the host's).
    """
    silence_payload_loggers()  # whoever configured logging, payload-logging libraries stay quiet
    settings.tenant_allowlist  # noqa: B018 - a bot with an app id and no allowed tenant stops here, before binding
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app[CREDENTIALS] = _Box(credentials)
    app[EXTRA_SKILLS] = tuple(extra_skills)
    app[PORTS] = _Box(ports)
    app[MLLP] = _Box(None)
    app[READY] = asyncio.Event()
    app.cleanup_ctx.append(_lifecycle)
    app.router.add_post("/api/messages", _messages)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/readyz", _readyz)
    app.router.add_post("/api/alerts", _alerts)
    return app


async def _lifecycle(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    extra_skills: tuple[SkillFactory, ...] = app[EXTRA_SKILLS]
    services = await build_services(settings, extra_skills, app[PORTS].value)
    app[SERVICES] = services
    consumers = {consumer.kind: consumer.handle for skill in services.skills for consumer in skill.consumers}
    app[WEBHOOK] = AlertWebhook(
        consumers.get("alerts.json"), settings.alerts_webhook_secrets, max_bytes=settings.alerts_max_bytes
    )
    mllp: MllpServer | None = None
    if settings.mllp_enabled:
        mllp = MllpServer(
            consumers.get("hl7v2"),
            host=settings.mllp_host,
            port=settings.mllp_port,
            max_bytes=settings.alerts_max_bytes,
            idle_timeout_s=settings.mllp_idle_timeout_s,
        )
        try:
            await mllp.start()
        except OSError as error:
            await services.close()
            raise SettingsError(
                f"WARDLINE_MLLP_PORT: cannot listen on {settings.mllp_host}:{settings.mllp_port} ({error.strerror})"
            ) from None
        app[MLLP].value = mllp
    await services.library.load()  # serve what the store already holds while the folder is re-read
    deferred = services.delivery.notifier if services.delivery is not None else None  # replies past the turn window
    app[ENDPOINT] = TeamsEndpoint(settings, services.router, services.store, app[CREDENTIALS].value, notifier=deferred)
    leadership = _leadership(app, services)
    scheduler = JobScheduler(settings.timezone, is_leader=lambda: leadership.is_leader, store=services.store)
    scheduler.add_skills(services.skills)
    leadership.subscribe(scheduler.on_leadership)
    background = _start_leadership(app, services, leadership)

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
        if mllp is not None:
            await mllp.stop()
        scheduler.shutdown()
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        for skill in services.skills:
            if skill.shutdown is not None:
                await skill.shutdown()
        await _stop_leadership(leadership, background)
        if ENDPOINT in app:
            await app[ENDPOINT].close()
        await services.close()


def _leadership(app: web.Application, services: Services) -> Leadership:
    """The election that fits the database (not running yet)."""
    options: dict[str, Any] = {}
    if services.store.engine.dialect.name == "postgresql" and services.timers is not None:
        options = {"channel": NOTIFY_CHANNEL, "on_notify": services.timers.wake}  # followers' schedule_at wakes it
    leadership = leadership_for(app[SETTINGS].database, **options)
    app[LEADERSHIP] = leadership
    return leadership


def _start_leadership(app: web.Application, services: Services, leadership: Leadership) -> list[asyncio.Task[None]]:
    """Leader election, the leader's timer loop, and directory reloads (timer and SIGHUP)."""
    settings = app[SETTINGS]
    timers, directory = services.timers, services.directory
    background: list[asyncio.Task[None]] = []
    firing: list[asyncio.Task[None]] = []

    async def on_leadership(leading: bool) -> None:
        if leading and timers is not None and not firing:
            firing.append(asyncio.create_task(timers.run(), name="timers"))
        elif not leading and firing:
            task = firing.pop()
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    leadership.subscribe(on_leadership)
    background.append(asyncio.create_task(leadership.run(), name="leader-election"))
    if directory is not None and directory.path is not None:
        if settings.directory_reload_seconds > 0:
            background.append(asyncio.create_task(directory.watch(settings.directory_reload_seconds)))
        reloads: set[asyncio.Task[bool]] = set()

        def on_sighup() -> None:
            task = asyncio.create_task(directory.reload())
            reloads.add(task)
            task.add_done_callback(reloads.discard)

        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # not the main thread / not Unix
            asyncio.get_running_loop().add_signal_handler(signal.SIGHUP, on_sighup)
    return background


async def _stop_leadership(leadership: Leadership, background: list[asyncio.Task[None]]) -> None:
    with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
        asyncio.get_running_loop().remove_signal_handler(signal.SIGHUP)
    for task in background:
        task.cancel()
    for task in background:
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await leadership.close()  # stops the timer loop (a step-down) and releases the lock: a peer takes over at once


async def _messages(request: web.Request) -> web.Response:
    return await request.app[ENDPOINT].handle(request)


async def _alerts(request: web.Request) -> web.Response:
    return await request.app[WEBHOOK].handle(request)


async def _healthz(request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def _readyz(request: web.Request) -> web.Response:
    app = request.app
    services = app[SERVICES]
    bound = services.settings.database_timeout_s

    async def bounded(check: Callable[[], Awaitable[Any]]) -> Any:
        async with asyncio.timeout(bound):  # a database that stops answering must not hold the probe past its bound
            return await check()

    checked = [(skill, skill.health) for skill in services.skills if skill.health is not None]
    results = await asyncio.gather(  # side by side: the probe takes one bound, not one per check
        bounded(services.store.ping), *(bounded(health) for _skill, health in checked), return_exceptions=True
    )
    database = results[0] is True
    indexed = app[READY].is_set()
    body: dict[str, Any] = {
        "database": "ok" if database else "unreachable",
        "protocols": "indexed" if indexed else "indexing",
        "chunks": len(services.library.retriever.chunks),
        "retrieval": services.library.retriever.mode,
        "generation": "azure-openai" if services.llm else "extractive",
        "leader": app[LEADERSHIP].is_leader,
        "directory": services.directory.health() if services.directory else None,
    }
    for (skill, _health), result in zip(checked, results[1:], strict=True):  # e.g. channels: queued posts
        if isinstance(result, BaseException):
            log.warning("skill health check failed", extra={"skill": skill.name, "error": type(result).__name__})
            body[skill.name] = {"ready": False}
        else:
            body[skill.name] = dict(result)
    return web.json_response(
        {"status": "ready" if database and indexed else "starting", **body}, status=200 if database and indexed else 503
    )
