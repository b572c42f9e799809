"""Hybrid retrieval over chunks: BM25 with field weights, dense cosine similarity, and score fusion."""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy import sparse

from skills.core.i18n import language_of
from skills.core.ports import Embedder, LLMError
from skills.protocols.analysis import Analyzer
from skills.protocols.chunking import Chunk

FloatArray = npt.NDArray[np.float32]
_HANGUL = re.compile(r"[\uac00-\ud7a3]")  # only Korean questions have key terms that differ from index terms


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved chunk with the evidence for its rank."""

    chunk: Chunk
    score: float  # fused score, comparable within one query only
    lexical: float  # raw BM25
    dense: float  # cosine similarity, 0 when no vectors
    coverage: float  # share of the query's IDF mass found in the chunk, 0..1


@dataclass(frozen=True, slots=True)
class RetrievalSettings:
    """Tunables, measured on eval sets (see README "Retrieval quality")."""

    k1: float = 1.2
    b: float = 0.75
    title_weight: float = 2.0  # how much a word in the title / section path counts against one in the body
    dense_weight: float = 0.4  # share of the fused score from the dense side (medquad: 0.3-0.5 all beat either side)
    candidates: int = 100  # per side, before fusion
    min_coverage: float = 0.35  # below this (lexical) and below min_similarity (dense): "not covered"
    min_similarity: float = 0.35  # calibrated on MiniLM: out-of-scope questions scored <= 0.22


class LexicalIndex:
    """BM25 over a sparse matrix of precomputed term weights; title/section words weigh more."""

    def __init__(self, analyzer: Analyzer, settings: RetrievalSettings) -> None:
        self.analyzer = analyzer
        self.settings = settings
        self.vocabulary: dict[str, int] = {}
        self.idf: FloatArray = np.zeros(0, dtype=np.float32)
        self.weights: sparse.csc_matrix = sparse.csc_matrix((0, 0), dtype=np.float32)
        self.size = 0

    def build(self, fields: Sequence[tuple[str, str]]) -> None:
        """Index (title, body) pairs; the row number is the document number."""
        weight = self.settings.title_weight
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[float] = []
        lengths = np.zeros(len(fields), dtype=np.float32)
        vocabulary = self.vocabulary = {}
        for row, (title, body) in enumerate(fields):
            counts: Counter[str] = Counter(self.analyzer.terms(body))
            title_terms = self.analyzer.terms(title)
            length = float(sum(counts.values())) + weight * len(title_terms)
            merged: dict[str, float] = dict(counts)
            for term in title_terms:
                merged[term] = merged.get(term, 0.0) + weight
            for term, count in merged.items():
                col = vocabulary.setdefault(term, len(vocabulary))
                rows.append(row)
                cols.append(col)
                tfs.append(count)
            lengths[row] = length
        self.size = n = len(fields)
        tf = np.asarray(tfs, dtype=np.float32)
        row_index = np.asarray(rows, dtype=np.int32)
        col_index = np.asarray(cols, dtype=np.int32)
        df = np.bincount(col_index, minlength=len(vocabulary)).astype(np.float32)
        self.idf = np.log1p((n - df + 0.5) / (df + 0.5)).astype(np.float32)
        average = float(lengths.mean()) if n else 1.0
        k1, b = self.settings.k1, self.settings.b
        saturation = k1 * (1.0 - b + b * lengths[row_index] / max(average, 1e-9))
        data = self.idf[col_index] * tf * (k1 + 1.0) / (tf + saturation)
        self.weights = sparse.csc_matrix((data, (row_index, col_index)), shape=(n, len(vocabulary)))

    def query_terms(self, query: str) -> Counter[str]:
        return Counter(self.analyzer.terms(query))

    def scores(self, terms: Counter[str]) -> FloatArray:
        """BM25 score of every document for the query terms."""
        known = [(self.vocabulary[t], c) for t, c in terms.items() if t in self.vocabulary]
        if not known or self.size == 0:
            return np.zeros(self.size, dtype=np.float32)
        ids = np.fromiter((i for i, _ in known), dtype=np.int32)
        counts = np.fromiter((c for _, c in known), dtype=np.float32)
        return np.asarray(self.weights[:, ids] @ counts, dtype=np.float32).ravel()

    def coverage(self, terms: Counter[str]) -> FloatArray:
        """For every document, the IDF-weighted share of the query terms it contains (unknown terms count as rare)."""
        if not terms or self.size == 0:
            return np.zeros(self.size, dtype=np.float32)
        max_idf = math.log1p((self.size + 0.5) / 0.5)
        ids = [self.vocabulary[t] for t in terms if t in self.vocabulary]
        total = sum(float(self.idf[self.vocabulary[t]]) if t in self.vocabulary else max_idf for t in terms)
        if not ids or total <= 0:
            return np.zeros(self.size, dtype=np.float32)
        present = self.weights[:, ids] > 0  # column slices of a CSC matrix are cheap
        return np.asarray(present @ self.idf[ids], dtype=np.float32).ravel() / np.float32(total)


class DenseIndex:
    """Unit-normalised vectors; similarity is a dot product."""

    def __init__(self, matrix: FloatArray | None = None) -> None:
        self.matrix = matrix

    @staticmethod
    def normalise(vectors: Sequence[float] | Sequence[Sequence[float]] | FloatArray) -> FloatArray:
        array = np.asarray(vectors, dtype=np.float32)
        if array.ndim == 1:
            array = array[None, :]
        norms = np.linalg.norm(array, axis=1, keepdims=True)
        return np.asarray(array / np.maximum(norms, 1e-12), dtype=np.float32)

    def scores(self, query_vector: FloatArray) -> FloatArray:
        if self.matrix is None:
            raise ValueError("no vectors")
        return np.asarray(self.matrix @ query_vector.ravel(), dtype=np.float32)


class HybridRetriever:
    """An immutable snapshot of the protocol library, searchable lexically and, with vectors, densely."""

    def __init__(
        self,
        chunks: Sequence[Chunk],
        *,
        analyzer: Analyzer | None = None,
        settings: RetrievalSettings | None = None,
        embedder: Embedder | None = None,
        vectors: FloatArray | None = None,
        dense_languages: frozenset[str] | None = None,
    ) -> None:
        self.chunks = list(chunks)
        self._position = {c.key: i for i, c in enumerate(self.chunks)}
        self.settings = settings or RetrievalSettings()
        self.analyzer = analyzer or Analyzer()
        self.lexical = LexicalIndex(self.analyzer, self.settings)
        self.lexical.build([(f"{c.title}\n{c.section}", c.text) for c in self.chunks])
        if vectors is not None and len(vectors) != len(self.chunks):
            raise ValueError(f"{len(vectors)} vectors for {len(self.chunks)} chunks")
        self.embedder = embedder if vectors is not None else None
        self.dense = DenseIndex(DenseIndex.normalise(vectors) if vectors is not None and len(vectors) else None)
        self.dense_languages = dense_languages

    @property
    def mode(self) -> str:
        return "hybrid" if self.dense.matrix is not None else "lexical"

    def uses_dense_for(self, query: str) -> bool:
        if self.dense.matrix is None or self.embedder is None:
            return False
        return self.dense_languages is None or language_of(query) in self.dense_languages

    async def search(self, query: str, k: int = 5, *, mode: str = "auto") -> list[Hit]:
        """Best chunks first. mode: auto (hybrid when possible), lexical or dense."""
        if not self.chunks or not query.strip():
            return []
        terms = self.lexical.query_terms(query)
        lexical = self.lexical.scores(terms)
        dense: FloatArray | None = None
        if mode != "lexical" and self.uses_dense_for(query):
            assert self.embedder is not None
            try:
                vector = DenseIndex.normalise((await self.embedder.embed([query]))[0])
                dense = self.dense.scores(vector)
            except LLMError:
                dense = None  # the embedding service is down: lexical still answers
        if mode == "dense" and dense is not None:
            fused = dense
        elif dense is None or mode == "lexical":
            fused = lexical
        else:
            fused = self._fuse(lexical, dense)
        top = _top_k(fused, k)
        top = [i for i in top if fused[i] > 0 or dense is not None]
        key_terms = self.key_terms(query) if _HANGUL.search(query) else terms  # English: the same terms
        coverage_all = self.lexical.coverage(key_terms)
        coverage = [float(coverage_all[i]) for i in top]
        return [
            Hit(
                chunk=self.chunks[i],
                score=float(fused[i]),
                lexical=float(lexical[i]),
                dense=float(dense[i]) if dense is not None else 0.0,
                coverage=cov,
            )
            for i, cov in zip(top, coverage, strict=True)
        ]

    def key_terms(self, query: str) -> Counter[str]:
        return Counter(self.analyzer.key_terms(query))

    def coverage_of(self, query: str, hits: Sequence[Hit]) -> list[float]:
        """How much of `query` each hit's chunk contains (the same measure as Hit.coverage, for another query)."""
        coverage = self.lexical.coverage(self.key_terms(query))
        return [float(coverage[self._position[h.chunk.key]]) for h in hits]

    def _fuse(self, lexical: FloatArray, dense: FloatArray) -> FloatArray:
        """Convex combination of min-max normalised scores over the union of both sides' candidates."""
        m = self.settings.candidates
        candidates = np.union1d(_top_k(lexical, m), _top_k(dense, m))
        fused = np.zeros_like(lexical)
        lex = _min_max(lexical[candidates])
        den = _min_max(dense[candidates])
        w = self.settings.dense_weight
        fused[candidates] = (1.0 - w) * lex + w * den + 1e-6  # candidates always outrank the rest
        return fused

    def is_covered(self, hit: Hit) -> bool:
        """Whether a hit is relevant enough to answer from."""
        s = self.settings
        return hit.coverage >= s.min_coverage or (hit.dense > 0 and hit.dense >= s.min_similarity)


def _top_k(scores: FloatArray, k: int) -> list[int]:
    if len(scores) == 0:
        return []
    k = min(k, len(scores))
    part = np.argpartition(-scores, k - 1)[:k]
    return [int(i) for i in part[np.argsort(-scores[part], kind="stable")]]


def _min_max(values: FloatArray) -> FloatArray:
    low, high = float(values.min()), float(values.max())
    if high - low < 1e-12:
        return np.ones_like(values) if high > 0 else np.zeros_like(values)
    return np.asarray((values - low) / (high - low), dtype=np.float32)
