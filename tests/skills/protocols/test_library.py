"""ProtocolLibrary.sync: incremental ingest by content hash, on MemoryStore and on a real SQLite SqlStore."""

from __future__ import annotations

import asyncio
import contextlib
import shutil
from collections.abc import AsyncIterator, Sequence
from pathlib import Path

import docx
import pytest

from bot.storage import SqlStore
from skills.core.fakes import HashEmbedder, MemoryStore
from skills.core.ports import LLMError, Store
from skills.protocols.chunking import Chunk
from skills.protocols.documents import NOT_A_PROTOCOL
from skills.protocols.library import CHUNKS, DOCS, VECTORS, ProtocolLibrary, decode_vector, embedding_text

SEPSIS = """\
---
title: Sepsis Bundle
version: 1
language: en
---

# Sepsis Bundle

## Recognition

Screen patients with a raised lactate for sepsis.

## Treatment

Give broad-spectrum antibiotics within one hour of recognition.
"""

HANDS = """\
# Hand Hygiene

## Moments

Clean hands with alcohol rub before touching a patient.
"""

FALLS = """\
---
title: Falls Prevention
---
1. Assessment
Score the Morse fall scale on admission.

2. Interventions
Keep the bed in its lowest position.
"""


class CountingEmbedder:
    """Wraps HashEmbedder and records every text it is asked to embed."""

    def __init__(self, dim: int = 64, *, fail: bool = False, fail_after_calls: int | None = None) -> None:
        self.inner = HashEmbedder(dim)
        self.fail = fail
        self.fail_after_calls = fail_after_calls
        self.calls: list[list[str]] = []

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def languages(self) -> frozenset[str] | None:
        return None

    @property
    def texts(self) -> list[str]:
        return [text for call in self.calls for text in call]

    async def embed(self, texts: Sequence[str]) -> list[list[float]]:
        self.calls.append(list(texts))
        if self.fail or (self.fail_after_calls is not None and len(self.calls) > self.fail_after_calls):
            raise LLMError("embeddings failed: InternalServerError 500")
        return await self.inner.embed(texts)


@pytest.fixture(params=["memory", "sqlite"])
async def store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Store]:
    if request.param == "memory":
        yield MemoryStore()
        return
    sql = SqlStore.from_url("sqlite+aiosqlite:///" + str(tmp_path / "db" / "wardline.db"))
    await sql.open()
    try:
        yield sql
    finally:
        await sql.close()


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    root = tmp_path / "protocols"
    root.mkdir()
    (root / "sepsis.md").write_text(SEPSIS, encoding="utf-8")
    (root / "hands.md").write_text(HANDS, encoding="utf-8")
    (root / "ward").mkdir()
    (root / "ward" / "falls.txt").write_text(FALLS, encoding="utf-8")
    # Not ingested: marked, hidden, drafts, unsupported.
    (root / "README.md").write_text(f"{NOT_A_PROTOCOL}\n# About\n\nThis folder holds protocols.\n", encoding="utf-8")
    (root / ".hidden.md").write_text("# Hidden\n\nSecret lactate text.\n", encoding="utf-8")
    (root / "_drafts").mkdir()
    (root / "_drafts" / "draft.md").write_text("# Draft\n\nDraft lactate text.\n", encoding="utf-8")
    (root / "budget.xlsx").write_bytes(b"PK\x03\x04 not really")
    return root


ALL = ["hands.md", "sepsis.md", "ward/falls.txt"]


def write_docx(path: Path, body: str) -> None:
    document = docx.Document()
    document.core_properties.title = "Pressure Injury"
    document.add_heading("Turning", level=1)
    document.add_paragraph(body)
    document.save(str(path))


async def keys(store: Store, namespace: str, prefix: str = "") -> list[str]:
    return [key for key, _ in await store.scan(namespace, prefix)]


