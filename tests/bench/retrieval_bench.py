"""Retrieval benchmark: every Wardline retrieval system and each part of the hybrid, against peers, in one process.

    python tests/bench/retrieval_bench.py [--quick] [--skip-build] [--minilm] [--only LABEL]

Sets (hit@5 = a relevant document in the top 5; MRR@10; latency p50/p95 in ms, queries one at a time):
- tests/data/medquad (or --set DIR; CC BY 4.0, see its SOURCE.md): English questions over English NIH/CDC passages;
- tests/data/medquad_ko: Korean renderings of 40 of those questions over the same passages (tune/report split);
- tests/data/korean_health: Korean questions over a small Korean corpus plus the bundled samples as distractors;
- tests/data/protocols_eval: the bundled Korean/English protocols, split en / ko / en→ko (cross-lingual).
Then the build time and memory of a 10,000-chunk index. Ratios to bm25s matter, not absolute times. Passage vectors
are cached in var/bench-vectors/ (never embedded twice); question vectors are computed per query, as the bot does.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from bot.embeddings import LocalEmbedder, MiniLMEmbedder, local_model_available, minilm_available  # noqa: E402
from skills.core.fakes import MemoryStore  # noqa: E402
from skills.protocols.analysis import Analyzer  # noqa: E402
from skills.protocols.chunking import Chunk  # noqa: E402
from skills.protocols.evaluation import (  # noqa: E402
    dedupe_documents,
    read_beir_corpus,
    read_qrels,
    read_queries,
    score_run,
)
from skills.protocols.library import ProtocolLibrary, embedding_text  # noqa: E402
from skills.protocols.retrieval import RetrievalSettings  # noqa: E402
from tests.bench.vector_cache import VectorCache  # noqa: E402

MEDQUAD = ROOT / "tests" / "data" / "medquad"  # in the repository (CC BY 4.0, see its SOURCE.md)
PROTOCOLS = ROOT / "skills" / "protocols" / "samples"
PROTOCOL_EVAL = ROOT / "tests" / "data" / "protocols_eval"
MEDQUAD_KO = ROOT / "tests" / "data" / "medquad_ko"
KOREAN_HEALTH = ROOT / "tests" / "data" / "korean_health"
CROSS_EN = {f"en-{n}" for n in range(25, 31)}  # English questions whose answer is only in a Korean document

Search = Callable[[str], list[str]]  # query -> ranked document ids


def measure(name: str, search: Search, queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> dict[str, object]:
    run: dict[str, list[str]] = {}
    latencies: list[float] = []
    for text in list(queries.values())[:1]:
        search(text)  # warm-up: lazy loads (Kiwi, the glossary, the model) are start-up costs, not query latency
    for qid, text in queries.items():
        started = time.perf_counter()
        run[qid] = search(text)
        latencies.append((time.perf_counter() - started) * 1000)
    metrics = score_run(run, qrels, latencies, k=5)
    return {"system": name, **metrics.as_dict()}


def print_table(title: str, rows: Sequence[dict[str, object]]) -> None:
    print(f"\n## {title}\n")
    print("| system | hit@5 | recall@5 | MRR@10 | nDCG@10 | p50 ms | p95 ms |")
    print("|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['system']} | {r['hit_at_k']:.3f} | {r['recall_at_k']:.3f} | {r['mrr_at_10']:.3f} | "
            f"{r['ndcg_at_10']:.3f} | {r['latency_p50_ms']:.2f} | {r['latency_p95_ms']:.2f} |",
            flush=True,
        )


def docs_of(chunks: Sequence[Chunk]) -> tuple[list[str], list[str]]:
    return [c.source for c in chunks], [f"{c.title}\n{c.text}" for c in chunks]


def bm25s_search(chunks: Sequence[Chunk], *, stemmed: bool) -> Search:
    import bm25s
    import Stemmer

    ids, texts = docs_of(chunks)
    stemmer = Stemmer.Stemmer("english") if stemmed else None
    stopwords = "en" if stemmed else None
    retriever = bm25s.BM25()
    retriever.index(
        bm25s.tokenize(texts, stopwords=stopwords, stemmer=stemmer, show_progress=False), show_progress=False
    )

    def search(query: str) -> list[str]:
        tokens = bm25s.tokenize([query], stopwords=stopwords, stemmer=stemmer, show_progress=False)
        results, _ = retriever.retrieve(tokens, k=min(50, len(ids)), show_progress=False, n_threads=1)
        return [d for d, _ in dedupe_documents(((ids[int(i)], 0.0) for i in results[0]), 10)]

    return search


def kiwi_bm25_search(chunks: Sequence[Chunk]) -> Search:
    """bm25s over Kiwi content morphemes and English stems: the plain Korean lexical baseline."""
    import bm25s

    analyzer = Analyzer(korean_bigrams=False)
    ids, texts = docs_of(chunks)
    vocab: dict[str, int] = {"": 0}
    corpus = [[vocab.setdefault(t, len(vocab)) for t in analyzer.key_terms(text)] or [0] for text in texts]
    retriever = bm25s.BM25()
    retriever.index(bm25s.tokenization.Tokenized(ids=corpus, vocab=vocab), show_progress=False)

    def search(query: str) -> list[str]:
        tokens = [vocab[t] for t in analyzer.key_terms(query) if t in vocab] or [0]
        results, _ = retriever.retrieve([tokens], k=min(50, len(ids)), show_progress=False, n_threads=1)
        return [d for d, _ in dedupe_documents(((ids[int(i)], 0.0) for i in results[0]), 10)]

    return search


def dense_search(chunks: Sequence[Chunk], vectors: np.ndarray, embed: Callable[[str], np.ndarray]) -> Search:
    ids = [c.source for c in chunks]

    def search(query: str) -> list[str]:
        scores = vectors @ embed(query)
        order = np.argsort(-scores)[:50]
        return [d for d, _ in dedupe_documents(((ids[int(i)], 0.0) for i in order), 10)]

    return search


def rrf_search(a: Search, b: Search, k: int = 60) -> Search:
    """Plain reciprocal rank fusion of two systems' document ranks (the textbook hybrid)."""

    def search(query: str) -> list[str]:
        scores: dict[str, float] = {}
        for ranked in (a(query), b(query)):
            for rank, doc in enumerate(ranked, 1):
                scores[doc] = scores.get(doc, 0.0) + 1.0 / (k + rank)
        return sorted(scores, key=lambda d: -scores[d])[:10]

    return search


