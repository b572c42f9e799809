"""`wardline protocols list` and `wardline protocols show ID`: what the library holds, as the bot will cite it."""

from __future__ import annotations

import argparse
import asyncio
from typing import Any

from bot.errors import CommandError
from bot.settings import Settings


def register(commands: Any) -> None:
    """Add `protocols list` and `protocols show` to the `wardline` sub-commands."""
    protocols = commands.add_parser("protocols", help="list the indexed protocols, or show one as it was indexed")
    actions = protocols.add_subparsers(dest="protocols_command", required=True, parser_class=type(protocols))
    listing = actions.add_parser("list", help="every indexed document: id, title, version, effective date, sections")
    listing.set_defaults(func=_list)
    show = actions.add_parser("show", help="one document: its front matter and the sections a citation can name")
    show.add_argument("id", help="the document's front matter id or its path in the folder (as `list` prints)")
    show.add_argument("--text", action="store_true", help="also print each section's indexed text")
    show.set_defaults(func=_show)


def _list(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_list_async(settings))


def _show(args: argparse.Namespace, settings: Settings) -> int:
    return asyncio.run(_show_async(args.id, args.text, settings))


async def _list_async(settings: Settings) -> int:
    from bot.protocol_folder import choose_folder
    from bot.storage import SqlStore
    from skills.protocols.library import DOCS

    store = SqlStore.from_url(settings.database)
    await store.open()
    try:
        folder = await choose_folder(store, settings.protocols_dir)
        documents = await store.scan(DOCS)
    finally:
        await store.close()
    print(f"# {len(documents)} documents from {folder.path} ({folder.origin})")
    if not documents:
        print("# nothing indexed yet: run `wardline ingest FOLDER` (or start the bot)")
        return 0
    rows = [("ID", "VERSION", "EFFECTIVE", "SECTIONS", "TITLE", "FILE")]
    for source, record in documents:
        meta = _meta(record)
        rows.append(
            (
                meta.get("id", ""),
                meta.get("version", ""),
                meta.get("effective", ""),
                str(record.get("chunks", "")),
                str(record.get("title", "")),
                source,
            )
        )
    widths = [max(len(row[i]) for row in rows) for i in range(4)]
    for row in rows:
        print("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row[:4])) + f"  {row[4]} ({row[5]})")
    return 0


async def _show_async(wanted: str, with_text: bool, settings: Settings) -> int:
    from bot.storage import SqlStore
    from skills.protocols.library import CHUNKS, DOCS

    store = SqlStore.from_url(settings.database)
    await store.open()
    try:
        documents = await store.scan(DOCS)
        matches = [(s, r) for s, r in documents if wanted in (s, _meta(r).get("id"))]
        if not matches:
            raise CommandError(f"no indexed protocol has the id or file {wanted!r}", "`wardline protocols list`")
        source, record = matches[0]
        chunks = await store.scan(CHUNKS, f"{source}#")
    finally:
        await store.close()
    print(f"{record.get('title', source)}")
    print(f"  file: {source}")
    for key, value in sorted(_meta(record).items()):
        if key != "title":
            print(f"  {key}: {value}")
    print(f"  sections ({len(chunks)}), as citations name them:")
    ordered = sorted(chunks, key=lambda item: int(str(item[1].get("ordinal", 0))))
    for _key, chunk in ordered:
        text = str(chunk.get("text", ""))
        print(f"  - {chunk.get('section', '')} ({len(text)} characters)")
        if with_text:
            for line in text.splitlines():
                print(f"      {line}")
    return 0


def _meta(record: dict[str, Any]) -> dict[str, str]:
    meta = record.get("meta")
    return {str(k): str(v) for k, v in meta.items()} if isinstance(meta, dict) else {}
