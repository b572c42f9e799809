"""The protocol library: ingest a folder into the Store (only what changed) and serve a retriever snapshot."""

from __future__ import annotations

import asyncio
import base64
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from skills.core.ports import Embedder, LLMError, Store
from skills.protocols.analysis import Analyzer
from skills.protocols.chunking import Chunk, chunk_document
from skills.protocols.documents import DocumentError, content_hash, iter_protocol_files, load_document
from skills.protocols.retrieval import HybridRetriever, RetrievalSettings

log = logging.getLogger(__name__)

DOCS = "protocols.docs"
CHUNKS = "protocols.chunks"
VECTORS = "protocols.vectors"

Progress = Callable[[str, int, int], None]  # (file, done, total)


@dataclass(slots=True)
class SyncReport:
    """What one ingest run did."""

    added: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    removed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failed: dict[str, str] = field(default_factory=dict)
    chunks: int = 0
    embedded: int = 0

    @property
    def changed(self) -> bool:
        return bool(self.added or self.updated or self.removed)

    def summary(self) -> str:
        return (
            f"{len(self.added)} added, {len(self.updated)} updated, {len(self.removed)} removed, "
            f"{len(self.unchanged)} unchanged, {len(self.failed)} failed; {self.chunks} chunks"
        )


def embedding_text(chunk: Chunk) -> str:
    """What the dense side sees of a chunk: where it sits, then what it says."""
    return f"{chunk.title} — {chunk.section}\n{chunk.text}"


