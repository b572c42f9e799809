"""Retrieval evaluation: BEIR-layout sets, the standard metrics, and TREC run files."""

from __future__ import annotations

import json
import math
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from skills.protocols.chunking import Chunk, split_text


class EvalInputError(Exception):
    """An evaluation file is missing or malformed; the message names the file and line."""


@dataclass(frozen=True, slots=True)
class Metrics:
    """Figures for one run; latency in milliseconds."""

    queries: int
    k: int
    hit_at_k: float
    recall_at_k: float
    mrr_at_10: float
    ndcg_at_10: float
    latency_p50_ms: float
    latency_p95_ms: float

    def as_dict(self) -> dict[str, float | int]:
        return asdict(self)


def read_queries(path: Path) -> dict[str, str]:
    """BEIR queries.jsonl: {"_id", "text"} per line."""
    queries: dict[str, str] = {}
    for number, row in _jsonl(path):
        qid, text = row.get("_id"), row.get("text")
        if not isinstance(qid, str) or not isinstance(text, str):
            raise EvalInputError(f"{path}:{number}: needs string fields _id and text")
        queries[qid] = text
    return queries


def read_qrels(path: Path) -> dict[str, dict[str, int]]:
    """BEIR qrels.tsv: query-id, corpus-id, score (a header line is allowed)."""
    qrels: dict[str, dict[str, int]] = {}
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise EvalInputError(f"{path}: {exc.strerror}") from exc
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        parts = line.split("\t") if "\t" in line else line.split()
        if number == 1 and parts[0] in ("query-id", "query_id", "qid"):
            continue
        if len(parts) < 3:
            raise EvalInputError(f"{path}:{number}: expected query-id, corpus-id and score")
        try:
            score = int(float(parts[2]))
        except ValueError as exc:
            raise EvalInputError(f"{path}:{number}: score {parts[2]!r} is not a number") from exc
        if score > 0:
            qrels.setdefault(parts[0], {})[parts[1]] = score
    return qrels


def read_beir_corpus(path: Path, *, max_chars: int = 1500) -> list[Chunk]:
    """BEIR corpus.jsonl as chunks; a long passage becomes several chunks of the same document id."""
    chunks: list[Chunk] = []
    for number, row in _jsonl(path):
        doc_id = row.get("_id")
        if not isinstance(doc_id, str):
            raise EvalInputError(f"{path}:{number}: needs a string _id")
        title = str(row.get("title") or "")
        for piece in split_text(str(row.get("text") or ""), max_chars):
            chunks.append(Chunk(f"{doc_id}#{len(chunks):06d}", doc_id, title, title, piece, len(chunks)))
    return chunks


def _jsonl(path: Path) -> Iterable[tuple[int, dict[str, object]]]:
    try:
        handle = path.open(encoding="utf-8")
    except OSError as exc:
        raise EvalInputError(f"{path}: {exc.strerror}") from exc
    with handle:
        for number, line in enumerate(handle, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise EvalInputError(f"{path}:{number}: not JSON ({exc.msg})") from exc
            if not isinstance(row, dict):
                raise EvalInputError(f"{path}:{number}: not a JSON object")
            yield number, row


def score_run(
    run: Mapping[str, Sequence[str]],
    qrels: Mapping[str, Mapping[str, int]],
    latencies_ms: Sequence[float],
    k: int = 5,
) -> Metrics:
    """Metrics over the queries that have judgements; `run` maps query id to ranked document ids."""
    hits, recalls, rrs, ndcgs = [], [], [], []
    for qid, relevant in qrels.items():
        ranked = list(run.get(qid, ()))
        top_k = ranked[:k]
        found = [d for d in top_k if d in relevant]
        hits.append(1.0 if found else 0.0)
        recalls.append(len(set(found)) / len(relevant))
        rr = 0.0
        for rank, doc in enumerate(ranked[:10], 1):
            if doc in relevant:
                rr = 1.0 / rank
                break
        rrs.append(rr)
        dcg = sum(relevant.get(doc, 0) / math.log2(rank + 1) for rank, doc in enumerate(ranked[:10], 1))
        ideal = sorted(relevant.values(), reverse=True)[:10]
        idcg = sum(g / math.log2(rank + 1) for rank, g in enumerate(ideal, 1))
        ndcgs.append(dcg / idcg if idcg else 0.0)
    n = len(qrels)
    return Metrics(
        queries=n,
        k=k,
        hit_at_k=_mean(hits),
        recall_at_k=_mean(recalls),
        mrr_at_10=_mean(rrs),
        ndcg_at_10=_mean(ndcgs),
        latency_p50_ms=percentile(latencies_ms, 50),
        latency_p95_ms=percentile(latencies_ms, 95),
    )


def _mean(values: Sequence[float]) -> float:
    return round(statistics.fmean(values), 4) if values else 0.0


def percentile(values: Sequence[float], q: float) -> float:
    """Nearest-rank percentile, rounded to 0.001 ms."""
    if not values:
        return 0.0
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return round(ordered[rank - 1], 3)


def write_trec_run(path: Path, run: Mapping[str, Sequence[tuple[str, float]]], tag: str) -> None:
    """`qid Q0 docid rank score tag`, the format trec_eval and pytrec_eval read."""
    with path.open("w", encoding="utf-8") as handle:
        for qid, ranked in run.items():
            for rank, (doc, score) in enumerate(ranked[:10], 1):
                handle.write(f"{qid} Q0 {doc} {rank} {score:.6f} {tag}\n")


def dedupe_documents(sources_with_scores: Iterable[tuple[str, float]], limit: int) -> list[tuple[str, float]]:
    """Chunk hits to document ranks: a document ranks where its best chunk ranks."""
    seen: dict[str, float] = {}
    for source, score in sources_with_scores:
        if source not in seen:
            seen[source] = score
            if len(seen) == limit:
                break
    return list(seen.items())
