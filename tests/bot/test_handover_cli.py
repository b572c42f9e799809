"""`wardline handover report` and `wardline broadcasts report` read what the skills stored in the real database."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from pathlib import Path

import pytest

from bot.cli import main
from bot.settings import Settings
from bot.storage import SqlStore
from skills.broadcast import Broadcasts
from skills.broadcast.service import BroadcastRequest
from skills.core.fakes import ManualClock, ManualTimers, RecordingNotifier, StaticDirectory
from skills.core.skill import Context
from skills.core.types import ConversationKind
from skills.handover.service import Handovers
from tests.skills.handover.conftest import PATIENT_NAMES, PATIENT_NUMBERS, STAFF, UNITS, kst, message, user
from tests.skills.handover.test_form import filled


@pytest.fixture
def data_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WARDLINE_DATA_DIR", str(tmp_path / "var"))
    monkeypatch.delenv("WARDLINE_DATABASE_URL", raising=False)
    return tmp_path


async def _record_a_shift() -> str:
    store = SqlStore.from_url(Settings.load().database)
    await store.open()
    try:
        clock = ManualClock(kst(2026, 11, 29, 20, 0))
        context = Context(
            store=store,
            clock=clock,
            notifier=RecordingNotifier(),
            directory=StaticDirectory(UNITS, STAFF),
            timers=ManualTimers(),
        )
        handovers = Handovers(context)
        for bed in ("12", "3"):
            sent = message(value=filled(bed=bed))
            await handovers.on_save(sent, _Turn())
        clock.advance(2.5 * 3600)  # 22:30, the evening shift's handover
        await handovers.run_due("7W")
        ack = {"verb": "handover.ack", "unit": "7W", "shift": "2026-11-29/E", "scope": "beds", "beds": "3"}
        await handovers.on_ack(message(value=ack, kind=ConversationKind.CHANNEL), _Turn())
        broadcasts = Broadcasts(context)
        request = BroadcastRequest(("7W", "ICU"), "Fire drill", True, None)
        confirmation = await broadcasts.create(user("aad-manager"), request, "en")
        broadcast_id = confirmation.split()[1]  # "Broadcast B5 sent to ..."; ids come from the event sequence
        await broadcasts.on_ack(message(value={"verb": "broadcast.ack", "id": broadcast_id, "unit": "7W"}), _Turn())
        return broadcast_id
    finally:
        await store.close()


class _Turn:
    async def send(self, reply: object) -> None:
        return None

    async def refresh(self, card: object) -> None:
        return None


def test_reports(data_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    broadcast_id = asyncio.run(_record_a_shift())
    capsys.readouterr()
    assert main(["handover", "report", "--unit", "7W", "--date", "2026-11-29", "--shift", "E", "--json"]) == 0
    out = capsys.readouterr().out
    shifts = json.loads(out)
    assert [s["shift"] for s in shifts] == ["2026-11-29/E"] and shifts[0]["status"] == "posted"
    beds = {b["bed"]: b for b in shifts[0]["beds"]}
    assert beds["3"]["acknowledged_by"] == "Park Nurse" and beds["12"]["acknowledged_by"] is None
    assert beds["12"]["written_by"] == "Park Nurse" and beds["12"]["version"] == 1
    for secret in PATIENT_NAMES + PATIENT_NUMBERS:
        assert secret not in out
    assert main(["handover", "report", "--unit", "7W", "--date", "2026-11-29"]) == 0
    text = capsys.readouterr().out
    assert "bed 3: watcher, 1 open to-dos, v1 by Park Nurse" in text and "acknowledged by Park Nurse" in text
    assert main(["handover", "report", "--unit", "7W", "--date", "2026-11-28"]) == 1

    assert main(["broadcasts", "report", broadcast_id, "--json"]) == 0
    report = json.loads(capsys.readouterr().out)
    assert [(u["unit"], u["acknowledged"]) for u in report["units"]] == [("7W", True), ("ICU", False)]
    assert main(["broadcasts", "report", broadcast_id, "--csv"]) == 0
    rows = list(csv.DictReader(io.StringIO(capsys.readouterr().out)))
    assert [r["acknowledged_by"] for r in rows] == ["Park Nurse", ""]
    assert main(["broadcasts", "report", broadcast_id.lower()]) == 0
    assert "acknowledged by 1 of 2 units" in capsys.readouterr().out
    assert main(["broadcasts", "report", "B99"]) == 1
    assert "no broadcast B99" in capsys.readouterr().err
