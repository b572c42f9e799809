"""The `wardline` command: serve, ask, ingest, eval, config (and manifest)."""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from bot.commands import MODULES
from bot.settings import Settings, SettingsError, reference_table


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    try:
        settings = Settings.load()
        result: int = args.func(args, settings)
        return result
    except SettingsError as exc:
        print(f"wardline: configuration error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="wardline", description="Wardline, a Teams bot for hospital wards.")
    commands = parser.add_subparsers(dest="command")

    serve = commands.add_parser("serve", help="run the bot (POST /api/messages, GET /healthz, /readyz)")
    serve.add_argument("--host", help="address to bind (default WARDLINE_HOST or 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (default PORT or 3978)")
    serve.add_argument(
        "--insecure-anonymous",
        action="store_true",
        help="without MicrosoftAppId: bind a non-loopback address and answer any serviceUrl (never in production)",
    )
    serve.set_defaults(func=_serve)

    ask = commands.add_parser("ask", help="answer one protocol question from the command line")
    ask.add_argument("question")
    ask.add_argument("--json", action="store_true", help="print a JSON object: answer, citations, mode")
    ask.set_defaults(func=_ask)

    ingest = commands.add_parser("ingest", help="index a folder of protocols (only what changed)")
    ingest.add_argument("folder", nargs="?", type=Path, help="default: WARDLINE_PROTOCOLS_DIR or the samples")
    ingest.set_defaults(func=_ingest)

    evaluate = commands.add_parser("eval", help="measure retrieval on a BEIR-layout set")
    evaluate.add_argument("--corpus", type=Path, required=True, help="corpus.jsonl or a folder of protocols")
    evaluate.add_argument("--queries", type=Path, required=True, help="queries.jsonl")
    evaluate.add_argument("--qrels", type=Path, required=True, help="qrels.tsv")
    evaluate.add_argument("--k", type=int, default=5, help="cut-off for hit@k and recall@k (default 5)")
    evaluate.add_argument("--mode", choices=("auto", "lexical", "dense", "hybrid"), default="auto")
    evaluate.add_argument("--json", action="store_true", help="print one JSON object")
    evaluate.add_argument("--run", type=Path, help="also write the top 10 per query as a TREC run file")
    evaluate.set_defaults(func=_eval)

    manifest = commands.add_parser("manifest", help="the Teams app package")
    manifest_commands = manifest.add_subparsers(dest="manifest_command", required=True)
    build = manifest_commands.add_parser("build", help="write the zip Teams accepts for sideloading")
    build.add_argument("--out", type=Path, help="zip to write (default: WARDLINE_DATA_DIR/wardline-teams-app.zip)")
    build.set_defaults(func=_manifest_build)

    config = commands.add_parser("config", help="print the configuration reference (Markdown)")
    config.set_defaults(func=_config)

    for name in MODULES:  # feature commands (channels, alerts, handover, ...) each live in their own module
        importlib.import_module(name).register(commands)
    return parser


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from aiohttp import web

    from bot.app import create_app
    from bot.logs import configure_logging
    from bot.teams.connector import is_loopback_host

    settings = settings.replace(
        host=args.host or settings.host, port=args.port or settings.port, insecure_anonymous=args.insecure_anonymous
    )
    if not settings.app_id and not settings.insecure_anonymous and not is_loopback_host(settings.host):
        print(
            f"wardline serve: refusing to bind {settings.host} without MicrosoftAppId (anyone could post as Teams); "
            "set MicrosoftAppId, bind 127.0.0.1, or pass --insecure-anonymous",
            file=sys.stderr,
        )
        return 2
    configure_logging(settings.log_level, settings.log_format)
    print(f"Wardline listening on http://{settings.host}:{settings.port}/api/messages", file=sys.stderr)
    web.run_app(create_app(settings), host=settings.host, port=settings.port, print=None)
    return 0


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    from bot.logs import configure_logging

    configure_logging("WARNING", settings.log_format)
    return asyncio.run(_ask_async(args, settings))


async def _ask_async(args: argparse.Namespace, settings: Settings) -> int:
    from bot.services import build_services
    from skills.protocols.assistant import ProtocolAssistant

    services = await build_services(settings)
    try:
        await services.library.sync(services.protocols_dir)
        assistant = ProtocolAssistant(services.library, services.store, _clock(), services.llm)
        answer = await assistant.answer(args.question)
    finally:
        await services.close()
    citations = [
        {"position": c.position, "title": c.title, "section": c.section, "source": c.source} for c in answer.citations
    ]
    if args.json:
        print(json.dumps({"answer": answer.text, "citations": citations, "mode": answer.mode}, ensure_ascii=False))
    else:
        print(answer.text)
        if citations:
            print()
            for c in citations:
                print(f"[{c['position']}] {c['title']} › {c['section']} ({c['source']})")
    return 0


def _clock() -> Any:
    from bot.clock import SystemClock

    return SystemClock()


def _ingest(args: argparse.Namespace, settings: Settings) -> int:
    from bot.logs import configure_logging
    from skills.protocols import SAMPLES

    configure_logging("WARNING", settings.log_format)
    configured = settings.protocols_dir or SAMPLES
    folder: Path = args.folder or configured
    if not folder.is_dir():
        print(f"wardline: {folder} is not a folder", file=sys.stderr)
        return 2
    if folder.resolve() != configured.resolve():
        print(
            f"note: the bot re-reads WARDLINE_PROTOCOLS_DIR ({configured}); "
            f"set it to {folder} so the bot keeps this library.",
            file=sys.stderr,
        )
    return asyncio.run(_ingest_async(folder, settings))


async def _ingest_async(folder: Path, settings: Settings) -> int:
    from tqdm import tqdm

    from bot.services import build_services

    services = await build_services(settings)
    bar = tqdm(total=0, unit="file", desc="ingesting", file=sys.stderr)

    def progress(name: str, done: int, total: int) -> None:
        bar.total = total
        bar.set_postfix_str(name[-40:], refresh=False)
        bar.n = done
        bar.refresh()

    try:
        report = await services.library.sync(folder, progress)
    finally:
        bar.close()
        await services.close()
    print(report.summary())
    for source, reason in report.failed.items():
        print(f"  failed: {source}: {reason}", file=sys.stderr)
    return 1 if report.failed else 0


def _eval(args: argparse.Namespace, settings: Settings) -> int:
    from bot.logs import configure_logging
    from skills.protocols.evaluation import EvalInputError

    configure_logging("WARNING", settings.log_format)
    try:
        return asyncio.run(_eval_async(args, settings))
    except EvalInputError as exc:
        print(f"wardline eval: {exc}", file=sys.stderr)
        return 2


async def _eval_async(args: argparse.Namespace, settings: Settings) -> int:
    from bot.llm import AzureOpenAIClient
    from bot.services import choose_embedder
    from skills.core.fakes import MemoryStore
    from skills.protocols.evaluation import (
        EvalInputError,
        dedupe_documents,
        read_beir_corpus,
        read_qrels,
        read_queries,
        score_run,
        write_trec_run,
    )
    from skills.protocols.library import ProtocolLibrary

    queries = read_queries(args.queries)
    qrels = read_qrels(args.qrels)
    azure = AzureOpenAIClient(settings) if settings.azure_embeddings_configured else None
    embedder = None if args.mode == "lexical" else choose_embedder(settings, azure)
    if args.mode in ("dense", "hybrid") and embedder is None:
        raise EvalInputError(f"--mode {args.mode} needs embeddings: install wardline[local] or configure Azure")
    library = ProtocolLibrary(MemoryStore(), embedder=embedder)
    started = time.perf_counter()
    if args.corpus.is_dir():
        await library.sync(args.corpus)
    elif args.corpus.is_file():
        await library.index_chunks(read_beir_corpus(args.corpus))
    else:
        raise EvalInputError(f"{args.corpus}: no such file or folder")
    build_seconds = time.perf_counter() - started
    retriever = library.retriever
    mode = "auto" if args.mode == "hybrid" else args.mode
    run: dict[str, list[tuple[str, float]]] = {}
    latencies: list[float] = []
    for qid, text in queries.items():
        t0 = time.perf_counter()
        hits = await retriever.search(text, 50, mode=mode)
        latencies.append((time.perf_counter() - t0) * 1000)
        run[qid] = dedupe_documents(((h.chunk.source, h.score) for h in hits), 10)
    if azure is not None:
        await azure.close()
    metrics = score_run({q: [d for d, _ in r] for q, r in run.items()}, qrels, latencies, k=args.k)
    used = retriever.mode if mode != "lexical" else "lexical"
    if args.run:
        write_trec_run(args.run, run, f"wardline-{used}")
    result = {
        **metrics.as_dict(),
        "retrieval": used,
        "chunks": len(retriever.chunks),
        "build_s": round(build_seconds, 3),
    }
    if args.json:
        print(json.dumps(result))
    else:
        k = args.k
        print(f"retrieval {used} over {result['chunks']} chunks ({metrics.queries} judged queries)")
        print(
            f"hit@{k} {metrics.hit_at_k:.3f}  recall@{k} {metrics.recall_at_k:.3f}  "
            f"MRR@10 {metrics.mrr_at_10:.3f}  nDCG@10 {metrics.ndcg_at_10:.3f}"
        )
        print(
            f"latency p50 {metrics.latency_p50_ms:.2f} ms  p95 {metrics.latency_p95_ms:.2f} ms; "
            f"index built in {build_seconds:.2f} s"
        )
    return 0


def _manifest_build(args: argparse.Namespace, settings: Settings) -> int:
    from importlib.metadata import version

    from bot.manifest import DEFAULT_HOST_NAME, build_manifest, write_package

    if not settings.app_id:
        print("wardline manifest build: set MicrosoftAppId (the bot's app registration id) first", file=sys.stderr)
        return 2
    try:
        manifest = build_manifest(
            app_id=settings.app_id,
            teams_app_id=settings.teams_app_id or None,
            host_name=settings.public_hostname or DEFAULT_HOST_NAME,
            version=version("wardline"),
        )
    except ValueError as exc:
        print(f"wardline manifest build: {exc}", file=sys.stderr)
        return 2
    out = write_package(manifest, args.out or settings.data_dir / "wardline-teams-app.zip")
    print(f"wrote {out} (Teams app id {manifest['id']}, bot {settings.app_id}, host {manifest['validDomains'][0]})")
    return 0


def _config(args: argparse.Namespace, settings: Settings) -> int:
    print(reference_table())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
