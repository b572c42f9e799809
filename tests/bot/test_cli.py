"""The `wardline` command line: eval figures on a hand-computed set, ask, ingest, config."""

from __future__ import annotations

import asyncio
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from bot.cli import main

DATA = Path(__file__).resolve().parents[1] / "data"
TINY = DATA / "tiny_eval"
SAMPLES = Path(__file__).resolve().parents[2] / "skills" / "protocols" / "samples"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no developer .env, and var/ lands in the temp folder
    monkeypatch.setenv("WARDLINE_EMBEDDINGS", "none")
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_CHAT_DEPLOYMENT", "WARDLINE_PROTOCOLS_DIR"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


def run_eval(capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, float]:
    code = main(
        [
            "eval",
            "--corpus",
            str(TINY / "corpus.jsonl"),
            "--queries",
            str(TINY / "queries.jsonl"),
            "--qrels",
            str(TINY / "qrels.tsv"),
            "--json",
            *extra,
        ]
    )
    assert code == 0
    result: dict[str, float] = json.loads(capsys.readouterr().out)
    return result


def test_eval_figures_match_the_hand_computed_ones(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    run_file = tmp_path / "run.trec"
    result = run_eval(capsys, "--run", str(run_file))
    assert result["queries"] == 4
    assert result["hit_at_k"] == 0.75
    assert result["recall_at_k"] == 0.75
    assert result["mrr_at_10"] == 0.625
    assert result["ndcg_at_10"] == pytest.approx((2 + 1 / math.log2(3)) / 4, abs=1e-4)
    assert result["retrieval"] == "lexical"
    assert result["latency_p95_ms"] >= result["latency_p50_ms"] > 0
    lines = run_file.read_text().splitlines()
    first = lines[0].split()
    assert first[:4] == ["q1", "Q0", "d1", "1"]
    assert first[5] == "wardline-lexical"
    assert all(len(line.split()) == 6 for line in lines)
    assert not any(line.startswith("q4 ") for line in lines)  # nothing matched: nothing ranked


def test_eval_cutoff(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_eval(capsys, "--k", "1")["hit_at_k"] == 0.5


def test_eval_on_a_folder_of_protocols(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(
        [
            "eval",
            "--corpus",
            str(SAMPLES),
            "--queries",
            str(DATA / "protocols_eval" / "queries.jsonl"),
            "--qrels",
            str(DATA / "protocols_eval" / "qrels.tsv"),
            "--json",
        ]
    )
    assert code == 0
    result = json.loads(capsys.readouterr().out)
    assert result["queries"] == 60
    assert result["hit_at_k"] >= 0.9  # measured 0.967 when written


def test_eval_reports_bad_input(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    broken = tmp_path / "queries.jsonl"
    broken.write_text('{"_id": "q1", "text": "ok"}\n{not json\n')
    code = main(
        ["eval", "--corpus", str(TINY / "corpus.jsonl"), "--queries", str(broken), "--qrels", str(TINY / "qrels.tsv")]
    )
    assert code == 2
    assert "queries.jsonl:2: not JSON" in capsys.readouterr().err


def test_ask_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "What MAP do we target in septic shock?", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert set(result) >= {"answer", "citations"}
    assert "65 mmHg" in result["answer"]
    assert result["citations"][0]["source"] == "sepsis-bundle.md"
    assert set(result["citations"][0]) >= {"title", "section", "source"}


def test_ask_text_in_korean(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["ask", "낙상 고위험 환자는 어떻게 관리하나요?"]) == 0
    out = capsys.readouterr().out
    assert "[1]" in out
    assert "falls-prevention-ko.md" in out


def test_ingest_reports_changes(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    library = tmp_path / "library"
    library.mkdir()
    (library / "a.md").write_text("# Protocol A\n## Scope\nAll adult wards.\n")
    (library / "broken.pdf").write_bytes(b"%PDF-1.4 garbage")
    assert main(["ingest", str(library)]) == 1  # one file failed
    captured = capsys.readouterr()
    assert "1 added" in captured.out and "1 failed" in captured.out
    assert "broken.pdf" in captured.err
    assert f"library folder: {library.resolve()}" in captured.err
    (library / "broken.pdf").unlink()
    assert main(["ingest", str(library)]) == 0
    assert "1 unchanged" in capsys.readouterr().out


def test_ingest_missing_folder(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["ingest", str(tmp_path / "nope")]) == 2


def test_bad_setting_is_a_clear_error(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PORT", "not-a-port")
    assert main(["config"]) == 2
    assert "PORT must be a number" in capsys.readouterr().err


def test_console_script_is_installed() -> None:
    wardline = Path(sys.executable).parent / "wardline"
    result = subprocess.run([str(wardline), "--help"], capture_output=True, text=True, check=False)
    assert result.returncode == 0
    for command in ("serve", "ask", "ingest", "eval"):
        assert command in result.stdout


def hospital_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MicrosoftAppId", "11111111-2222-3333-4444-555555555555")
    monkeypatch.setenv("WARDLINE_PUBLIC_HOSTNAME", "wardline.seoulgeneral.kr")
    monkeypatch.setenv("WARDLINE_DEVELOPER_NAME", "Seoul General Hospital IT")
    monkeypatch.setenv("WARDLINE_WEBSITE_URL", "https://it.seoulgeneral.kr/wardline")
    monkeypatch.setenv("WARDLINE_PRIVACY_URL", "https://it.seoulgeneral.kr/privacy")
    monkeypatch.setenv("WARDLINE_TERMS_URL", "https://it.seoulgeneral.kr/terms")


def test_manifest_build_uses_the_settings_and_the_router(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import zipfile

    from bot.services import build_services
    from bot.settings import Settings

    assert main(["manifest", "build"]) == 2
    assert "MicrosoftAppId" in capsys.readouterr().err
    hospital_settings(monkeypatch)
    out = tmp_path / "app.zip"
    assert main(["manifest", "build", "--out", str(out)]) == 0
    names = set(zipfile.ZipFile(out).namelist())
    assert names == {"manifest.json", "color.png", "outline.png", "ko-kr.json"}
    manifest = json.loads(zipfile.ZipFile(out).read("manifest.json"))
    assert manifest["bots"][0]["botId"] == "11111111-2222-3333-4444-555555555555"
    assert manifest["developer"]["privacyUrl"] == "https://it.seoulgeneral.kr/privacy"
    assert manifest["validDomains"] == ["wardline.seoulgeneral.kr"]
    services = asyncio.run(build_services(Settings.load().replace(embeddings="none")))  # the router `serve` builds
    try:
        expected = [c.name for c in services.router.commands()]
    finally:
        asyncio.run(services.close())
    titles = [c["title"] for c in manifest["bots"][0]["commandLists"][0]["commands"]]
    assert titles == expected
    assert titles[:2] == ["help", "ask"]
    monkeypatch.setenv("WARDLINE_PUBLIC_HOSTNAME", "localhost")
    assert main(["manifest", "build", "--out", str(out)]) == 2
    assert "public DNS name" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("unset", "placeholder", "message"),
    [
        ("WARDLINE_PUBLIC_HOSTNAME", None, "set WARDLINE_PUBLIC_HOSTNAME"),
        ("WARDLINE_PRIVACY_URL", None, "WARDLINE_PRIVACY_URL is not set"),
        ("WARDLINE_TERMS_URL", None, "WARDLINE_TERMS_URL is not set"),
        (None, ("WARDLINE_PRIVACY_URL", "https://wardline.example.org/privacy"), "placeholder domain"),
        (None, ("WARDLINE_PUBLIC_HOSTNAME", "bot.example.com"), "placeholder domain"),
    ],
)
def test_manifest_build_refuses_placeholders_unless_dev(
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
    unset: str | None,
    placeholder: tuple[str, str] | None,
    message: str,
) -> None:
    hospital_settings(monkeypatch)
    if unset:
        monkeypatch.delenv(unset)
    if placeholder:
        monkeypatch.setenv(*placeholder)
    out = tmp_path / "app.zip"
    assert main(["manifest", "build", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert len(err.strip().splitlines()) == 2  # the error and its hint, no traceback
    assert not out.exists()
    assert main(["manifest", "build", "--out", str(out), "--dev"]) == 0
    assert "development package, not for staff" in capsys.readouterr().err
    assert out.exists()
