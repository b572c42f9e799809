"""The offline dense path: all-MiniLM-L6-v2 from the `wardline[local]` extra, on the CPU, no network."""

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

    assert cosine(low, sweaty) > cosine(low, falls) + 0.1


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
    assert hybrid.retriever.is_covered(best)


async def test_korean_questions_stay_lexical(embedder: LocalEmbedder, tmp_path: Path) -> None:
    folder = tmp_path / "protocols"
    folder.mkdir()
    (folder / "falls-ko.md").write_text(
        "# 낙상 예방\n## 침상 안전\n침대 높이를 가장 낮게 유지하고 호출벨을 손이 닿는 곳에 둔다.\n"
    )
    library = ProtocolLibrary(MemoryStore(), embedder=embedder)
    await library.sync(folder)
    assert not library.retriever.uses_dense_for("침대 높이는 어떻게 하나요?")
    assert library.retriever.uses_dense_for("How high should the bed be?")
    hits = await library.retriever.search("침대 높이는 어떻게 하나요?", 1)
    assert hits[0].dense == 0.0
    assert hits[0].chunk.source == "falls-ko.md"


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