async def sources_found(library: ProtocolLibrary, query: str) -> set[str]:
    """Sources with a lexical match (hybrid search ranks every chunk, so it cannot show absence)."""
    return {hit.chunk.source for hit in await library.retriever.search(query, k=10, mode="lexical")}


# -- first and unchanged syncs -------------------------------------------------------------------------------------


async def test_first_sync_adds_every_protocol(store: Store, folder: Path) -> None:
    embedder = CountingEmbedder()
    library = ProtocolLibrary(store, embedder=embedder)
    progress: list[tuple[str, int, int]] = []

    report = await library.sync(folder, lambda name, done, total: progress.append((name, done, total)))

    assert sorted(report.added) == ALL
    assert report.updated == report.removed == report.unchanged == []
    assert report.failed == {}
    assert report.changed
    chunk_keys = await keys(store, CHUNKS)
    assert report.chunks == len(chunk_keys) == len(library.retriever.chunks) == 5
    assert report.embedded == 5
    assert len(embedder.texts) == 5
    assert sorted(await keys(store, DOCS)) == ALL
    assert await keys(store, VECTORS) == chunk_keys
    assert {k.split("#")[0] for k in chunk_keys} == set(ALL)
    assert {name for name, _, _ in progress} == {*ALL, "README.md"}  # every candidate file, marked ones too
    assert [done for _, done, _ in progress] == [1, 2, 3, 4]
    assert {total for _, _, total in progress} == {4}
    docs = dict(await store.scan(DOCS))
    assert docs["sepsis.md"]["title"] == "Sepsis Bundle"
    assert docs["sepsis.md"]["chunks"] == 2
    assert len(str(docs["sepsis.md"]["hash"])) == 64
    assert library.retriever.mode == "hybrid"
    assert await library.titles() == ["Falls Prevention", "Hand Hygiene", "Sepsis Bundle"]
    hits = await library.retriever.search("antibiotics within one hour", k=3)
    assert hits[0].chunk.source == "sepsis.md"
    assert hits[0].chunk.section == "Treatment"
    assert "lactate" in (await library.retriever.search("lactate", k=1))[0].chunk.text
    assert await sources_found(library, "secret draft lactate") <= set(ALL)
    assert report.summary().startswith("3 added, 0 updated, 0 removed, 0 unchanged, 0 failed; 5 chunks")


async def test_second_sync_with_nothing_changed_reembeds_nothing(store: Store, folder: Path) -> None:
    embedder = CountingEmbedder()
    library = ProtocolLibrary(store, embedder=embedder)
    await library.sync(folder)
    before = dict(await store.scan(VECTORS))
    embedder.calls.clear()

    report = await library.sync(folder)

    assert sorted(report.unchanged) == ALL
    assert report.added == report.updated == report.removed == []
    assert not report.changed
    assert report.embedded == 0
    assert embedder.calls == []
    assert dict(await store.scan(VECTORS)) == before
    assert report.chunks == 5
    assert library.retriever.mode == "hybrid"


async def test_a_new_library_on_the_same_store_serves_without_a_folder_scan(store: Store, folder: Path) -> None:
    await ProtocolLibrary(store, embedder=CountingEmbedder()).sync(folder)
    embedder = CountingEmbedder()
    restarted = ProtocolLibrary(store, embedder=embedder)
    await restarted.load()
    assert len(restarted.retriever.chunks) == 5
    assert restarted.retriever.mode == "hybrid"
    assert embedder.calls == []


# -- changes -------------------------------------------------------------------------------------------------------


