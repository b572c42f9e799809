"""Hybrid retrieval over chunks: BM25 with field weights and Korean-English term bridging, dense cosine similarity,
score fusion, and a coverage test that works across languages. The CPU-heavy parts run off the event loop."""

from __future__ import annotations

import asyncio
import copy
import math
import re
import threading
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt
from scipy import sparse

from skills.core.i18n import language_of
from skills.core.ports import Embedder, LLMError
from skills.protocols.analysis import Analyzer
from skills.protocols.chunking import Chunk
from skills.protocols.glossary import Bridge, Concept

FloatArray = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
_HANGUL = re.compile(r"[\uac00-\ud7a3]")
_LATIN = re.compile(r"[A-Za-z]")
DEFAULT_SIMILARITY_FLOOR = 0.35  # for an embedder that declares no calibration of its own


@dataclass(frozen=True, slots=True)
class Hit:
    """One retrieved chunk with the evidence for its rank."""

    chunk: Chunk
    score: float  # fused score, comparable within one query only
    lexical: float  # raw BM25
    dense: float  # cosine similarity, 0 when no vectors
    coverage: float  # share of the query's IDF mass found in the chunk, 0..1
    key_concept: bool = True  # holds the question's most specific glossary concept (when it has one)


@dataclass(frozen=True, slots=True)
class RetrievalSettings:
    """Tunables, measured on eval sets (see README "Retrieval quality")."""

    k1: float = 1.2
    b: float = 0.75
    title_weight: float = 2.0  # how much a word in the title / section path counts against one in the body
    dense_weight: float = 0.4  # share of the fused score from the dense side (medquad: 0.3-0.5 all beat either side)
    term_bridging: bool = True  # look for glossary terms in the other language too (Korean <-> English)
    relative_coverage: float = 0.6  # a covered section also needs this share of the best section's coverage
    untranslated_weight: float = 0.7  # coverage weight of an unbridged word against an other-language section
    bigram_weight: float = 0.5  # Korean character bigrams against whole words and morphemes (bundled set, tune)
    candidates: int = 100  # per side, before fusion
    min_coverage: float = 0.35  # below this (lexical) and below min_similarity (dense): "not covered"
    min_similarity: float | None = None  # None: the embedder's own calibration (e5: none, MiniLM 0.35)
    max_query_chars: int = 2000  # analysed length of a question: a pasted novel costs no more than a paragraph


