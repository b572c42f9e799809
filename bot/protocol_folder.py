"""Which folder the protocol library is built from, remembered in the Store so `serve` and `ask` keep it.

`wardline ingest DIR` records DIR; `serve` and `ask` then use it without WARDLINE_PROTOCOLS_DIR (and record the folder
they index when nothing is recorded yet, the bundled samples included). A different folder
(on the command line or in WARDLINE_PROTOCOLS_DIR) than the one the stored library came from is refused until the
user says `--replace`: silently swapping a hospital's protocols for the bundled samples (or the other way round) would
serve the wrong documents.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from pathlib import Path

from bot.errors import CommandError
from skills.core.ports import Store
from skills.protocols import SAMPLES
from skills.protocols.library import DOCS

SPACE = "wardline.library"
KEY = "folder"
RECORDED = "the library's folder"


class FolderMismatch(CommandError):
    """The stored library was built from another folder; `hint` says how to switch on purpose."""


@dataclass(frozen=True, slots=True)
class LibraryFolder:
    """The folder to read, and where that choice came from (for messages and `wardline protocols list`)."""

    path: Path
    origin: str  # "WARDLINE_PROTOCOLS_DIR", "the library's folder" (recorded) or "bundled samples"


async def recorded_folder(store: Store) -> Path | None:
    """The folder the stored library was built from, or None for a library from before folders were recorded."""
    record = await store.get(SPACE, KEY)
    if record is None or not isinstance(record.get("path"), str):
        return None
    return Path(str(record["path"]))


async def record_folder(store: Store, folder: Path) -> None:
    """Remember `folder` (absolute) as the library's source."""
    await store.put(SPACE, KEY, {"path": str(await asyncio.to_thread(folder.resolve))})


async def _library_source(store: Store, configured: Path | None) -> Path | None:
    """Where the stored library came from: the record, else (older stores) the folder the bot was reading then."""
    recorded = await recorded_folder(store)
    if recorded is not None:
        return recorded
    if not await store.scan(DOCS):
        return None  # nothing indexed yet: any folder may start the library
    return await asyncio.to_thread((configured or SAMPLES).resolve)


async def choose_folder(store: Store, configured: Path | None) -> LibraryFolder:
    """The folder `serve` and `ask` read: WARDLINE_PROTOCOLS_DIR, else the recorded one, else the bundled samples.

    Raises FolderMismatch when WARDLINE_PROTOCOLS_DIR names another folder than the stored library's.
    """
    recorded = await recorded_folder(store)
    if configured is not None:
        wanted = await asyncio.to_thread(configured.resolve)
        if recorded is not None and recorded != wanted:
            raise FolderMismatch(
                f"the protocol library was built from {recorded}, but WARDLINE_PROTOCOLS_DIR is {configured}",
                f"to switch, run: wardline ingest {configured} --replace (or unset WARDLINE_PROTOCOLS_DIR)",
            )
        return LibraryFolder(configured, "WARDLINE_PROTOCOLS_DIR")
    if recorded is not None:
        return LibraryFolder(recorded, RECORDED)
    return LibraryFolder(SAMPLES, "bundled samples")


async def check_ingest_folder(store: Store, folder: Path, configured: Path | None, *, replace: bool) -> None:
    """Refuse to index `folder` over a library built from another one unless `replace` is set."""
    wanted = await asyncio.to_thread(folder.resolve)
    if configured is not None and await asyncio.to_thread(configured.resolve) != wanted:
        raise FolderMismatch(
            f"WARDLINE_PROTOCOLS_DIR is {configured}, so the bot would not serve {folder}",
            f"set WARDLINE_PROTOCOLS_DIR={folder} (or unset it) and run the ingest again",
        )
    if replace:
        return
    source = await _library_source(store, configured)
    if source is not None and source != wanted:
        raise FolderMismatch(
            f"the protocol library was built from {source}; indexing {folder} would replace all of it",
            f"to replace it, run: wardline ingest {folder} --replace",
        )
