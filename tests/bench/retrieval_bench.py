"""Retrieval benchmark: Wardline's retrieval against bm25s, rank_bm25 and MiniLM alone, in one process.

    python tests/bench/retrieval_bench.py [--quick] [--skip-build]

Quality on tests/data/medquad (or --set DIR) and on the bundled Korean/English protocol set, query latency
(p50/p95, ms), and the build time and memory of a 10,000-chunk index. Ratios matter, not absolute times.
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
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from skills.core.fakes import MemoryStore  # noqa: E402
from skills.protocols.chunking import Chunk  # noqa: E402
from skills.protocols.evaluation import (  # noqa: E402
    dedupe_documents,
    read_beir_corpus,
    read_qrels,
    read_queries,
    score_run,
)
from skills.protocols.library import ProtocolLibrary, embedding_text  # noqa: E402

MEDQUAD = ROOT / "tests" / "data" / "medquad"  # in the repository (CC BY 4.0, see its SOURCE.md)
PROTOCOLS = ROOT / "skills" / "protocols" / "samples"
PROTOCOL_EVAL = ROOT / "tests" / "data" / "protocols_eval"

Search = Callable[[str], list[str]]  # query -> ranked document ids


def measure(name: str, search: Search, queries: dict[str, str], qrels: dict[str, dict[str, int]]) -> dict[str, object]:
    run: dict[str, list[str]] = {}
    latencies: list[float] = []
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
            f"{r['ndcg_at_10']:.3f} | {r['latency_p50_ms']:.2f} | {r['latency_p95_ms']:.2f} |"
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


def rank_bm25_search(chunks: Sequence[Chunk]) -> Search:
    from rank_bm25 import BM25Okapi

    ids, texts = docs_of(chunks)
    bm25 = BM25Okapi([t.lower().split() for t in texts])

    def search(query: str) -> list[str]:
        scores = bm25.get_scores(query.lower().split())
        order = np.argsort(-scores)[:50]
        return [d for d, _ in dedupe_documents(((ids[int(i)], 0.0) for i in order), 10)]

    return search


def minilm_search(chunks: Sequence[Chunk], vectors: np.ndarray, embed: Callable[[str], np.ndarray]) -> Search:
    ids = [c.source for c in chunks]

    def search(query: str) -> list[str]:
        scores = vectors @ embed(query)
        order = np.argsort(-scores)[:50]
        return [d for d, _ in dedupe_documents(((ids[int(i)], 0.0) for i in order), 10)]

    return search


def wardline_search(library: ProtocolLibrary, mode: str) -> Search:
    loop = asyncio.new_event_loop()

    def search(query: str) -> list[str]:
        hits = loop.run_until_complete(library.retriever.search(query, 50, mode=mode))
        return [d for d, _ in dedupe_documents(((h.chunk.source, h.score) for h in hits), 10)]

    return search


class CachedEmbedder:
    """The local MiniLM; passage vectors are computed once and shared, queries are embedded every time."""

    def __init__(self) -> None:
        from bot.embeddings import LocalEmbedder

        self.inner = LocalEmbedder()
        self.cache: dict[str, list[float]] = {}

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def languages(self) -> frozenset[str] | None:
        return self.inner.languages

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        if all(t in self.cache for t in texts):
            return [self.cache[t] for t in texts]
        return self.inner.embed_sync(texts)  # a query: pay for the model every time, as the bot does

    def embed_now(self, texts: Sequence[str]) -> list[list[float]]:
        missing = [t for t in dict.fromkeys(texts) if t not in self.cache]
        if missing:
            for text, vector in zip(missing, self.inner.embed_sync(missing), strict=True):
                self.cache[text] = vector
        return [self.cache[t] for t in texts]


def quality(set_dir: Path, label: str, embedder: CachedEmbedder | None, beir: bool) -> list[dict[str, object]]:
    queries = read_queries(set_dir / "queries.jsonl")
    qrels = read_qrels(set_dir / "qrels.tsv")
    lexical = ProtocolLibrary(MemoryStore())
    if beir:
        chunks = read_beir_corpus(set_dir / "corpus.jsonl")
        asyncio.run(lexical.index_chunks(chunks))
    else:
        asyncio.run(lexical.sync(PROTOCOLS))
        chunks = lexical.retriever.chunks
    rows = [
        measure("bm25s (stemmed, stop words)", bm25s_search(chunks, stemmed=True), queries, qrels),
        measure("bm25s (default tokenizer)", bm25s_search(chunks, stemmed=False), queries, qrels),
        measure("rank_bm25 BM25Okapi", rank_bm25_search(chunks), queries, qrels),
        measure("wardline lexical", wardline_search(lexical, "lexical"), queries, qrels),
    ]
    if embedder is not None:
        vectors = np.asarray(embedder.embed_now([embedding_text(c) for c in chunks]), dtype=np.float32)
        hybrid = ProtocolLibrary(MemoryStore(), embedder=embedder)
        asyncio.run(hybrid.index_chunks(chunks) if beir else hybrid.sync(PROTOCOLS))

        def embed_query(text: str) -> np.ndarray:
            return np.asarray(embedder.inner.embed_sync([text])[0], dtype=np.float32)

        rows.append(measure("MiniLM alone (cosine)", minilm_search(chunks, vectors, embed_query), queries, qrels))
        rows.append(measure("wardline hybrid (lexical + MiniLM)", wardline_search(hybrid, "auto"), queries, qrels))
    print_table(f"{label}: {len(queries)} queries, {len(chunks)} chunks", rows)
    return rows


def build_child(n: int, hybrid: bool) -> None:
    """Run in a fresh process so resident memory is this index's own."""
    chunks = synthetic_chunks(n)
    embedder = None
    if hybrid:
        from bot.embeddings import LocalEmbedder

        embedder = LocalEmbedder()
    library = ProtocolLibrary(MemoryStore(), embedder=embedder)
    started = time.perf_counter()
    asyncio.run(library.index_chunks(chunks))
    seconds = time.perf_counter() - started
    rss_mb = peak_rss_mb()
    print(
        json.dumps({"chunks": len(library.retriever.chunks), "seconds": round(seconds, 2), "max_rss_mb": round(rss_mb)})
    )


