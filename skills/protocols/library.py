"""The protocol library: ingest a folder into the Store (only what changed) and serve a retriever snapshot.

Lexical search is ready as soon as the chunks are stored; the dense side joins document by document as vectors are
computed in the background. A generation record in the Store moves on every change, so every replica reloads.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import numpy.typing as npt

from skills.core.ports import Embedder, LLMError, Store
from skills.protocols.analysis import Analyzer
from skills.protocols.chunking import Chunk, chunk_document
from skills.protocols.documents import DocumentError, content_hash, iter_protocol_files, load_document
from skills.protocols.retrieval import DenseIndex, HybridRetriever, RetrievalSettings

log = logging.getLogger(__name__)

DOCS = "protocols.docs"
CHUNKS = "protocols.chunks"
VECTORS = "protocols.vectors"
META = "protocols.meta"
GENERATION = "generation"  # key in META: {"id": <random hex>} rewritten on every change to chunks or vectors

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
        check_seconds: float = 3.0,
    ) -> None:
        self.store = store
        self.embedder = embedder
        self.settings = settings or RetrievalSettings()
        self.analyzer = analyzer or Analyzer()
        self.embed_batch = embed_batch
        self.check_seconds = check_seconds  # how stale a replica may be before answering checks the generation
        self._retriever = HybridRetriever([], analyzer=self.analyzer, settings=self.settings)
        self._loaded = False
        self._lock = asyncio.Lock()
        self._generation: str | None = None
        self._checked_at = float("-inf")
        self._embedding: asyncio.Task[int] | None = None

    @property
    def retriever(self) -> HybridRetriever:
        return self._retriever

    @property
    def generation(self) -> str | None:
        """The generation this replica's snapshot was built from."""
        return self._generation

    async def sync(
        self, folder: Path, progress: Progress | None = None, *, wait_for_vectors: bool = True
    ) -> SyncReport:
        """Ingest new and changed files, drop vanished ones, then rebuild the retriever.

        With wait_for_vectors=False the call returns once lexical search is ready and missing vectors are computed
        in the background (the bot's start-up: answers within seconds on any folder).
        """
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
            if report.changed:
                await self._bump_generation()
            if report.changed or not self._loaded:
                await self._reload()  # an unchanged folder (the usual scheduled re-sync) costs a scan, not a rebuild
        if wait_for_vectors:
            if self._embedding is not None and not self._embedding.done():
                report.embedded = await asyncio.shield(self._embedding)
            if self._missing_vectors():
                report.embedded += await self._embed_missing()
        else:
            self.start_embedding()
        report.chunks = len(self._retriever.chunks)
        return report

    def _missing_vectors(self) -> bool:
        return self.embedder is not None and self._retriever.embedded < len(self._retriever.chunks)

    def start_embedding(self) -> None:
        """Compute missing vectors in the background (at most one run at a time)."""
        if not self._missing_vectors() or (self._embedding is not None and not self._embedding.done()):
            return
        self._embedding = asyncio.create_task(self._embed_until_done(), name="protocols.embedding")

    async def _embed_until_done(self, passes: int = 3) -> int:
        """Embed, and again if a re-sync added chunks meanwhile (a failing service stops it: the next sync retries)."""
        total = 0
        for _ in range(passes):
            done = await self._embed_missing()
            total += done
            if not done or not self._missing_vectors():
                break
        return total

    async def wait_embedded(self) -> int:
        """Wait for a background embedding run; returns how many chunks it embedded."""
        return await self._embedding if self._embedding is not None else 0

    async def close(self) -> None:
        """Stop a background embedding run (what it stored so far is kept)."""
        if self._embedding is not None and not self._embedding.done():
            self._embedding.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._embedding

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
        """Compute vectors for the snapshot's chunks that have none, document by document.

        Each document's vectors join the live retriever as soon as they are stored. The model runs outside the
        library lock; before storing, the chunks are checked against the Store so a document re-ingested meanwhile
        never gets vectors of its old text.
        """
        if self.embedder is None:
            return 0
        model = self.embedder.name
        snapshot = self._retriever
        missing = [c for c, has in zip(snapshot.chunks, snapshot.has_vector, strict=True) if not has]
        by_source: dict[str, list[Chunk]] = {}
        for chunk in missing:
            by_source.setdefault(chunk.source, []).append(chunk)
        done = 0
        for source, chunks in by_source.items():
            vectors: list[list[float]] = []
            try:
                for start in range(0, len(chunks), self.embed_batch):
                    batch = chunks[start : start + self.embed_batch]
                    vectors.extend(await self.embedder.embed([embedding_text(c) for c in batch]))
            except LLMError as exc:
                log.warning("embedding failed; serving lexical results", extra={"reason": str(exc)})
                break
            async with self._lock:
                current = {k: Chunk.from_record(k, v) for k, v in await self.store.scan(CHUNKS, f"{source}#")}
                fresh = [(c, v) for c, v in zip(chunks, vectors, strict=True) if current.get(c.key) == c]
                await self.store.put_many(
                    VECTORS, [(c.key, {"model": model, "vector": encode_vector(v)}) for c, v in fresh]
                )
                self._join_vectors(fresh)
            done += len(fresh)
            if progress:
                progress("embedding", done, len(missing))
        if done:
            async with self._lock:
                await self._bump_generation()  # peers pick the new vectors up on their next check
        return done

    def _join_vectors(self, fresh: Sequence[tuple[Chunk, Sequence[float]]]) -> None:
        """Add vectors to the live snapshot (when it still holds these chunks)."""
        retriever = self._retriever
        positions = {c.key: i for i, c in enumerate(retriever.chunks)}
        rows = [(positions[c.key], v) for c, v in fresh if retriever.chunks[positions.get(c.key, 0)] == c]
        if not rows:
            return
        size = len(rows[0][1])
        matrix = retriever.dense.matrix
        if matrix is None or matrix.shape[1] != size:
            matrix = np.zeros((len(retriever.chunks), size), dtype=np.float32)
            mask = np.zeros(len(retriever.chunks), dtype=bool)
        else:
            matrix = matrix.copy()
            mask = retriever.has_vector.copy()
        for row, vector in rows:
            matrix[row] = DenseIndex.normalise(vector)[0]
            mask[row] = True
        self._retriever = retriever.with_vectors(matrix, mask)

    async def _bump_generation(self) -> None:
        self._generation = uuid.uuid4().hex
        await self.store.put(META, GENERATION, {"id": self._generation})

    async def _stored_generation(self) -> str | None:
        record = await self.store.get(META, GENERATION)
        return str(record["id"]) if record and "id" in record else None

    async def _reload(self) -> None:
        generation = await self._stored_generation()
        chunks = [Chunk.from_record(k, v) for k, v in await self.store.scan(CHUNKS)]
        vectors = None
        mask = None
        if self.embedder is not None and chunks:
            stored = {k: v for k, v in await self.store.scan(VECTORS) if v.get("model") == self.embedder.name}
            if stored:
                mask = np.fromiter((c.key in stored for c in chunks), dtype=bool, count=len(chunks))
                decoded = {k: decode_vector(str(v["vector"])) for k, v in stored.items()}
                size = len(next(iter(decoded.values())))
                vectors = np.zeros((len(chunks), size), dtype=np.float32)
                for i, chunk in enumerate(chunks):
                    if chunk.key in decoded and len(decoded[chunk.key]) == size:
                        vectors[i] = decoded[chunk.key]
                    else:
                        mask[i] = False
        retriever = await asyncio.to_thread(
            HybridRetriever,
            chunks,
            analyzer=self.analyzer,
            settings=self.settings,
            embedder=self.embedder,
            vectors=vectors,
            has_vector=mask,
            dense_languages=self.embedder.languages if self.embedder is not None else None,
        )
        await asyncio.to_thread(getattr, retriever, "bridge")  # build the glossary now, not in the first question
        self._retriever = retriever
        self._loaded = True
        self._generation = generation
        self._checked_at = time.monotonic()

    async def refresh(self) -> bool:
        """Reload when another replica changed the library (the generation moved). Returns True on a reload."""
        self._checked_at = time.monotonic()
        stored = await self._stored_generation()
        if stored == self._generation and self._loaded:
            return False
        async with self._lock:
            if await self._stored_generation() == self._generation and self._loaded:
                return False
            await self._reload()
        log.info("protocol library reloaded after a change elsewhere", extra={"chunks": len(self._retriever.chunks)})
        return True

    async def current(self) -> HybridRetriever:
        """The retriever to answer from, checking the generation first when the last check is a few seconds old."""
        if time.monotonic() - self._checked_at >= self.check_seconds:
            try:
                await self.refresh()
            except Exception:  # the store is briefly unreachable: answer from the snapshot we have
                log.warning("could not check the protocol library generation", exc_info=True)
        return self._retriever

    def status(self) -> dict[str, object]:
        """What /readyz shows: lexical readiness and how far the dense side has got."""
        retriever = self._retriever
        body: dict[str, object] = {
            "ready": self._loaded,
            "protocols": "indexed" if self._loaded else "indexing",
            "chunks": len(retriever.chunks),
            "retrieval": retriever.mode,
        }
        if self.embedder is not None:
            body["embedded"] = f"{retriever.embedded}/{len(retriever.chunks)}"
            body["embedding_model"] = self.embedder.name
        return body

    async def index_chunks(self, chunks: Sequence[Chunk], progress: Progress | None = None) -> None:
        """Replace the whole library with ready-made chunks (evaluation corpora), embedding them if configured."""
        async with self._lock:
            await self.store.replace_prefix(CHUNKS, "", [(c.key, c.to_record()) for c in chunks])
            await self.store.replace_prefix(VECTORS, "", [])
            await self._bump_generation()
            await self._reload()
        await self._embed_missing(progress)

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