class LexicalIndex:
    """BM25 over a sparse matrix of precomputed term weights; title/section words weigh more."""

    def __init__(self, analyzer: Analyzer, settings: RetrievalSettings) -> None:
        self.analyzer = analyzer
        self.settings = settings
        self.untranslated_weight = settings.untranslated_weight
        self.vocabulary: dict[str, int] = {}
        self.idf: FloatArray = np.zeros(0, dtype=np.float32)
        self.weights: sparse.csc_matrix = sparse.csc_matrix((0, 0), dtype=np.float32)
        self.size = 0
        self.korean: BoolArray = np.zeros(0, dtype=bool)  # per document: mostly Korean text
        self.groups: npt.NDArray[np.int64] = np.zeros(0, dtype=np.int64)  # per row: which source it was cut from

    def build(self, fields: Sequence[tuple[str, str]], groups: Sequence[int] | None = None) -> None:
        """Index (title, body) pairs; the row number is the document number; groups name each row's source."""
        self.groups = np.asarray(groups if groups is not None else range(len(fields)), dtype=np.int64)
        weight = self.settings.title_weight
        rows: list[int] = []
        cols: list[int] = []
        tfs: list[float] = []
        lengths = np.zeros(len(fields), dtype=np.float32)
        self.korean = np.fromiter((_mostly_korean(f"{t}\n{b}") for t, b in fields), dtype=bool, count=len(fields))
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

    def concept_scores(self, concepts: Sequence[Concept]) -> FloatArray:
        """BM25 over concepts: each concept scores by its best-matching form, so a term found in the other language
        counts as much as the same term in the question's own language (and synonyms are not counted twice)."""
        total = np.zeros(self.size, dtype=np.float32)
        if self.size == 0:
            return total
        for concept in concepts:
            best: FloatArray | None = None
            for alternative in concept.alternatives:
                ids = [self.vocabulary[t] for t in alternative if t in self.vocabulary]
                if not ids:
                    continue
                score = np.asarray(self.weights[:, ids].sum(axis=1), dtype=np.float32).ravel()
                best = score if best is None else np.maximum(best, score)
            if best is not None:
                total += best
        return total

    def key_concept(self, concepts: Sequence[Concept]) -> BoolArray:
        """Which documents hold the question's most specific clinical concept: the rarest topic concept of the
        glossary (not one of its generic ward words) that some document mentions. A section that lacks it speaks about
        something else that shares the question's generic words ("how often", "patient", "check"), whatever its
        coverage. All True when no topic concept matched."""
        best: tuple[float, BoolArray] | None = None
        for concept in concepts:
            if not concept.specific:
                continue
            present = self._present(concept)
            df = len(np.unique(self.groups[present]))  # documents, not chunks: a long protocol counts once
            if df and (best is None or df < best[0]):
                best = (df, present)
        return best[1] if best is not None else np.ones(self.size, dtype=bool)

    def _present(self, concept: Concept) -> BoolArray:
        present = np.zeros(self.size, dtype=bool)
        for alternative in concept.alternatives:
            ids = [self.vocabulary.get(t) for t in alternative]
            if any(i is None for i in ids):
                continue
            known = [i for i in ids if i is not None]
            counts = np.asarray((self.weights[:, known] > 0).sum(axis=1)).ravel()
            present |= counts == len(known)
        return present

    def concept_coverage(self, concepts: Sequence[Concept]) -> FloatArray:
        """For every document, the IDF-weighted share of the question's concepts it holds in any of their forms.

        A concept is present when all terms of one of its alternatives are; its weight is the IDF of the concept
        itself (how many documents hold it in any form), so a concept no document mentions counts as rare and lowers
        everyone's coverage, and a common word does not become rare by being written in the other language.
        """
        if not concepts or self.size == 0:
            return np.zeros(self.size, dtype=np.float32)
        n = self.size
        total = np.zeros(n, dtype=np.float32)
        covered = np.zeros(n, dtype=np.float32)
        for concept in concepts:
            present = self._present(concept)
            df = float(present.sum())
            weight = np.float32(math.log1p((n - df + 0.5) / (df + 0.5)))
            if concept.bridged:
                total += weight
            else:
                # A word the glossary cannot carry across still counts against a document in the other language,
                # but less: that document could not have used it.
                korean_word = any(_HANGUL.search(t) for t in concept.terms)
                other = self.korean != korean_word
                total += np.where(other, weight * np.float32(self.untranslated_weight), weight)
            covered += weight * present
        return np.asarray(covered / np.maximum(total, np.float32(1e-9)), dtype=np.float32)

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


@runtime_checkable
class QueryEmbedder(Protocol):
    """An embedder that embeds questions differently from passages (e5's "query:" and "passage:" prefixes)."""

    async def embed_queries(self, texts: Sequence[str]) -> list[list[float]]: ...


@dataclass(frozen=True, slots=True)
class _Query:
    """A question analysed once: BM25 terms (with bridged ones) and its concepts for the coverage test."""

    text: str
    terms: Counter[str]
    concepts: list[Concept]
    lexical: FloatArray


_bridges: dict[tuple[bool, bool, bool], Bridge] = {}
_bridges_lock = threading.Lock()


def shared_bridge(analyzer: Analyzer, *, enabled: bool = True) -> Bridge:
    """One glossary bridge per analyzer configuration (building one analyses every glossary form: about a second)."""
    key = (*analyzer.config, enabled)
    with _bridges_lock:
        bridge = _bridges.get(key)
        if bridge is None:
            bridge = _bridges[key] = Bridge(analyzer, None if enabled else ())
        return bridge