async def test_changing_one_file_updates_and_reembeds_only_it(store: Store, folder: Path) -> None:
    embedder = CountingEmbedder()
    library = ProtocolLibrary(store, embedder=embedder)
    await library.sync(folder)
    hands_vectors = {k: v for k, v in await store.scan(VECTORS) if k.startswith("hands.md#")}
    embedder.calls.clear()

    (folder / "sepsis.md").write_text(
        SEPSIS.replace("version: 1", "version: 2")
        .replace("## Recognition\n\nScreen patients with a raised lactate for sepsis.\n\n", "")
        .replace("within one hour", "within thirty minutes of vancomycin"),
        encoding="utf-8",
    )
    report = await library.sync(folder)

    assert report.updated == ["sepsis.md"]
    assert sorted(report.unchanged) == ["hands.md", "ward/falls.txt"]
    assert report.added == report.removed == []
    assert report.embedded == 1
    assert len(embedder.texts) == 1
    assert embedder.texts[0].startswith("Sepsis Bundle — Treatment")
    assert await keys(store, CHUNKS, "sepsis.md#") == ["sepsis.md#0000"]  # the dropped section's chunk is gone
    assert await keys(store, VECTORS, "sepsis.md#") == ["sepsis.md#0000"]
    assert {k: v for k, v in await store.scan(VECTORS) if k.startswith("hands.md#")} == hands_vectors
    [chunk] = [c for c in library.retriever.chunks if c.source == "sepsis.md"]
    assert chunk.version == "2"
    assert "vancomycin" in chunk.text
    assert (await library.retriever.search("vancomycin", k=1))[0].chunk.source == "sepsis.md"
    assert "sepsis.md" not in await sources_found(library, "raised lactate")
    assert all("lactate" not in c.text for c in library.retriever.chunks)
    assert report.chunks == 4
    assert library.retriever.mode == "hybrid"


async def test_a_new_file_is_added_alone(store: Store, folder: Path) -> None:
    embedder = CountingEmbedder()
    library = ProtocolLibrary(store, embedder=embedder)
    await library.sync(folder)
    embedder.calls.clear()

    (folder / "ward" / "restraints.md").write_text("# Restraints\n\nReview restraint orders daily.\n")
    report = await library.sync(folder)

    assert report.added == ["ward/restraints.md"]
    assert sorted(report.unchanged) == ALL
    assert len(embedder.texts) == 1
    assert (await library.retriever.search("restraint orders", k=1))[0].chunk.source == "ward/restraints.md"


async def test_deleting_a_file_removes_its_chunks_vectors_and_results(store: Store, folder: Path) -> None:
    embedder = CountingEmbedder()
    library = ProtocolLibrary(store, embedder=embedder)
    await library.sync(folder)
    assert "hands.md" in await sources_found(library, "alcohol rub hands")
    embedder.calls.clear()

    (folder / "hands.md").unlink()
    report = await library.sync(folder)

    assert report.removed == ["hands.md"]
    assert sorted(report.unchanged) == ["sepsis.md", "ward/falls.txt"]
    assert report.changed
    assert await keys(store, CHUNKS, "hands.md") == []
    assert await keys(store, VECTORS, "hands.md") == []
    assert "hands.md" not in await keys(store, DOCS)
    assert embedder.calls == []
    assert all(c.source != "hands.md" for c in library.retriever.chunks)
    assert "hands.md" not in await sources_found(library, "alcohol rub hands")
    assert all(hit.chunk.source != "hands.md" for hit in await library.retriever.search("alcohol rub hands", k=10))
    assert report.chunks == 4
    assert library.retriever.mode == "hybrid"


async def test_deleting_a_whole_subfolder_removes_its_files(store: Store, folder: Path) -> None:
    library = ProtocolLibrary(store)
    await library.sync(folder)
    (folder / "ward" / "falls.txt").unlink()
    (folder / "ward").rmdir()
    report = await library.sync(folder)
    assert report.removed == ["ward/falls.txt"]
    assert await keys(store, CHUNKS, "ward/") == []


# -- unreadable files ----------------------------------------------------------------------------------------------