def peak_rss_mb() -> float:
    """Peak resident memory of this process (VmHWM; ru_maxrss would include the parent's peak across exec)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def synthetic_chunks(n: int) -> list[Chunk]:
    """n chunks cut from MedQuAD passages (about 500 characters each, cycling through the corpus)."""
    base = read_beir_corpus(MEDQUAD / "corpus.jsonl", max_chars=500)
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
    modes = [("wardline lexical", False)] + ([("wardline hybrid (MiniLM on CPU)", True)] if hybrid else [])
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
    parser.add_argument("--skip-build", action="store_true")
    parser.add_argument("--build-chunks", type=int, default=10_000)
    parser.add_argument("--build-child", type=int)
    parser.add_argument("--hybrid", action="store_true")
    args = parser.parse_args()
    if args.build_child:
        build_child(args.build_child, args.hybrid)
        return
    embedder = None
    if not args.quick:
        from bot.embeddings import local_model_available

        if local_model_available():
            embedder = CachedEmbedder()
        else:
            print("(wardline[local] not installed: lexical systems only)")
    print(f"# Retrieval benchmark ({time.strftime('%Y-%m-%d')}, {os.cpu_count()} cores)")
    quality(args.set, args.set.name, embedder, beir=True)
    quality(PROTOCOL_EVAL, "bundled protocols (30 English + 30 Korean questions)", embedder, beir=False)
    if not args.skip_build:
        build_report(args.build_chunks, hybrid=embedder is not None)


if __name__ == "__main__":
    main()
