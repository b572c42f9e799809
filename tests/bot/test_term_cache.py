"""Stored section terms: the library reloads without re-analysing, and only protocol text is ever stored."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from bot.cli import main
from bot.term_cache import SPACE, StoredTermsAnalyzer, indexed_texts
from skills.core.fakes import MemoryStore
from skills.protocols import SAMPLES
from skills.protocols.analysis import Analyzer
from skills.protocols.library import CHUNKS, ProtocolLibrary

QUESTION = "Patient Kim's MAP is 58 in septic shock: which vasopressor?"


async def test_a_reload_uses_the_stored_terms_and_finds_the_same(monkeypatch: pytest.MonkeyPatch) -> None:
    store = MemoryStore()
    first = StoredTermsAnalyzer(fingerprint="f1")
    library = ProtocolLibrary(store, analyzer=first)
    await library.sync(SAMPLES)
    before = [(h.chunk.key, round(h.score, 6)) for h in await library.retriever.search(QUESTION, 5)]
    stored = await first.save(store)
    chunks = await store.scan(CHUNKS)
    assert stored == len({t for _k, record in chunks for t in indexed_texts(record)})

    def no_analysis(self: Analyzer, text: str) -> list[str]:
        raise AssertionError("a stored section was analysed again")

    second = StoredTermsAnalyzer(fingerprint="f1")
    assert await second.load(store) == stored
    reloaded = ProtocolLibrary(store, analyzer=second)
    with monkeypatch.context() as patch:
        patch.setattr(Analyzer, "_korean", no_analysis)  # no Kiwi at all for the sections
        await reloaded.load()
    assert second.misses == 0 and second.hits == 2 * len(chunks)
    after = [(h.chunk.key, round(h.score, 6)) for h in await reloaded.retriever.search(QUESTION, 5)]
    assert after == before


async def test_questions_are_never_stored() -> None:
    store = MemoryStore()
    analyzer = StoredTermsAnalyzer(fingerprint="f1")
    library = ProtocolLibrary(store, analyzer=analyzer)
    await library.sync(SAMPLES)
    await library.retriever.search(QUESTION, 5)
    analyzer.terms("환자 김철수 010-1234-5678 혈압이 낮아요")
    await analyzer.save(store)
    keys = {key.split(":", 1)[1] for key, _value in await store.scan(SPACE)}
    for text in (QUESTION, "환자 김철수 010-1234-5678 혈압이 낮아요"):
        assert hashlib.sha256(text.encode()).hexdigest()[:32] not in keys


async def test_other_analysis_code_ignores_and_replaces_the_stored_terms(tmp_path: Path) -> None:
    store = MemoryStore()
    old = StoredTermsAnalyzer(fingerprint="old")
    await ProtocolLibrary(store, analyzer=old).sync(SAMPLES)
    written = await old.save(store)
    new = StoredTermsAnalyzer(fingerprint="new")
    assert await new.load(store) == 0  # never stale: a changed analyzer starts from nothing
    await ProtocolLibrary(store, analyzer=new).load()
    assert new.misses > 0
    assert await new.save(store) == written
    assert {key.split(":", 1)[0] for key, _value in await store.scan(SPACE)} == {"new"}


async def test_a_removed_document_drops_its_terms(tmp_path: Path) -> None:
    folder = tmp_path / "lib"
    folder.mkdir()
    (folder / "a.md").write_text("# Protocol A\n## Dose\nGive 40 mg daily.\n")
    (folder / "b.md").write_text("# Protocol B\n## Check\nCheck the line every shift.\n")
    store = MemoryStore()
    analyzer = StoredTermsAnalyzer(fingerprint="f1")
    library = ProtocolLibrary(store, analyzer=analyzer)
    await library.sync(folder)
    assert await analyzer.save(store) == 4
    (folder / "b.md").unlink()
    await library.sync(folder)
    assert await analyzer.save(store) == 2
    assert len(await store.scan(SPACE)) == 2


def test_a_second_ask_needs_no_korean_analysis(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WARDLINE_EMBEDDINGS", "none")
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_CHAT_DEPLOYMENT", "WARDLINE_PROTOCOLS_DIR"):
        monkeypatch.delenv(name, raising=False)
    korean = Analyzer._korean
    calls: list[str] = []

    def counted(self: Analyzer, text: str) -> list[str]:
        calls.append(text)
        return korean(self, text)

    monkeypatch.setattr(Analyzer, "_korean", counted)
    assert main(["ask", "What MAP do we target in septic shock?", "--json"]) == 0
    first, first_calls = capsys.readouterr().out, len(calls)
    calls.clear()
    assert main(["ask", "What MAP do we target in septic shock?", "--json"]) == 0
    assert capsys.readouterr().out == first
    # The library's Korean sections come from the stored terms; only the few Korean sentences an answer quotes
    # (a cross-lingual hit) are analysed again.
    assert len(calls) * 10 < first_calls, (len(calls), first_calls)
