"""Passage vectors cached on disk (var/bench-vectors/), so the benchmark never embeds the same corpus twice."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
CACHE = ROOT / "var" / "bench-vectors"


class VectorCache:
    """text -> vector for one model, stored as one .npz file (keys are SHA-1 of the text, not for security)."""

    def __init__(self, model: str, folder: Path = CACHE) -> None:
        self.path = folder / (model.replace(":", "_").replace("/", "_") + ".npz")
        self.vectors: dict[str, np.ndarray] = {}
        if self.path.exists():
            with np.load(self.path) as data:
                self.vectors = dict(zip(data["keys"].tolist(), data["matrix"], strict=True))

    @staticmethod
    def key(text: str) -> str:
        return hashlib.sha1(text.encode("utf-8"), usedforsecurity=False).hexdigest()

    def get(self, text: str) -> np.ndarray | None:
        return self.vectors.get(self.key(text))

    def fill(self, texts: Sequence[str], embed: Callable[[list[str]], list[list[float]]], batch: int = 32) -> None:
        """Embed the texts not cached yet, saving after every batch (an interrupted run keeps its work)."""
        missing = [t for t in dict.fromkeys(texts) if self.key(t) not in self.vectors]
        for start in range(0, len(missing), batch):
            part = missing[start : start + batch]
            for text, vector in zip(part, embed(part), strict=True):
                self.vectors[self.key(text)] = np.asarray(vector, dtype=np.float32)
            self.save()

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        keys = np.asarray(list(self.vectors), dtype="U40")
        matrix = np.stack(list(self.vectors.values())) if self.vectors else np.zeros((0, 0), np.float32)
        tmp = self.path.with_suffix(".tmp.npz")
        np.savez(tmp, keys=keys, matrix=matrix)
        tmp.replace(self.path)