async def test_a_file_that_becomes_corrupt_keeps_its_previous_version(store: Store, folder: Path) -> None:
    write_docx(folder / "pressure.docx", "Turn bedbound patients every two hours.")
    embedder = CountingEmbedder()
    library = ProtocolLibrary(store, embedder=embedder)
    first = await library.sync(folder)
    assert "pressure.docx" in first.added
    old_doc = (await store.get(DOCS, "pressure.docx")) or {}
    old_chunks = dict(await store.scan(CHUNKS, "pressure.docx#"))
    embedder.calls.clear()

    (folder / "pressure.docx").write_bytes(b"PK\x03\x04 this zip was cut short by a sync client")
    report = await library.sync(folder)

    assert list(report.failed) == ["pressure.docx"]
    assert "pressure.docx" in report.failed["pressure.docx"]
    assert "pressure.docx" not in report.updated + report.removed + report.unchanged
    assert await store.get(DOCS, "pressure.docx") == old_doc
    assert dict(await store.scan(CHUNKS, "pressure.docx#")) == old_chunks
    assert await keys(store, VECTORS, "pressure.docx#") == list(old_chunks)
    assert embedder.calls == []
    assert (await library.retriever.search("turn bedbound patients", k=1))[0].chunk.source == "pressure.docx"
    assert library.retriever.mode == "hybrid"

    again = await library.sync(folder)  # still corrupt: still reported, still served
    assert list(again.failed) == ["pressure.docx"]
    assert "pressure.docx" in await sources_found(library, "turn bedbound patients")

    write_docx(folder / "pressure.docx", "Turn bedbound patients every three hours.")
    fixed = await library.sync(folder)
    assert fixed.updated == ["pressure.docx"]
    assert fixed.failed == {}
    assert "three hours" in (await library.retriever.search("turn bedbound patients", k=1))[0].chunk.text


async def test_a_new_corrupt_file_is_reported_and_the_rest_is_ingested(store: Store, folder: Path) -> None:
    (folder / "scan.pdf").write_bytes(b"%PDF-1.4\n\x00\x01 not a pdf at all")
    library = ProtocolLibrary(store)
    report = await library.sync(folder)
    assert sorted(report.added) == ALL
    assert list(report.failed) == ["scan.pdf"]
    assert "scan.pdf" in report.failed["scan.pdf"]
    assert "1 failed" in report.summary()
    assert await keys(store, CHUNKS, "scan.pdf") == []


async def test_a_protocol_marked_not_a_protocol_is_withdrawn(store: Store, folder: Path) -> None:
    library = ProtocolLibrary(store)
    await library.sync(folder)
    (folder / "hands.md").write_text(f"{NOT_A_PROTOCOL}\n{HANDS}", encoding="utf-8")

    await library.sync(folder)

    assert await keys(store, CHUNKS, "hands.md#") == []
    assert "hands.md" not in await sources_found(library, "alcohol rub hands")


async def test_a_vanished_folder_does_not_wipe_the_library(store: Store, folder: Path, tmp_path: Path) -> None:
    library = ProtocolLibrary(store)
    await library.sync(folder)
    shutil.move(folder, tmp_path / "unmounted")

    with contextlib.suppress(OSError):  # refusing to sync is fine too
        await library.sync(folder)

    assert len(await keys(store, CHUNKS)) == 5
    assert len(library.retriever.chunks) == 5


# -- embeddings and retriever mode ---------------------------------------------------------------------------------


async def test_a_new_embedder_reembeds_every_chunk(store: Store, folder: Path) -> None:
    await ProtocolLibrary(store, embedder=CountingEmbedder(64)).sync(folder)
    chunk_keys = await keys(store, CHUNKS)

    embedder = CountingEmbedder(32)  # a different model name: "hash-32"
    library = ProtocolLibrary(store, embedder=embedder)
    report = await library.sync(folder)

    assert sorted(report.unchanged) == ALL  # the documents themselves are not re-read
    assert report.embedded == len(chunk_keys) == 5
    assert len(embedder.texts) == 5
    vectors = dict(await store.scan(VECTORS))
    assert sorted(vectors) == chunk_keys
    assert {v["model"] for v in vectors.values()} == {"hash-32"}
    assert {decode_vector(str(v["vector"])).shape for v in vectors.values()} == {(32,)}
    assert library.retriever.mode == "hybrid"