class HybridRetriever:
    """An immutable snapshot of the protocol library, searchable lexically and, with vectors, densely.

    Vectors may cover only some chunks (the library is still embedding): those chunks rank on their lexical score
    alone until their vectors arrive (`with_vectors`).
    """

    def __init__(
        self,
        chunks: Sequence[Chunk],
        *,
        analyzer: Analyzer | None = None,
        settings: RetrievalSettings | None = None,
        embedder: Embedder | None = None,
        vectors: FloatArray | None = None,
        has_vector: BoolArray | None = None,
        dense_languages: frozenset[str] | None = None,
        bridge: Bridge | None = None,
    ) -> None:
        self.chunks = list(chunks)
        self._position = {c.key: i for i, c in enumerate(self.chunks)}
        self.settings = settings or RetrievalSettings()
        self.analyzer = analyzer or Analyzer()
        self._bridge = bridge  # built on first use, in a worker thread (it may load Kiwi)
        self.lexical = LexicalIndex(self.analyzer, self.settings)
        sources: dict[str, int] = {}
        self.lexical.build(
            [(f"{c.title}\n{c.section}", c.text) for c in self.chunks],
            [sources.setdefault(c.source, len(sources)) for c in self.chunks],
        )
        self.embedder = embedder
        self.dense_languages = dense_languages
        self.dense = DenseIndex()
        self.has_vector: BoolArray = np.zeros(len(self.chunks), dtype=bool)
        self._set_vectors(vectors, has_vector)

    @property
    def bridge(self) -> Bridge:
        if self._bridge is None:
            self._bridge = shared_bridge(self.analyzer, enabled=self.settings.term_bridging)
        return self._bridge

    def _set_vectors(self, vectors: FloatArray | None, has_vector: BoolArray | None) -> None:
        if vectors is not None and len(vectors) != len(self.chunks):
            raise ValueError(f"{len(vectors)} vectors for {len(self.chunks)} chunks")
        if vectors is None or not len(vectors):
            self.dense = DenseIndex()
            self.has_vector = np.zeros(len(self.chunks), dtype=bool)
            return
        mask = np.ones(len(self.chunks), dtype=bool) if has_vector is None else np.asarray(has_vector, dtype=bool)
        self.dense = DenseIndex(DenseIndex.normalise(vectors) if mask.any() else None)
        self.has_vector = mask

    def with_vectors(self, vectors: FloatArray | None, has_vector: BoolArray | None = None) -> HybridRetriever:
        """A snapshot with the same chunks and lexical index and new vectors (cheap: nothing is re-analysed)."""
        clone = copy.copy(self)
        clone._set_vectors(vectors, has_vector)
        return clone

    @property
    def mode(self) -> str:
        if self.dense.matrix is None or self.embedder is None:
            return "lexical"
        return "hybrid" if self.has_vector.all() else "hybrid (embedding)"

    @property
    def embedded(self) -> int:
        """How many chunks have a vector in this snapshot."""
        return int(self.has_vector.sum()) if self.dense.matrix is not None else 0

    @property
    def similarity_floor(self) -> float | None:
        """Dense similarity that alone makes a section answerable; None: never (the model cannot tell)."""
        if self.settings.min_similarity is not None:
            return self.settings.min_similarity
        floor = getattr(self.embedder, "similarity_floor", DEFAULT_SIMILARITY_FLOOR)
        return None if floor is None else float(floor)

    def uses_dense_for(self, query: str) -> bool:
        if self.dense.matrix is None or self.embedder is None:
            return False
        return self.dense_languages is None or language_of(query) in self.dense_languages

    async def search(self, query: str, k: int = 5, *, mode: str = "auto") -> list[Hit]:
        """Best chunks first. mode: auto (hybrid when possible), lexical or dense."""
        query = query[: self.settings.max_query_chars]
        if not self.chunks or not query.strip():
            return []
        analysed = await asyncio.to_thread(self._analyse, query, mode != "dense")
        dense: FloatArray | None = None
        if mode != "lexical" and self.uses_dense_for(query):
            assert self.embedder is not None
            try:
                dense = await self._dense_scores(query)
            except LLMError:
                dense = None  # the embedding service is down: lexical still answers
        return await asyncio.to_thread(self._rank, analysed, dense, k, mode)

    def search_sync(self, query: str, k: int = 5, *, mode: str = "lexical") -> list[Hit]:
        """Lexical search in the calling thread (benchmarks and tools that are already off the event loop)."""
        query = query[: self.settings.max_query_chars]
        if not self.chunks or not query.strip():
            return []
        return self._rank(self._analyse(query, True), None, k, mode)

    async def _dense_scores(self, query: str) -> FloatArray:
        assert self.embedder is not None
        if isinstance(self.embedder, QueryEmbedder):
            raw = (await self.embedder.embed_queries([query]))[0]
        else:
            raw = (await self.embedder.embed([query]))[0]
        scores = self.dense.scores(DenseIndex.normalise(raw))
        return np.where(self.has_vector, scores, np.float32(0.0)).astype(np.float32)

    def _analyse(self, query: str, lexical: bool) -> _Query:
        concepts = self.bridge.concepts(self.analyzer.key_terms(query))
        terms: Counter[str] = Counter(self.analyzer.terms(query))
        if not lexical:
            return _Query(query, terms, concepts, np.zeros(self.lexical.size, dtype=np.float32))
        # Concepts carry the words (in either language); Korean bigrams add robustness to spelling and compounds.
        scores = self.lexical.concept_scores(concepts)
        bigrams = Counter({t: c for t, c in terms.items() if t.startswith("#")})
        if bigrams:
            scores = scores + np.float32(self.settings.bigram_weight) * self.lexical.scores(bigrams)
        return _Query(query, terms, concepts, scores)

    def _rank(self, query: _Query, dense: FloatArray | None, k: int, mode: str) -> list[Hit]:
        lexical = query.lexical
        if mode == "dense" and dense is not None:
            fused = np.where(self.has_vector, dense, np.float32(-1.0)).astype(np.float32)
        elif dense is None or mode == "lexical":
            fused = lexical
        else:
            fused = self._fuse(lexical, dense)
        top = _top_k(fused, k)
        top = [i for i in top if fused[i] > 0 or (dense is not None and self.has_vector[i])]
        coverage_all = self.lexical.concept_coverage(query.concepts)
        key = self.lexical.key_concept(query.concepts)
        return [
            Hit(
                chunk=self.chunks[i],
                score=float(fused[i]),
                lexical=float(lexical[i]),
                dense=float(dense[i]) if dense is not None else 0.0,
                coverage=float(coverage_all[i]),
                key_concept=bool(key[i]),
            )
            for i in top
        ]

    def key_terms(self, query: str) -> Counter[str]:
        return Counter(self.analyzer.key_terms(query[: self.settings.max_query_chars]))

    def coverage_of(self, query: str, hits: Sequence[Hit]) -> list[float]:
        """How much of `query` each hit's chunk contains (the same measure as Hit.coverage, for another query)."""
        concepts = self.bridge.concepts(self.analyzer.key_terms(query[: self.settings.max_query_chars]))
        coverage = self.lexical.concept_coverage(concepts)
        return [float(coverage[self._position[h.chunk.key]]) for h in hits]

    def _fuse(self, lexical: FloatArray, dense: FloatArray) -> FloatArray:
        """Convex combination of min-max normalised scores over the union of both sides' candidates.

        A chunk without a vector yet stands in with its lexical score on the dense side, so it is neither
        favoured nor buried while the library is still embedding.
        """
        m = self.settings.candidates
        masked_dense = np.where(self.has_vector, dense, np.float32(-1.0)).astype(np.float32)
        candidates = np.union1d(_top_k(lexical, m), _top_k(masked_dense, m))
        fused = np.zeros_like(lexical)
        lex = _min_max(lexical[candidates])
        present = self.has_vector[candidates]
        den = np.zeros_like(lex)
        if present.any():
            den[present] = _min_max(dense[candidates][present])
        den = np.where(present, den, lex)
        w = self.settings.dense_weight
        fused[candidates] = (1.0 - w) * lex + w * den + 1e-6  # candidates always outrank the rest
        return fused

    def answerable(self, hits: Sequence[Hit]) -> list[Hit]:
        """The covered hits that are close to the best one: a section that covers a question only half as well as
        the best section is from another protocol that shares a few words, and is not quoted alongside it."""
        covered = [h for h in hits if self.is_covered(h) and not is_reference_list(h.chunk)]
        if not covered:
            return []
        best = max(h.coverage for h in covered)
        floor = self.similarity_floor
        return [
            h
            for h in covered
            if h.coverage >= best * self.settings.relative_coverage
            or (floor is not None and h.dense > 0 and h.dense >= floor)
        ]

    def is_covered(self, hit: Hit) -> bool:
        """Whether a hit is relevant enough to answer from: its concepts (either language) or its meaning."""
        floor = self.similarity_floor
        if not hit.key_concept:
            return False
        if hit.coverage >= self.settings.min_coverage:
            return True
        return floor is not None and hit.dense > 0 and hit.dense >= floor


_REFERENCES = re.compile(
    r"^\s*(?:\d+[.)]?\s*)?(references?|bibliography|sources|참고\s*문헌|참고\s*자료|출처)\s*$", re.IGNORECASE
)


def is_reference_list(chunk: Chunk) -> bool:
    """A References / 참고 문헌 section: it names sources (often in the other language) and answers nothing."""
    last = chunk.section.split(" › ")[-1]
    return bool(_REFERENCES.match(last))


def _mostly_korean(text: str) -> bool:
    hangul = len(_HANGUL.findall(text))
    latin = len(_LATIN.findall(text))
    return hangul > latin


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