def wardline_search(library: ProtocolLibrary, mode: str) -> Search:
    loop = asyncio.new_event_loop()

    def search(query: str) -> list[str]:
        hits = loop.run_until_complete(library.retriever.search(query, 50, mode=mode))
        return [d for d, _ in dedupe_documents(((h.chunk.source, h.score) for h in hits), 10)]

    return search


class CachedEmbedder:
    """A local model; passage vectors come from the disk cache (computed once), queries are embedded every time."""

    def __init__(self, inner: LocalEmbedder | MiniLMEmbedder, *, memo_queries: bool = False) -> None:
        self.inner = inner
        self.cache = VectorCache(inner.name)
        self.memo: dict[str, list[float]] | None = {} if memo_queries else None
        self.similarity_floor = inner.similarity_floor

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def languages(self) -> frozenset[str] | None:
        return self.inner.languages

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        return self.embed_now(texts)

    async def embed_queries(self, texts: Sequence[str]) -> list[list[float]]:
        return self.query_now(texts)  # a question: pay for the model every time, as the bot does

    def query_now(self, texts: Sequence[str]) -> list[list[float]]:
        if self.memo is not None and all(t in self.memo for t in texts):
            return [self.memo[t] for t in texts]  # --memo-queries: later systems' latency excludes the model
        if isinstance(self.inner, LocalEmbedder):
            vectors = self.inner.embed_queries_sync(texts)
        else:
            vectors = self.inner.embed_sync(texts)
        if self.memo is not None:
            self.memo.update(zip(texts, vectors, strict=True))
        return vectors

    def embed_now(self, texts: Sequence[str]) -> list[list[float]]:
        self.cache.fill(texts, self.inner.embed_sync)
        return [[float(x) for x in self.cache.vectors[VectorCache.key(t)]] for t in texts]


@dataclass
class EvalSet:
    """One evaluation set: its chunks, questions and judgements, optionally split into tune/report."""

    label: str
    chunks: list[Chunk]
    queries: dict[str, str]
    qrels: dict[str, dict[str, int]]
    splits: dict[str, str] = field(default_factory=dict)  # query id -> "tune" or "report"


def library_for(
    chunks: Sequence[Chunk], embedder: CachedEmbedder | None, settings: RetrievalSettings
) -> ProtocolLibrary:
    library = ProtocolLibrary(MemoryStore(), embedder=embedder, settings=settings)
    asyncio.run(library.index_chunks(chunks))
    return library