async def test_embeddings_are_batched_per_document(store: Store, folder: Path) -> None:
    embedder = CountingEmbedder()
    report = await ProtocolLibrary(store, embedder=embedder, embed_batch=2).sync(folder)
    # hands.md has 1 chunk, sepsis.md 2, ward/falls.txt 2: each document's vectors join the index as it finishes.
    assert [len(call) for call in embedder.calls] == [1, 2, 2]
    assert report.embedded == 5


async def test_without_an_embedder_the_retriever_is_lexical(store: Store, folder: Path) -> None:
    library = ProtocolLibrary(store)
    report = await library.sync(folder)
    assert report.embedded == 0
    assert await keys(store, VECTORS) == []
    assert library.retriever.mode == "lexical"
    assert (await library.retriever.search("alcohol rub", k=1))[0].chunk.source == "hands.md"


async def test_a_failing_embedder_leaves_a_working_lexical_library(store: Store, folder: Path) -> None:
    embedder = CountingEmbedder(fail=True)
    library = ProtocolLibrary(store, embedder=embedder)

    report = await library.sync(folder)

    assert sorted(report.added) == ALL
    assert report.failed == {}
    assert report.embedded == 0
    assert report.chunks == 5
    assert embedder.calls  # it was tried
    assert await keys(store, VECTORS) == []
    assert library.retriever.mode == "lexical"
    assert (await library.retriever.search("antibiotics within one hour", k=1))[0].chunk.source == "sepsis.md"

    embedder.fail = False  # the service is back: the next sync embeds what is missing
    embedder.calls.clear()
    again = await library.sync(folder)
    assert sorted(again.unchanged) == ALL
    assert again.embedded == 5
    assert library.retriever.mode == "hybrid"


async def test_the_dense_side_joins_per_document_while_embedding(store: Store, folder: Path) -> None:
    embedder = CountingEmbedder(fail_after_calls=1)  # the first document works, then the service fails
    library = ProtocolLibrary(store, embedder=embedder, embed_batch=2)

    report = await library.sync(folder)

    assert report.embedded == 1  # hands.md, alone in its document
    assert len(await keys(store, VECTORS)) == 1
    assert library.retriever.mode == "hybrid (embedding)"
    assert library.status()["embedded"] == "1/5"
    hits = await library.retriever.search("antibiotics within one hour", k=5)
    assert hits[0].chunk.source == "sepsis.md"  # chunks without vectors still rank on their lexical score

    embedder.fail_after_calls = None
    embedder.calls.clear()
    again = await library.sync(folder)
    assert again.embedded == 4
    assert len(embedder.texts) == 4  # only the missing ones
    assert library.retriever.mode == "hybrid"
    assert library.status()["embedded"] == "5/5"


async def test_background_embedding_answers_lexically_at_once(store: Store, folder: Path) -> None:
    gate = asyncio.Event()

    class SlowEmbedder(CountingEmbedder):
        async def embed(self, texts: Sequence[str]) -> list[list[float]]:
            await gate.wait()  # the model is busy: nothing is embedded until the test says so
            return await super().embed(texts)

    library = ProtocolLibrary(store, embedder=SlowEmbedder())
    report = await library.sync(folder, wait_for_vectors=False)
    assert report.chunks == 5
    assert library.status() | {"embedding_model": ""} == {
        "ready": True,
        "protocols": "indexed",
        "chunks": 5,
        "retrieval": "lexical",
        "embedded": "0/5",
        "embedding_model": "",
    }
    assert (await library.retriever.search("antibiotics within one hour", k=1))[0].chunk.source == "sepsis.md"
    gate.set()
    assert await library.wait_embedded() == 5
    assert library.retriever.mode == "hybrid"
    assert len(await keys(store, VECTORS)) == 5


