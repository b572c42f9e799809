"""The `wardline` command: serve, ask, ingest, eval, config (and manifest)."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import errno
import importlib
import json
import os
import socket
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from bot.commands import MODULES
from bot.errors import CommandError
from bot.settings import Settings, SettingsError, effective_settings, reference_table


class UsageError(Exception):
    """Bad arguments: reported in one line, exit status 2."""


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage error in one line (and exit status 2) instead of the whole usage text."""

    def error(self, message: str) -> NoReturn:
        raise UsageError(f"{self.prog}: {message} (see {self.prog} --help)")


def main(argv: Sequence[str] | None = None) -> int:
    """Run one `wardline` command; returns the exit status (0 ok, 1 runtime error, 2 usage error, 130 Ctrl-C)."""
    arguments = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in arguments
    try:
        return _run(arguments)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        _quiet_stdout()  # `wardline config | head`: the reader left; say nothing more
        return 0
    except Exception as exc:
        if debug:
            raise
        hint = "run again with --debug to see where it failed"
        print(f"wardline: {type(exc).__name__}: {_one_line(str(exc))}", file=sys.stderr)
        print(f"  hint: {hint}", file=sys.stderr)
        return 1


def _run(arguments: list[str]) -> int:
    parser = _parser()
    try:
        args = parser.parse_args([a for a in arguments if a != "--debug"])  # --debug may stand anywhere
        if not getattr(args, "command", None):
            parser.print_help(sys.stderr)
            return 2
        check = getattr(args, "check", None)
        if check is not None:
            check(args)  # cheap argument checks before settings, imports and the database
        if args.func is _config:
            shown: int = _config(args)  # shows the settings even when one of them is invalid
            return shown
        settings = Settings.load()
        result: int = args.func(args, settings)
        sys.stdout.flush()  # a closed pipe shows up here, inside the handlers below
        return result
    except UsageError as exc:
        print(_one_line(str(exc)), file=sys.stderr)
        return 2
    except SettingsError as exc:
        print(f"wardline: configuration error: {_one_line(str(exc))}", file=sys.stderr)
        print("  hint: `wardline config` shows every setting and where it came from", file=sys.stderr)
        return 2
    except CommandError as exc:
        print(f"wardline: {_one_line(str(exc))}", file=sys.stderr)
        if exc.hint:
            print(f"  hint: {exc.hint}", file=sys.stderr)
        return 1


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _quiet_stdout() -> None:
    # Python flushes stdout again at exit; point it at /dev/null so that flush cannot fail a second time.
    with contextlib.suppress(OSError, ValueError):
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="wardline", description="Wardline, a Teams bot for hospital wards.")
    parser.add_argument("--debug", action="store_true", help="show the full traceback when something fails")
    commands = parser.add_subparsers(dest="command", parser_class=_Parser)

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
    ask.set_defaults(func=_ask, check=_check_question)

    ingest = commands.add_parser("ingest", help="index a folder of protocols (only what changed) and remember it")
    ingest.add_argument(
        "folder", nargs="?", type=Path, help="default: the library's folder (WARDLINE_PROTOCOLS_DIR, last ingest)"
    )
    ingest.add_argument(
        "--replace", action="store_true", help="build the library from this folder instead of the one it came from"
    )
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
    manifest_commands = manifest.add_subparsers(dest="manifest_command", required=True, parser_class=_Parser)
    build = manifest_commands.add_parser("build", help="write the zip Teams accepts for sideloading")
    build.add_argument("--out", type=Path, help="zip to write (default: WARDLINE_DATA_DIR/wardline-teams-app.zip)")
    build.add_argument(
        "--dev", action="store_true", help="allow placeholder host and URLs (example.org) for a test tenant"
    )
    build.set_defaults(func=_manifest_build)

    config = commands.add_parser("config", help="show the settings in effect, secrets masked, and where each came from")
    config.add_argument("--reference", action="store_true", help="print the table of every setting (Markdown)")
    config.set_defaults(func=_config)

    for name in MODULES:  # feature commands (channels, alerts, handover, ...) each live in their own module
        importlib.import_module(name).register(commands)
    return parser


def _check_question(args: argparse.Namespace) -> None:
    if not args.question.strip():
        raise UsageError('wardline ask: the question is empty (example: wardline ask "what MAP in septic shock?")')