def evaluate(data: EvalSet, embedders: Sequence[CachedEmbedder]) -> list[dict[str, object]]:
    """Every system on one set, side by side (each part of the hybrid alone too)."""
    chunks, queries, qrels = data.chunks, data.queries, data.qrels
    lexical = library_for(chunks, None, RetrievalSettings())
    unbridged = library_for(chunks, None, RetrievalSettings(term_bridging=False))
    bm25s_stemmed = bm25s_search(chunks, stemmed=True)
    systems: list[tuple[str, Search]] = [
        ("bm25s (stemmed, stop words)", bm25s_stemmed),
        ("BM25 over Kiwi morphemes", kiwi_bm25_search(chunks)),
        ("wardline lexical, no term bridging", wardline_search(unbridged, "lexical")),
        ("wardline lexical (bridged)", wardline_search(lexical, "lexical")),
    ]
    for embedder in embedders:
        short = embedder.name.removeprefix("local:")
        vectors = np.asarray(embedder.embed_now([embedding_text(c) for c in chunks]), dtype=np.float32)

        def embed_query(text: str, embedder: CachedEmbedder = embedder) -> np.ndarray:
            return np.asarray(embedder.query_now([text])[0], dtype=np.float32)

        dense = dense_search(chunks, vectors, embed_query)
        hybrid = library_for(chunks, embedder, RetrievalSettings())
        systems += [
            (f"{short} alone (cosine)", dense),
            (f"RRF(bm25s, {short})", rrf_search(bm25s_stemmed, dense)),
            (f"wardline hybrid (lexical + {short})", wardline_search(hybrid, "auto")),
        ]
    groups = sorted(set(data.splits.values())) or ["all"]
    rows: list[dict[str, object]] = []
    for group in groups:
        chosen = {q: t for q, t in queries.items() if data.splits.get(q, "all") == group}
        judged = {q: r for q, r in qrels.items() if q in chosen}
        table = [{**measure(name, search, chosen, judged), "split": group} for name, search in systems]
        print_table(f"{data.label} [{group}]: {len(chosen)} queries, {len(chunks)} chunks", table)
        rows += table
    return rows


def read_set(folder: Path, label: str, extra_chunks: Sequence[Chunk] = ()) -> EvalSet:
    """A BEIR folder; a query line may carry "split" (tune or report)."""
    splits: dict[str, str] = {}
    for line in (folder / "queries.jsonl").read_text(encoding="utf-8").splitlines():
        if line.strip() and "split" in (row := json.loads(line)):
            splits[row["_id"]] = row["split"]
    chunks = read_beir_corpus(folder / "corpus.jsonl") + list(extra_chunks)
    return EvalSet(label, chunks, read_queries(folder / "queries.jsonl"), read_qrels(folder / "qrels.tsv"), splits)


def sample_chunks() -> list[Chunk]:
    library = ProtocolLibrary(MemoryStore())
    asyncio.run(library.sync(PROTOCOLS))
    return list(library.retriever.chunks)


def protocol_set() -> EvalSet:
    queries = read_queries(PROTOCOL_EVAL / "queries.jsonl")
    splits = {q: ("en→ko (cross-lingual)" if q in CROSS_EN else q[:2]) for q in queries}
    return EvalSet("bundled protocols", sample_chunks(), queries, read_qrels(PROTOCOL_EVAL / "qrels.tsv"), splits)


def build_child(n: int, hybrid: bool) -> None:
    """Run in a fresh process so resident memory is this index's own."""
    chunks = synthetic_chunks(n)
    embedder = None
    if hybrid:
        embedder = RandomPassageEmbedder()
        embedder.model.embed_queries_sync(["load the model so its memory counts"])
    library = ProtocolLibrary(MemoryStore(), embedder=embedder)
    started = time.perf_counter()
    asyncio.run(library.index_chunks(chunks))
    seconds = time.perf_counter() - started
    rss_mb = peak_rss_mb()
    print(
        json.dumps({"chunks": len(library.retriever.chunks), "seconds": round(seconds, 2), "max_rss_mb": round(rss_mb)})
    )