async def test_a_document_changed_while_embedding_gets_no_stale_vectors(store: Store, folder: Path) -> None:
    gate = asyncio.Event()
    started = asyncio.Event()

    class SlowEmbedder(CountingEmbedder):
        async def embed(self, texts: Sequence[str]) -> list[list[float]]:
            started.set()
            await gate.wait()
            return await super().embed(texts)

    embedder = SlowEmbedder()
    library = ProtocolLibrary(store, embedder=embedder)
    await library.sync(folder, wait_for_vectors=False)
    await started.wait()  # the first document (hands.md) is being embedded
    (folder / "hands.md").write_text("# Hand Hygiene\n\n## Moments\n\nUse soap for C. diff.\n", encoding="utf-8")
    changing = asyncio.create_task(library.sync(folder, wait_for_vectors=False))
    await asyncio.sleep(0)
    gate.set()
    await changing
    await library.wait_embedded()
    await library.sync(folder)  # embeds whatever is still missing
    stored = dict(await store.scan(VECTORS))
    chunks = dict(await store.scan(CHUNKS))
    assert set(stored) == set(chunks)
    hands = [k for k in chunks if k.startswith("hands.md#")]
    expected = (await embedder.inner.embed([embedding_text(Chunk.from_record(hands[0], chunks[hands[0]]))]))[0]
    assert decode_vector(str(stored[hands[0]]["vector"])).tolist() == pytest.approx(expected, abs=1e-6)


async def test_sqlite_library_survives_a_reopen(tmp_path: Path, folder: Path) -> None:
    url = "sqlite+aiosqlite:///" + str(tmp_path / "state" / "wardline.db")
    first = SqlStore.from_url(url)
    await first.open()
    try:
        await ProtocolLibrary(first, embedder=CountingEmbedder()).sync(folder)
    finally:
        await first.close()

    second = SqlStore.from_url(url)
    await second.open()
    try:
        embedder = CountingEmbedder()
        library = ProtocolLibrary(second, embedder=embedder)
        report = await library.sync(folder)
        assert sorted(report.unchanged) == ALL
        assert embedder.calls == []
        assert library.retriever.mode == "hybrid"
    finally:
        await second.close()


async def test_sqlite_sources_differing_only_in_case_stay_apart(tmp_path: Path) -> None:
    root = tmp_path / "case"
    root.mkdir()
    (root / "sepsis.md").write_text("# Lower\n\nLowercase file about lactate.\n", encoding="utf-8")
    (root / "Sepsis.md").write_text("# Upper\n\nUppercase file about antibiotics.\n", encoding="utf-8")
    store = SqlStore.from_url("sqlite+aiosqlite:///" + str(tmp_path / "case.db"))
    await store.open()
    try:
        library = ProtocolLibrary(store)
        await library.sync(root)
        (root / "Sepsis.md").write_text("# Upper\n\nUppercase file about cultures.\n", encoding="utf-8")
        await library.sync(root)
        assert [k for k in await keys(store, CHUNKS) if k.startswith("sepsis.md#")] == ["sepsis.md#0000"]
        assert "sepsis.md" in await sources_found(library, "lowercase lactate")
    finally:
        await store.close()


async def test_an_unchanged_folder_keeps_the_same_index(tmp_path: Path) -> None:
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "a.md").write_text("# A\n## Scope\nAll adult wards.\n", encoding="utf-8")
    library = ProtocolLibrary(MemoryStore())
    await library.sync(folder)
    first = library.retriever
    await library.sync(folder)
    assert library.retriever is first  # nothing changed: no rebuild
    (folder / "a.md").write_text("# A\n## Scope\nAll wards.\n", encoding="utf-8")
    await library.sync(folder)
    assert library.retriever is not first