def _serve(args: argparse.Namespace, settings: Settings) -> int:
    from bot.teams.connector import is_loopback_host

    settings = settings.replace(
        host=args.host or settings.host, port=args.port or settings.port, insecure_anonymous=args.insecure_anonymous
    )
    if not settings.app_id and not settings.insecure_anonymous and not is_loopback_host(settings.host):
        raise UsageError(
            f"wardline serve: refusing to bind {settings.host} without MicrosoftAppId (anyone could post as Teams); "
            "set MicrosoftAppId, bind 127.0.0.1, or pass --insecure-anonymous"
        )
    listener = listen(settings.host, settings.port)  # bind first: a taken port fails at once, before indexing

    from aiohttp import web

    from bot.app import create_app
    from bot.logs import configure_logging

    configure_logging(settings.log_level, settings.log_format)

    def started(_message: str) -> None:
        print(f"Wardline listening on http://{settings.host}:{settings.port}/api/messages", file=sys.stderr)

    with listener:
        web.run_app(create_app(settings), sock=listener, print=started, handle_signals=True)
    return 0


def listen(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port, or a CommandError that names the port and the setting to change."""
    try:
        family, kind, proto, _name, address = socket.getaddrinfo(
            host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )[0]
    except socket.gaierror:
        raise CommandError(
            f"cannot listen on {host!r}: no such address", "set WARDLINE_HOST (or --host), e.g. 127.0.0.1 or 0.0.0.0"
        ) from None
    listener = socket.socket(family, kind, proto)
    try:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(address)
        listener.listen(128)
    except OSError as exc:
        listener.close()
        if exc.errno == errno.EADDRINUSE:
            raise CommandError(
                f"port {port} on {host} is already in use by another program",
                "set PORT (or pass --port) to a free port, or stop the program that holds it",
            ) from None
        if exc.errno == errno.EACCES:
            raise CommandError(
                f"not allowed to listen on port {port}", "set PORT (or pass --port) to a port above 1023"
            ) from None
        if exc.errno == errno.EADDRNOTAVAIL:
            raise CommandError(
                f"{host} is not an address of this machine", "set WARDLINE_HOST (or pass --host), e.g. 127.0.0.1"
            ) from None
        raise
    return listener


def _ask(args: argparse.Namespace, settings: Settings) -> int:
    from bot.logs import configure_logging

    configure_logging("WARNING", settings.log_format)
    return asyncio.run(_ask_async(args, settings))


async def _ask_async(args: argparse.Namespace, settings: Settings) -> int:
    from bot.services import build_services
    from bot.term_cache import StoredTermsAnalyzer
    from skills.protocols.assistant import ProtocolAssistant

    terms = StoredTermsAnalyzer()  # stored section terms: no Kiwi start-up unless something changed
    services = await build_services(settings, analyzer=terms)
    try:
        await terms.load(services.store)
        await services.library.sync(services.protocols_dir)
        assistant = ProtocolAssistant(services.library, services.store, _clock(), services.llm)
        answer = await assistant.answer(args.question)
        await terms.save(services.store)
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

    configure_logging("WARNING", settings.log_format)
    if args.folder is not None and not args.folder.is_dir():
        raise UsageError(f"wardline ingest: {args.folder} is not a folder")
    return asyncio.run(_ingest_async(args.folder, args.replace, settings))


async def _ingest_async(folder: Path | None, replace: bool, settings: Settings) -> int:
    from tqdm import tqdm

    from bot.protocol_folder import check_ingest_folder, choose_folder, record_folder

    store, library, azure = await _open_library(settings)
    try:
        if folder is None:
            folder = (await choose_folder(store, settings.protocols_dir)).path
            if not folder.is_dir():
                raise CommandError(f"the protocol folder {folder} is not there", "mount it, or ingest another folder")
        await check_ingest_folder(store, folder, settings.protocols_dir, replace=replace)
        bar = tqdm(total=0, unit="file", desc="ingesting", file=sys.stderr)

        def progress(name: str, done: int, total: int) -> None:
            bar.total = total
            bar.set_postfix_str(name[-40:], refresh=False)
            bar.n = done
            bar.refresh()

        try:
            await library.analyzer.load(store)
            report = await library.sync(folder, progress)
        finally:
            bar.close()
        await library.analyzer.save(store)
        await record_folder(store, folder)
    finally:
        if azure is not None:
            await azure.close()
        await store.close()
    print(report.summary())
    for source, reason in report.failed.items():
        print(f"  failed: {source}: {reason}", file=sys.stderr)
    print(f"library folder: {folder.resolve()} (serve and ask use it)", file=sys.stderr)
    return 1 if report.failed else 0


async def _open_library(settings: Settings) -> tuple[Any, Any, Any]:
    """The store, the protocol library over it and the Azure client (or None), as `serve` builds them."""
    from bot.services import choose_embedder
    from bot.storage import SqlStore
    from bot.term_cache import StoredTermsAnalyzer
    from skills.protocols.library import ProtocolLibrary
    from skills.protocols.retrieval import RetrievalSettings

    azure = None
    if settings.azure_embeddings_configured:
        from bot.llm import AzureOpenAIClient

        azure = AzureOpenAIClient(settings)
    store = SqlStore.from_url(settings.database)
    await store.open()
    thresholds = RetrievalSettings(min_coverage=settings.min_coverage, min_similarity=settings.min_similarity)
    embedder = choose_embedder(settings, azure)
    library = ProtocolLibrary(store, embedder=embedder, settings=thresholds, analyzer=StoredTermsAnalyzer())
    return store, library, azure


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

    from bot.manifest import (
        DEV_DEVELOPER,
        DEV_HOST_NAME,
        Developer,
        build_localization,
        build_manifest,
        publishing_problems,
        write_package,
    )

    if not settings.app_id:
        raise SettingsError("wardline manifest build: set MicrosoftAppId (the bot's app registration id) first")
    host = settings.public_hostname
    if not host and not args.dev:
        raise SettingsError(
            "wardline manifest build: set WARDLINE_PUBLIC_HOSTNAME to the host Teams reaches the bot at "
            "(or pass --dev for a test package with placeholders)"
        )
    developer = Developer(
        name=settings.developer_name or (DEV_DEVELOPER.name if args.dev else ""),
        website_url=settings.website_url or (DEV_DEVELOPER.website_url if args.dev else ""),
        privacy_url=settings.privacy_url or (DEV_DEVELOPER.privacy_url if args.dev else ""),
        terms_of_use_url=settings.terms_url or (DEV_DEVELOPER.terms_of_use_url if args.dev else ""),
    )
    host = host or DEV_HOST_NAME
    problems = publishing_problems(host, developer)
    if problems and not args.dev:
        raise SettingsError("wardline manifest build: " + "; ".join(problems) + " (or pass --dev for a test package)")
    skills, commands = asyncio.run(_installed_skills(settings))
    try:
        manifest = build_manifest(
            app_id=settings.app_id,
            teams_app_id=settings.teams_app_id or None,
            host_name=host,
            commands=commands,
            developer=developer,
            skills=skills,
            version=version("wardline"),
        )
        localization = build_localization(commands, skills=skills)
    except ValueError as exc:
        raise SettingsError(f"wardline manifest build: {exc}") from None
    out = write_package(manifest, args.out or settings.data_dir / "wardline-teams-app.zip", localization=localization)
    print(f"wrote {out} (Teams app id {manifest['id']}, bot {settings.app_id}, host {manifest['validDomains'][0]})")
    if problems:
        print(f"warning: development package, not for staff: {'; '.join(problems)}", file=sys.stderr)
    return 0


async def _installed_skills(settings: Settings) -> tuple[list[str], list[Any]]:
    """The skills and the commands the bot would run with these settings (the same router `serve` builds)."""
    from bot.manifest import bot_commands
    from bot.services import build_services

    services = await build_services(settings.replace(embeddings="none"))  # no model: only the skill list is needed
    try:
        return [s.name for s in services.skills], bot_commands(services.router.commands())
    finally:
        await services.close()


def _config(args: argparse.Namespace, settings: Settings | None = None) -> int:
    if args.reference:
        print(reference_table())
        return 0
    env_file = Path(".env")
    where = f"{env_file.resolve()}" if env_file.is_file() else "none in this folder"
    print(f"# Settings in effect (environment, then .env: {where}, then default); secrets masked.")
    rows = effective_settings()
    width = max(len(name) for name, _value, _origin in rows)
    for name, value, origin in rows:
        print(f"{name:<{width}}  {value or '(empty)'}  [{origin}]")
    sys.stdout.flush()
    Settings.load()  # a SettingsError here names the variable that stops the bot from starting
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