class RandomPassageEmbedder:
    """Memory of a 10k hybrid index without an hour of CPU: e5 is loaded, passage vectors are random unit vectors."""

    def __init__(self) -> None:
        self.model = LocalEmbedder()
        self.rng = np.random.default_rng(0)

    name = "bench:random-384"
    languages = None

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        vectors = self.rng.standard_normal((len(texts), 384)).astype(np.float32)
        return (vectors / np.linalg.norm(vectors, axis=1, keepdims=True)).tolist()  # type: ignore[no-any-return]


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss would include the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_chunks(n: int) -> list[Chunk]:
    """n chunks cut from MedQuAD passages (about 500 characters each, cycling through the corpus)."""
    corpus = MEDQUAD / "corpus.jsonl"
    if not corpus.exists():
        corpus = MEDQUAD_KO / "corpus.jsonl"  # the same passages, copied for CI
    base = read_beir_corpus(corpus, max_chars=500)
    chunks = []
    for i in range(n):
        source = base[i % len(base)]
        text = source.text if i < len(base) else f"{source.text} (copy {i // len(base)})"
        chunks.append(Chunk(f"c{i:06d}", f"{source.source}-{i}", source.title, source.section, text, i))
    return chunks


def bm25s_build(n: int) -> float:
    import bm25s
    import Stemmer

    texts = [f"{c.title}\n{c.text}" for c in synthetic_chunks(n)]
    started = time.perf_counter()
    retriever = bm25s.BM25()
    tokens = bm25s.tokenize(texts, stopwords="en", stemmer=Stemmer.Stemmer("english"), show_progress=False)
    retriever.index(tokens, show_progress=False)
    return time.perf_counter() - started


def build_report(n: int, hybrid: bool) -> None:
    print(f"\n## Index build: {n:,} chunks\n")
    print("| system | build s | max RSS MB |")
    print("|---|---|---|")
    modes = [("wardline lexical", False)] + (
        [("wardline hybrid (e5 loaded, 10k stored vectors)", True)] if hybrid else []
    )
    for name, with_vectors in modes:
        output = subprocess.run(
            [sys.executable, __file__, "--build-child", str(n), *(["--hybrid"] if with_vectors else [])],
            check=True,
            capture_output=True,
            text=True,
            env={**os.environ, "TOKENIZERS_PARALLELISM": "false"},
        ).stdout
        result = json.loads(output.strip().splitlines()[-1])
        print(f"| {name} | {result['seconds']:.2f} | {result['max_rss_mb']} |")
    print(f"| bm25s (stemmed) | {bm25s_build(n):.2f} | (in this process) |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--set", type=Path, default=MEDQUAD, help="a BEIR-layout folder (default: medquad)")
    parser.add_argument("--quick", action="store_true", help="lexical only, 10k build without embeddings")
    parser.add_argument("--minilm", action="store_true", help="also MiniLM (needs the wardline[minilm] extra)")
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--only", help="run only this set: medquad, medquad_ko, korean_health or protocols")
    parser.add_argument(
        "--memo-queries",
        action="store_true",
        help="embed each question once (quality only: dense rows after the first no longer include the model's time)",
    )
    parser.add_argument("--build-chunks", type=int, default=10_000)
    parser.add_argument("--build-child", type=int)
    parser.add_argument("--hybrid", action="store_true")
    args = parser.parse_args()
    if args.build_child:
        build_child(args.build_child, args.hybrid)
        return
    embedders: list[CachedEmbedder] = []
    if not args.quick:
        if local_model_available():
            embedders.append(CachedEmbedder(LocalEmbedder(), memo_queries=args.memo_queries))
        else:
            print("(wardline[local] not installed: lexical systems only)")
        if args.minilm and minilm_available():
            embedders.append(CachedEmbedder(MiniLMEmbedder(), memo_queries=args.memo_queries))
    print(f"# Retrieval benchmark ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)")
    sets: list[tuple[str, Callable[[], EvalSet]]] = [
        ("medquad", lambda: read_set(args.set, f"{args.set.name} (English questions, English passages)")),
        ("medquad_ko", lambda: read_set(MEDQUAD_KO, "medquad_ko (Korean questions, English passages)")),
        (
            "korean_health",
            lambda: read_set(
                KOREAN_HEALTH, "korean_health (Korean questions, Korean passages + samples)", sample_chunks()
            ),
        ),
        ("protocols", protocol_set),
    ]
    for name, make in sets:
        if args.only and args.only != name:
            continue
        if name == "medquad" and not (args.set / "corpus.jsonl").exists():
            print(f"({args.set} not found: skipped)")
            continue
        evaluate(make(), embedders)
    if not args.skip_build:
        build_report(args.build_chunks, hybrid=bool(embedders))


if __name__ == "__main__":
    main()