class ProtocolLibrary:
    """Keeps the Store in step with a folder and holds the current retriever."""

    def __init__(
        self,
        store: Store,
        *,
        embedder: Embedder | None = None,
        settings: RetrievalSettings | None = None,
        analyzer: Analyzer | None = None,
        embed_batch: int = 64,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings or RetrievalSettings()
        self.analyzer = analyzer or Analyzer()
        self.embed_batch = embed_batch
        self._retriever = HybridRetriever([], analyzer=self.analyzer, settings=self.settings)
        self._loaded = False
        self._lock = asyncio.Lock()

    @property
    def retriever(self) -> HybridRetriever:
        return self._retriever

    async def sync(self, folder: Path, progress: Progress | None = None) -> SyncReport:
        """Ingest new and changed files, drop vanished ones, then rebuild the retriever."""
        async with self._lock:
            report = SyncReport()
            if not await asyncio.to_thread(folder.is_dir):
                # An unmounted share must not look like an empty library: keep serving what we have.
                raise FileNotFoundError(f"protocol folder {folder} is not there; the library was left as it was")
            known = dict(await self.store.scan(DOCS))
            files = list(iter_protocol_files(folder))
            seen: set[str] = set()
            for done, path in enumerate(files, 1):
                source = path.relative_to(folder).as_posix()
                seen.add(source)
                await self._sync_file(path, source, known.get(source), report)
                if progress:
                    progress(source, done, len(files))
            for source in sorted(set(known) - seen):
                await self._remove(source)
                report.removed.append(source)
            if report.changed or not self._loaded or self._retriever.mode != "hybrid":
                # Otherwise every chunk already has a vector: skip reading them all back from the store.
                report.embedded = await self._embed_missing()
            if report.changed or report.embedded or not self._loaded:
                await self._reload()  # an unchanged folder (the usual scheduled re-sync) costs a scan, not a rebuild
            report.chunks = len(self._retriever.chunks)
            return report

    async def _sync_file(self, path: Path, source: str, previous: dict[str, object] | None, report: SyncReport) -> None:
        try:
            data = await asyncio.to_thread(path.read_bytes)
        except OSError as exc:
            report.failed[source] = f"cannot read: {exc.strerror}"
            return
        digest = content_hash(data)
        if previous is not None and previous.get("hash") == digest:
            report.unchanged.append(source)
            return
        try:
            document = await asyncio.to_thread(load_document, path, source)
        except DocumentError as exc:
            # Keep serving the previous version of a document that has become unreadable.
            report.failed[source] = str(exc)
            log.warning("protocol not ingested", extra={"source": source, "reason": str(exc)})
            return
        if document is None:  # marked not-a-protocol: withdraw an earlier version
            if previous is not None:
                await self._remove(source)
                report.removed.append(source)
            return
        chunks = chunk_document(document)
        await self.store.replace_prefix(CHUNKS, f"{source}#", [(c.key, c.to_record()) for c in chunks])
        await self.store.replace_prefix(VECTORS, f"{source}#", [])
        await self.store.put(
            DOCS,
            source,
            {"hash": digest, "title": document.title, "meta": document.meta, "chunks": len(chunks)},
        )
        (report.updated if previous is not None else report.added).append(source)

    async def _remove(self, source: str) -> None:
        await self.store.replace_prefix(CHUNKS, f"{source}#", [])
        await self.store.replace_prefix(VECTORS, f"{source}#", [])
        await self.store.delete(DOCS, source)

    async def _embed_missing(self, progress: Progress | None = None) -> int:
        """Compute vectors for chunks that have none from the current embedder."""
        if self.embedder is None:
            return 0
        model = self.embedder.name
        have = {key for key, value in await self.store.scan(VECTORS) if value.get("model") == model}
        missing = [Chunk.from_record(k, v) for k, v in await self.store.scan(CHUNKS) if k not in have]
        done = 0
        for start in range(0, len(missing), self.embed_batch):
            batch = missing[start : start + self.embed_batch]
            try:
                vectors = await self.embedder.embed([embedding_text(c) for c in batch])
            except LLMError as exc:
                log.warning("embedding failed; serving lexical results", extra={"reason": str(exc)})
                return done
            await self.store.put_many(
                VECTORS,
                [
                    (chunk.key, {"model": model, "vector": encode_vector(vector)})
                    for chunk, vector in zip(batch, vectors, strict=True)
                ],
            )
            done += len(batch)
            if progress:
                progress("embedding", done, len(missing))
        return done

    async def _reload(self) -> None:
        chunks = [Chunk.from_record(k, v) for k, v in await self.store.scan(CHUNKS)]
        vectors = None
        if self.embedder is not None and chunks:
            stored = {k: v for k, v in await self.store.scan(VECTORS) if v.get("model") == self.embedder.name}
            if all(c.key in stored for c in chunks):
                vectors = np.stack([decode_vector(str(stored[c.key]["vector"])) for c in chunks])
        self._loaded = True
        self._retriever = await asyncio.to_thread(
            HybridRetriever,
            chunks,
            analyzer=self.analyzer,
            settings=self.settings,
            embedder=self.embedder,
            vectors=vectors,
            dense_languages=self.embedder.languages if self.embedder is not None else None,
        )

    async def index_chunks(self, chunks: Sequence[Chunk], progress: Progress | None = None) -> None:
        """Replace the whole library with ready-made chunks (evaluation corpora), embedding them if configured."""
        async with self._lock:
            await self.store.replace_prefix(CHUNKS, "", [(c.key, c.to_record()) for c in chunks])
            await self.store.replace_prefix(VECTORS, "", [])
            await self._embed_missing(progress)
            await self._reload()

    async def load(self) -> None:
        """Build the retriever from what the Store already holds (no folder scan)."""
        async with self._lock:
            await self._reload()

    async def titles(self) -> list[str]:
        return sorted(str(v.get("title", k)) for k, v in await self.store.scan(DOCS))


def encode_vector(vector: Sequence[float]) -> str:
    return base64.b64encode(np.asarray(vector, dtype=np.float32).tobytes()).decode("ascii")


def decode_vector(text: str) -> npt.NDArray[np.float32]:
    return np.frombuffer(base64.b64decode(text), dtype=np.float32)
