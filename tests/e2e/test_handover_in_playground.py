"""The I-PASS form in Microsoft 365 Agents Playground: opened, refused empty, filled and saved in the browser.

The bot is the real app; its handover skill gets a static unit directory (the host's directory is wired at merge).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from dataclasses import replace

import pytest
import pytest_asyncio

import skills.handover
from bot.app import SERVICES, create_app
from skills.core.fakes import ManualTimers, RecordingNotifier, StaticDirectory
from skills.core.skill import Context, Skill
from skills.handover.notes import NoteBook
from tests.bot.conftest import bot_settings, serve
from tests.e2e.playground import E2E_MARKS, PlaygroundPage
from tests.skills.handover.conftest import UNITS

pytestmark = [*E2E_MARKS]
_APP: list[object] = []


@pytest.fixture(scope="module")
def with_directory() -> Iterator[None]:
    real = skills.handover.create_skill

    def create(context: Context) -> Skill:
        ports = replace(context, directory=StaticDirectory(UNITS), notifier=RecordingNotifier(), timers=ManualTimers())
        return real(ports)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(skills.handover, "create_skill", create)
        yield


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def bot_endpoint(with_directory: None, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    app = create_app(bot_settings(tmp_path_factory.mktemp("wardline-handover-e2e")))
    runner, url = await serve(app)
    _APP[:] = [app]
    try:
        yield f"{url}/api/messages"
    finally:
        await runner.cleanup()


async def test_ipass_form_filled_and_saved_in_the_browser(playground_page: PlaygroundPage) -> None:
    page = playground_page
    await page.send("handover 7W-12")
    form = await page.wait_for_bot_reply(containing="I-PASS handover", timeout=20)
    await page.screenshot("handover-01-form")

    await form.body.get_by_role("button", name="Save").click()  # nothing filled in: refused on the card
    await form.body.get_by_text("Choose the illness severity.").first.wait_for(timeout=10_000)
    await page.screenshot("handover-02-validation")
    assert await NoteBook(_APP[0][SERVICES].store).current("7W", "12") is None  # type: ignore[index]

    await form.body.get_by_label("Watcher").check()
    await form.body.get_by_label("Patient summary").fill("POD 2 after hemicolectomy, stable pain")
    await form.body.get_by_label("To-do 1").fill("Recheck potassium")
    await form.body.get_by_label("If", exact=True).first.fill("SBP < 90")
    await form.body.get_by_label("Then", exact=True).first.fill("500 mL bolus and call the doctor")
    await form.body.get_by_label("Allergies").fill("Penicillin")
    await page.screenshot("handover-03-filled")
    await form.body.get_by_role("button", name="Save").click()
    await page.page.get_by_text("Saved · 7W bed 12 · version 1").wait_for(timeout=15_000)
    await page.screenshot("handover-04-saved")
    saved = await NoteBook(_APP[0][SERVICES].store).current("7W", "12")  # type: ignore[index]
    assert saved is not None and saved.version == 1 and saved.note.severity == "watcher"
    assert saved.note.actions[0].item == "Recheck potassium" and saved.note.extras["allergies"] == "Penicillin"
