"""The first hour with the `wardline` command: one-line errors, a remembered library folder, protocols list/show."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from bot.cli import main

ROOT = Path(__file__).resolve().parents[2]
SAMPLES = ROOT / "skills" / "protocols" / "samples"
TEMPLATE = ROOT / "docs" / "protocol-template.md"
WARDLINE = Path(sys.executable).parent / "wardline"


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)  # no developer .env, and var/ lands in the temp folder
    monkeypatch.setenv("WARDLINE_EMBEDDINGS", "none")
    for name in ("AZURE_OPENAI_ENDPOINT", "AZURE_OPENAI_CHAT_DEPLOYMENT", "WARDLINE_PROTOCOLS_DIR", "PORT"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path


@pytest.fixture
def hospital_folder(tmp_path: Path) -> Path:
    folder = tmp_path / "our-protocols"
    folder.mkdir()
    shutil.copy(TEMPLATE, folder / "vte.md")
    return folder


def lines(text: str) -> list[str]:
    return [line for line in text.strip().splitlines() if line.strip()]


def test_the_template_is_a_valid_protocol_and_show_lists_its_sections(
    capsys: pytest.CaptureFixture[str], hospital_folder: Path
) -> None:
    assert main(["ingest", str(hospital_folder)]) == 0
    capsys.readouterr()
    assert main(["protocols", "list"]) == 0
    out = capsys.readouterr().out
    assert f"# 1 documents from {hospital_folder.resolve()} (the library's folder)" in out
    assert "vte-prophylaxis" in out and "1.0" in out and "2027-01-01" in out
    assert main(["protocols", "show", "vte-prophylaxis"]) == 0
    out = capsys.readouterr().out
    assert "Venous Thromboembolism Prophylaxis for Adult Inpatients" in out
    assert "Risk assessment › Who is assessed" in out
    assert "owner: Pharmacy and Therapeutics Committee" in out
    assert main(["protocols", "show", "vte.md", "--text"]) == 0  # the file name works too
    assert "within 14 hours of admission" in capsys.readouterr().out
    assert main(["protocols", "show", "nope"]) == 1
    assert lines(capsys.readouterr().err) == [
        "wardline: no indexed protocol has the id or file 'nope'",
        "  hint: `wardline protocols list`",
    ]


def test_ingest_remembers_the_folder_and_ask_uses_it(capsys: pytest.CaptureFixture[str], hospital_folder: Path) -> None:
    assert main(["ingest", str(hospital_folder)]) == 0
    capsys.readouterr()
    assert main(["ask", "Who is assessed for VTE risk and when?", "--json"]) == 0
    assert '"source": "vte.md"' in capsys.readouterr().out  # not the bundled samples
    assert main(["ingest", str(SAMPLES)]) == 1  # would silently swap the library: refused
    err = capsys.readouterr().err
    assert f"the protocol library was built from {hospital_folder.resolve()}" in err
    assert f"wardline ingest {SAMPLES} --replace" in err
    assert main(["protocols", "show", "vte-prophylaxis"]) == 0  # nothing changed
    capsys.readouterr()
    assert main(["ingest", str(SAMPLES), "--replace"]) == 0
    assert "1 removed" in capsys.readouterr().out
    assert main(["protocols", "list"]) == 0
    assert f"from {SAMPLES} (the library's folder)" in capsys.readouterr().out


def test_a_different_protocols_dir_than_the_library_is_refused(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, hospital_folder: Path
) -> None:
    assert main(["ingest", str(hospital_folder)]) == 0
    capsys.readouterr()
    monkeypatch.setenv("WARDLINE_PROTOCOLS_DIR", str(SAMPLES))
    assert main(["ask", "what MAP in septic shock?"]) == 1
    err = lines(capsys.readouterr().err)
    assert err[0].startswith(f"wardline: the protocol library was built from {hospital_folder.resolve()}")
    assert err[1] == f"  hint: to switch, run: wardline ingest {SAMPLES} --replace (or unset WARDLINE_PROTOCOLS_DIR)"
    assert main(["ingest", str(SAMPLES), "--replace"]) == 0
    capsys.readouterr()
    assert main(["ask", "what MAP in septic shock?", "--json"]) == 0
    assert "sepsis-bundle.md" in capsys.readouterr().out


def test_the_samples_indexed_by_default_are_not_swapped_silently(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, hospital_folder: Path
) -> None:
    assert main(["ask", "what MAP in septic shock?"]) == 0  # indexes and records the bundled samples
    capsys.readouterr()
    assert main(["ingest", str(hospital_folder)]) == 1
    assert "--replace" in capsys.readouterr().err
    monkeypatch.setenv("WARDLINE_PROTOCOLS_DIR", str(hospital_folder))
    assert main(["ask", "what MAP in septic shock?"]) == 1
    assert f"wardline ingest {hospital_folder} --replace" in capsys.readouterr().err


async def test_a_library_from_before_folders_were_recorded_keeps_its_configured_folder(
    hospital_folder: Path, isolated: Path
) -> None:
    from bot.protocol_folder import FolderMismatch, check_ingest_folder, choose_folder, recorded_folder
    from bot.storage import SqlStore
    from skills.protocols.library import ProtocolLibrary

    store = SqlStore.from_url(f"sqlite+aiosqlite:///{isolated / 'old.db'}")
    await store.open()
    try:
        await ProtocolLibrary(store).sync(hospital_folder)  # indexed by an older Wardline: no folder recorded
        assert await recorded_folder(store) is None
        assert (await choose_folder(store, hospital_folder)).path == hospital_folder  # its setting still works
        await check_ingest_folder(store, hospital_folder, hospital_folder, replace=False)
        other = isolated / "other"
        other.mkdir()
        with pytest.raises(FolderMismatch, match="so the bot would not serve"):  # never taken silently
            await check_ingest_folder(store, other, hospital_folder, replace=False)
        with pytest.raises(FolderMismatch, match="would replace all of it"):
            await check_ingest_folder(store, other, None, replace=False)
    finally:
        await store.close()


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["ask", ""], 'wardline ask: the question is empty (example: wardline ask "what MAP in septic shock?")'),
        (["ask", "   "], "wardline ask: the question is empty"),
        (["ask"], "wardline ask: the following arguments are required: question (see wardline ask --help)"),
        (["serve", "--port", "abc"], "wardline serve: argument --port: invalid int value: 'abc'"),
        (["frobnicate"], "wardline: argument command: invalid choice: 'frobnicate'"),
        (["protocols"], "wardline protocols: the following arguments are required: protocols_command"),
        (["ingest", "no/such/folder"], "wardline ingest: no/such/folder is not a folder"),
    ],
)
def test_usage_errors_are_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], isolated: Path, argv: list[str], message: str
) -> None:
    started = time.perf_counter()
    assert main(argv) == 2
    assert time.perf_counter() - started < 2  # at once: no index, no model
    err = lines(capsys.readouterr().err)
    assert len(err) == 1
    assert err[0].startswith(message)
    assert not (isolated / "var").exists()  # nothing was created


def test_a_taken_port_is_named_with_the_setting_to_change(capsys: pytest.CaptureFixture[str]) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen(1)
        port = taken.getsockname()[1]
        started = time.perf_counter()
        assert main(["serve", "--port", str(port)]) == 1
        assert time.perf_counter() - started < 5  # before indexing anything
    assert lines(capsys.readouterr().err) == [
        f"wardline: port {port} on 127.0.0.1 is already in use by another program",
        "  hint: set PORT (or pass --port) to a free port, or stop the program that holds it",
    ]


def test_an_unexpected_failure_is_one_line_unless_debug(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WARDLINE_DATABASE_URL", "postgresql+asyncpg://postgres@127.0.0.1:1/nothing")
    assert main(["protocols", "list"]) == 1
    err = lines(capsys.readouterr().err)
    assert len(err) == 2
    assert err[0].startswith("wardline: ") and "Traceback" not in err[0]
    assert err[1] == "  hint: run again with --debug to see where it failed"
    with pytest.raises(OSError, match="Connect"):
        main(["--debug", "protocols", "list"])
    with pytest.raises(OSError, match="Connect"):
        main(["protocols", "list", "--debug"])  # --debug may stand anywhere


def test_config_shows_effective_values_masked_with_their_origin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch, isolated: Path
) -> None:
    (isolated / ".env").write_text("WARDLINE_LOG_LEVEL=debug\nAZURE_OPENAI_API_KEY=sk-from-dotenv-123\n")
    monkeypatch.setenv("MicrosoftAppPassword", "hunter2-secret")
    monkeypatch.setenv("WARDLINE_DATABASE_URL", "postgresql+asyncpg://bot:pw123@db.internal/wardline")
    assert main(["config"]) == 0
    out = capsys.readouterr().out
    assert "hunter2" not in out and "sk-from-dotenv" not in out and "pw123" not in out
    rows = {line.split()[0]: line for line in out.splitlines() if not line.startswith("#")}
    assert rows["MicrosoftAppPassword"].split()[1:] == ["********", "[env]"]
    assert rows["AZURE_OPENAI_API_KEY"].split()[1:] == ["********", "[.env]"]
    assert rows["WARDLINE_DATABASE_URL"].split()[1:] == ["postgresql+asyncpg://********", "[env]"]
    assert rows["WARDLINE_LOG_LEVEL"].split()[1:] == ["debug", "[.env]"]
    assert rows["WARDLINE_TIMEZONE"].split()[1:] == ["Asia/Seoul", "[default]"]
    assert main(["config", "--reference"]) == 0
    assert capsys.readouterr().out.startswith("| Variable | Default | Meaning |")


def test_config_still_shows_the_settings_when_one_is_invalid(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PORT", "eighty")
    assert main(["config"]) == 2
    captured = capsys.readouterr()
    assert "eighty  [env]" in captured.out
    assert "PORT must be a number" in captured.err


def test_a_closed_pipe_is_quiet(isolated: Path) -> None:
    process = subprocess.Popen(
        [str(WARDLINE), "config", "--reference"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, cwd=isolated
    )
    assert process.stdout is not None and process.stderr is not None
    process.stdout.close()  # like `| head -0`: the reader is gone before the first line
    err = process.stderr.read()
    process.stderr.close()
    assert process.wait(timeout=60) == 0
    assert err == b""
