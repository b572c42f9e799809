"""Drive Microsoft 365 Agents Playground (a local Teams-like client) with headless Chromium for e2e tests.

The building blocks work without pytest (`run_playground`, `launch_chromium`, `PlaygroundPage`); the fixtures at
the bottom wire them up and are registered by `tests/e2e/conftest.py`. See tests/e2e/README.md for what the
Playground sends and renders, and how to override `bot_endpoint` to test the real bot.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Awaitable
from contextlib import asynccontextmanager, suppress
from dataclasses import dataclass, field
from itertools import count
from pathlib import Path
from typing import IO, Literal, TypeVar
from urllib.parse import urlsplit

import aiohttp
import pytest
import pytest_asyncio
from playwright.async_api import (
    Browser,
    BrowserContext,
    Locator,
    Page,
    Playwright,
    ViewportSize,
    async_playwright,
)
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeoutError

ROOT = Path(__file__).resolve().parents[2]
TOOLS_DIR = ROOT / "infra" / "e2e"
PLAYGROUND_BIN = TOOLS_DIR / "node_modules" / ".bin" / "agentsplayground"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
)
ARTIFACTS_DIR = ROOT / "test-artifacts" / "e2e"
INSTALL_HINT = "run `bash infra/e2e/install.sh` (or `make e2e-deps`)"
VIEWPORT: ViewportSize = {"width": 1400, "height": 900}

E2E_MARKS = (pytest.mark.e2e, pytest.mark.asyncio(loop_scope="session"))
"""Put `pytestmark = [*E2E_MARKS]` in an e2e test module: the browser and Playground live in the session loop."""

T = TypeVar("T")
View = Literal["personal", "group", "channel"]
Reaction = Literal["like", "dislike"]


class HarnessError(AssertionError):
    """The Playground, Chromium or the page did not do what the harness expected."""


# --- Playground configuration ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    id: str
    name: str
    email: str
    aad_object_id: str


@dataclass(frozen=True)
class Channel:
    id: str
    name: str


def _people() -> tuple[Person, ...]:
    names = ["Minseo Park", "Seoyeon Lee", "Hyunwoo Choi", "Yuna Jung", "Doyun Kang"]
    return tuple(
        Person(
            id=f"user-id-{i}",
            name=name,
            email=name.lower().replace(" ", ".") + "@hospital.example.org",
            aad_object_id=f"00000000-0000-0000-0000-0000000000{20 + i}",
        )
        for i, name in enumerate(names, start=1)
    )


@dataclass(frozen=True)
class PlaygroundConfig:
    """The mocked Teams world (`.m365agentsplayground.yml`): tenant, bot, users, chats, one team.

    The General channel always exists and its id is the team id, as in Teams. The Playground requires at
    least five `users` besides `current_user`.
    """

    bot_id: str = "00000000-0000-0000-0000-00000000000011"
    bot_name: str = "Wardline"
    tenant_id: str = "00000000-0000-0000-0000-0000000000001"
    current_user: Person = Person(
        "user-id-0", "Jiwoo Kim", "jiwoo.kim@hospital.example.org", "00000000-0000-0000-0000-0000000000020"
    )
    users: tuple[Person, ...] = field(default_factory=_people)
    personal_chat_id: str = "personal-chat-id"
    group_chat_id: str = "group-chat-id"
    group_chat_name: str = "7W Charge Nurses"
    team_id: str = "team-7w-id"
    team_name: str = "Ward 7W"
    team_aad_group_id: str = "00000000-0000-0000-0000-000000000031"
    channels: tuple[Channel, ...] = (Channel("channel-7w-alerts-id", "7W Alerts"),)

    def to_yaml(self) -> str:
        def person(p: Person, indent: str) -> str:
            return (
                f"{indent}id: {_q(p.id)}\n{indent}name: {_q(p.name)}\n{indent}userPrincipleName: {_q(p.email)}\n"
                f"{indent}aadObjectId: {_q(p.aad_object_id)}\n{indent}givenName: {_q(p.name.split()[0])}\n"
                f"{indent}surname: {_q(p.name.split()[-1])}\n{indent}email: {_q(p.email)}\n"
            )

        users = "".join("  -" + person(u, "    ")[3:] for u in self.users)
        channels = "".join(f"    - id: {_q(c.id)}\n      name: {_q(c.name)}\n" for c in self.channels)
        return (
            'version: "0.1.1"\n'
            f"tenantId: {_q(self.tenant_id)}\n"
            f"bot:\n  id: {_q(self.bot_id)}\n  name: {_q(self.bot_name)}\n"
            f"currentUser:\n{person(self.current_user, '  ')}"
            f"users:\n{users}"
            f"personalChat:\n  id: {_q(self.personal_chat_id)}\n"
            f"groupChat:\n  id: {_q(self.group_chat_id)}\n  name: {_q(self.group_chat_name)}\n"
            f"team:\n  id: {_q(self.team_id)}\n  name: {_q(self.team_name)}\n"
            f"  aadGroupId: {_q(self.team_aad_group_id)}\n  channels:\n{channels}"
        )

    def channel_label(self, channel: str) -> str:
        """The channel's entry in the Playground's sidebar, e.g. "Ward 7W - 7W Alerts"."""
        return f"{self.team_name} - {channel}"


def _q(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- Playground process ------------------------------------------------------------------------------------


def free_port() -> int:
    """A TCP port that was free on 127.0.0.1 a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class PlaygroundServer:
    """A running Playground process; `url` is its web client."""

    url: str
    bot_endpoint: str
    config: PlaygroundConfig
    log_path: Path
    console_path: Path
    process: subprocess.Popen[bytes]
    _console: IO[bytes]
    _workdir: tempfile.TemporaryDirectory[str]

    def log_tail(self, lines: int = 30) -> str:
        """The end of the Playground's console and log files, for failure messages."""
        parts = []
        for path in (self.console_path, self.log_path):
            if path.exists():
                text = path.read_text(encoding="utf-8", errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts)

    def stop(self) -> None:
        """Stop the whole process group (npx/node children included)."""
        if self.process.poll() is None:
            with suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                with suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=5)
        self._console.close()
        self._workdir.cleanup()


async def start_playground(
    bot_endpoint: str,
    *,
    log_path: Path,
    config: PlaygroundConfig | None = None,
    timeout: float = 30.0,  # noqa: ASYNC109 - a startup deadline, like Playwright's per-call timeouts
) -> PlaygroundServer:
    """Start the Playground on a free loopback port, pointed at `bot_endpoint`, and wait until it serves its page.

    `config=None` keeps Microsoft's built-in mock world ("Test Bot", "My Team"...). Raises `HarnessError`
    (with the log tail) when it is not installed, exits, or is not ready within `timeout` seconds.
    """
    if not PLAYGROUND_BIN.exists():
        raise HarnessError(f"Microsoft 365 Agents Playground is not installed at {PLAYGROUND_BIN}: {INSTALL_HINT}")
    log_path.parent.mkdir(parents=True, exist_ok=True)
    console_path = log_path.with_suffix(".console.log")
    workdir = tempfile.TemporaryDirectory(prefix="playground-")
    env = {
        **os.environ,
        "TEAMSAPPTESTER_BROWSER": "none",  # otherwise it tries to open a browser and exits
        "M365_AGENTS_PLAYGROUND_LOGFILE": str(log_path),
    }
    env.pop("M365_AGENTS_PLAYGROUND_CONFIG_PATH", None)
    if config is not None:
        config_file = Path(workdir.name) / ".m365agentsplayground.yml"
        config_file.write_text(config.to_yaml(), encoding="utf-8")
        env["M365_AGENTS_PLAYGROUND_CONFIG_PATH"] = str(config_file)
    command = [str(PLAYGROUND_BIN), "-e", bot_endpoint, "-c", "msteams", "-p", str(free_port()), "--dt"]
    console = console_path.open("wb")
    process = subprocess.Popen(  # noqa: ASYNC220 - a long-lived child, stopped in PlaygroundServer.stop
        command,
        cwd=workdir.name,  # it also reads a stray .m365agentsplayground.yml from its working directory
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=console,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = PlaygroundServer(
        url="",
        bot_endpoint=bot_endpoint,
        config=config or PlaygroundConfig(bot_name="Test Bot", team_name="My Team", channels=()),
        log_path=log_path,
        console_path=console_path,
        process=process,
        _console=console,
        _workdir=workdir,
    )
    try:
        server.url = await _wait_until_serving(server, timeout)
    except BaseException:
        server.stop()
        raise
    return server


async def _wait_until_serving(server: PlaygroundServer, timeout: float) -> str:  # noqa: ASYNC109
    deadline = time.monotonic() + timeout
    listening = re.compile(rb"Listening on (\d+)")
    url = ""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
        while time.monotonic() < deadline:
            if server.process.poll() is not None:
                raise HarnessError(
                    f"Microsoft 365 Agents Playground exited with code {server.process.returncode}:\n{server.log_tail()}"
                )
            if not url:
                # It falls back to a random port when the one asked for is taken, so read the real one.
                found = listening.search(server.console_path.read_bytes())
                url = f"http://127.0.0.1:{int(found[1])}/" if found else ""
            if url:
                with suppress(aiohttp.ClientError, TimeoutError):
                    async with session.get(url) as response:
                        if response.status == 200:
                            return url
            await asyncio.sleep(0.05)
    raise HarnessError(f"the Playground was not serving within {timeout}s:\n{server.log_tail()}")


@asynccontextmanager
async def run_playground(
    bot_endpoint: str, *, log_path: Path, config: PlaygroundConfig | None = None
) -> AsyncIterator[PlaygroundServer]:
    """`start_playground` for the duration of the context."""
    server = await start_playground(bot_endpoint, log_path=log_path, config=config)
    try:
        yield server
    finally:
        server.stop()


def _require_chromium() -> None:
    if not CHROMIUM.exists():
        raise HarnessError(f"Chromium is not installed at {CHROMIUM}: {INSTALL_HINT}")


async def launch_chromium(playwright: Playwright) -> Browser:
    """Debian's headless Chromium (Playwright's own browser download is not available here)."""
    _require_chromium()
    try:
        return await playwright.chromium.launch(executable_path=str(CHROMIUM), args=list(CHROMIUM_ARGS))
    except PlaywrightError as error:
        raise HarnessError(f"Chromium at {CHROMIUM} did not start: {error}") from error


# --- The page ----------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CitationPreview:
    """What the citation popup shows: the claim's number, abstract (a link to `url`) and document name."""

    number: str
    abstract: str
    url: str | None
    name: str


class BotMessage:
    """One message from the bot as rendered (chat bubble, channel reply or channel post)."""

    def __init__(self, page: PlaygroundPage, locator: Locator) -> None:
        self._page = page
        self.locator = locator

    @property
    def body(self) -> Locator:
        return self.locator.locator(":scope > div:nth-child(2), :scope > .fui-CardHeader + *").first

    async def text(self) -> str:
        """The rendered text: citation markers appear as plain numbers ("65 mmHg 1."), not "[1]"."""
        return " ".join((await self.body.inner_text()).split())

    async def has_ai_label(self) -> bool:
        header = self.locator.locator(":scope > div:first-child, :scope > .fui-CardHeader")
        return await header.get_by_text("AI generated", exact=True).count() > 0

    def citation_markers(self) -> Locator:
        return self.body.locator(".fai-Citation")

    async def citations(self) -> list[str]:
        """The citation markers in the text, in order, e.g. ["1", "2"]."""
        return [marker.strip() for marker in await self.citation_markers().all_inner_texts()]

    async def open_citation(self, number: int | str) -> CitationPreview:
        """Hover marker `number` and read the popup; it stays open (for a screenshot) until the next action."""
        await self._page.dismiss_popups()
        marker = self.citation_markers().filter(has_text=re.compile(rf"^\s*{number}\s*$")).first
        await marker.hover()
        popup = self._page.citation_popup()
        await popup.wait_for(state="visible")
        await self._page.settle()
        link = popup.locator('a[target="_blank"]').first
        lines = [line.strip() for line in (await popup.inner_text()).splitlines() if line.strip()]
        has_link = await link.count() > 0
        # Lines: the number, the abstract (a link when the citation has a url), the document name.
        return CitationPreview(
            number=str(number),
            abstract=(await link.inner_text()).strip() if has_link else (lines[1] if len(lines) >= 3 else ""),
            url=await link.get_attribute("href") if has_link else None,
            name=lines[-1] if lines else "",
        )

    async def click_feedback(self, reaction: Reaction, text: str | None = None, *, screenshot: str = "") -> None:
        """Click thumbs up/down, fill and submit the feedback form, and close the thank-you dialog.

        `screenshot` names a screenshot of the filled form taken just before it is submitted.
        """
        await self._page.dismiss_popups()
        label = "Like" if reaction == "like" else "Dislike"
        await self.locator.get_by_role("button", name=label, exact=True).first.click()
        page = self._page.page
        form = page.get_by_role("dialog").filter(has=page.get_by_role("button", name="Submit", exact=True))
        await form.wait_for(state="visible")
        if text:
            await form.get_by_role("textbox").fill(text)
        if screenshot:
            await self._page.screenshot(screenshot)
        await form.get_by_role("button", name="Submit", exact=True).click()
        thanks = page.get_by_role("dialog").filter(has_text="Thank you")
        await thanks.wait_for(state="visible")
        await thanks.get_by_role("button", name="Close", exact=True).click()
        await thanks.wait_for(state="hidden")
        await self._page.settle()


class PlaygroundPage:
    """The Playground's web client in one browser page; one fresh mock session per `open()`."""

    def __init__(self, page: Page, server: PlaygroundServer, artifacts_dir: Path = ARTIFACTS_DIR) -> None:
        self.page = page
        self.server = server
        self.config = server.config
        self.artifacts_dir = artifacts_dir
        self.view: View = "personal"
        self._ids = count(1)

    # Locators ---------------------------------------------------------------------------------------------

    def bot_messages(self) -> Locator:
        """Every bot message in the current view, in document order (channel threads are newest first)."""
        bot = _css_string(self.config.bot_name)
        avatar = f'span[role="img"][aria-label={bot}]'
        chat = f'div:has(> [aria-label="Message header"] [aria-label="Message author"]):has(> div > div > {avatar})'
        channel_reply = f"div:not(.fui-CardHeader__header):has(> div > {avatar} ~ span.fui-Text)"
        channel_post = f'[role="group"].fui-Card:has(> .fui-CardHeader {avatar})'
        return self.page.locator(f"{chat}, {channel_reply}, {channel_post}")

    def compose_box(self) -> Locator:
        """The message box: the chat's box, or in a channel the "Start a new post" box."""
        return self.page.locator('[contenteditable="true"][role="textbox"][data-lexical-editor="true"]').first

    def citation_popup(self) -> Locator:
        return self.page.locator('[role="dialog"][id^="preview-surface"]')

    # Actions ----------------------------------------------------------------------------------------------

    async def open(self) -> None:
        """Load the client (a fresh personal chat; the bot gets installationUpdate + conversationUpdate)."""
        await self.page.goto(self.server.url)
        await self.page.get_by_role("treeitem", name="Personal Chat", exact=True).wait_for()
        await self.compose_box().wait_for()
        self.view = "personal"

    async def switch_to(self, view: View, channel: str = "General") -> None:
        """Open the personal chat, the group chat or a channel of the team (first visit installs the bot there)."""
        await self.dismiss_popups()
        if view == "personal":
            await self.page.get_by_role("treeitem", name="Personal Chat", exact=True).click()
        elif view == "group":
            await self.page.get_by_role("treeitem", name=self.config.group_chat_name, exact=True).click()
        else:
            await self.page.get_by_role("treeitem", name=self.config.channel_label(channel), exact=True).click()
            await self.page.get_by_text("Start a new post", exact=True).wait_for()
        await self.compose_box().wait_for()
        self.view = view

    async def send(self, text: str, *, mention: bool | None = None) -> None:
        """Type `text` and press Enter; in a channel this starts a new post.

        Outside the personal chat the bot only receives messages that @mention it, so `mention` defaults
        to True there: the text arrives as "<at>{bot name}</at> {text}" with a `mention` entity.
        """
        await self._type_and_send(self.compose_box(), text, mention)

    async def reply_in_thread(self, text: str, *, mention: bool = True) -> None:
        """In a channel, reply in the newest thread (the top one)."""
        if self.view != "channel":
            raise HarnessError("reply_in_thread needs a channel view: call switch_to('channel') first")
        reply_box = self.page.locator('[contenteditable="true"][role="textbox"][data-lexical-editor="true"]').nth(1)
        await self._type_and_send(reply_box, text, mention)

    async def _type_and_send(self, box: Locator, text: str, mention: bool | None) -> None:
        await self.dismiss_popups()
        await self._mark_bot_messages_seen()
        await box.click()
        if mention if mention is not None else self.view != "personal":
            await self.page.keyboard.type("@")
            option = self.page.locator("#typeahead-menu").get_by_role("menuitem", name=self.config.bot_name)
            await option.click()
            await self.page.keyboard.type(" ")
        await self.page.keyboard.type(text)
        await self.page.keyboard.press("Enter")

    async def wait_for_bot_reply(
        self,
        containing: str = "",
        timeout: float = 10.0,  # noqa: ASYNC109 - seconds, handed to Playwright's own wait
    ) -> BotMessage:
        """The first bot message that appeared since the last `send` and whose text contains `containing`."""
        unseen = self.bot_messages().and_(self.page.locator(":not([data-e2e-seen])"))
        match = unseen.filter(has_text=containing) if containing else unseen
        try:
            await match.first.wait_for(timeout=timeout * 1000)
        except PlaywrightTimeoutError:
            shown = [" ".join(t.split())[:200] for t in await self.bot_messages().all_inner_texts()]
            raise HarnessError(
                f"no new bot message containing {containing!r} within {timeout}s in the {self.view} view; "
                f"bot messages on screen: {shown}"
            ) from None
        return await self._pin(match.first)

    def last_bot_message(self) -> BotMessage:
        """The last bot message in document order (in a channel that is the oldest thread's last reply)."""
        return BotMessage(self, self.bot_messages().last)

    async def citations(self) -> list[str]:
        return await self.last_bot_message().citations()

    async def open_citation(self, number: int | str) -> CitationPreview:
        return await self.last_bot_message().open_citation(number)

    async def has_ai_label(self) -> bool:
        return await self.last_bot_message().has_ai_label()

    async def click_feedback(self, reaction: Reaction, text: str | None = None, *, screenshot: str = "") -> None:
        await self.last_bot_message().click_feedback(reaction, text, screenshot=screenshot)

    async def dismiss_popups(self) -> None:
        """Close a citation popup: it is modal and would swallow the next click."""
        popup = self.citation_popup()
        if await popup.count() and await popup.first.is_visible():
            await self.page.keyboard.press("Escape")
            await self.page.mouse.move(1, 1)
            await popup.first.wait_for(state="hidden")

    async def settle(self) -> None:
        """Wait until the page's finite CSS animations (popups fading in, dialogs closing) have finished."""
        await self.page.evaluate(_FINISH_ANIMATIONS)

    async def screenshot(self, name: str) -> Path:
        """Save a full-page PNG as test-artifacts/e2e/{name}.png (after animations settle) and return its path."""
        await self.settle()
        self.artifacts_dir.mkdir(parents=True, exist_ok=True)
        path = self.artifacts_dir / f"{re.sub(r'[^A-Za-z0-9_.-]+', '_', name)}.png"
        await self.page.screenshot(path=str(path), full_page=True)
        return path

    async def _mark_bot_messages_seen(self) -> None:
        await self.bot_messages().evaluate_all("els => els.forEach(e => e.setAttribute('data-e2e-seen', ''))")

    async def _pin(self, locator: Locator) -> BotMessage:
        """Tag the element so later locators keep pointing at this very message."""
        tag = f"m{next(self._ids)}"
        await locator.evaluate("(e, tag) => e.setAttribute('data-e2e-id', tag)", tag)
        return BotMessage(self, self.page.locator(f'[data-e2e-id="{tag}"]'))


_FINISH_ANIMATIONS = """() => Promise.all(document.getAnimations()
    .filter(a => a.effect && Number.isFinite(a.effect.getComputedTiming().endTime))
    .map(a => a.finished.catch(() => null)))"""


def _is_external(url: str) -> bool:
    host = urlsplit(url).hostname or ""
    return host not in ("127.0.0.1", "localhost", "::1")


def _css_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --- pytest fixtures (registered in tests/e2e/conftest.py) ------------------------------------------------


async def _or_fail(starting: Awaitable[T]) -> T:
    """The started thing, or a test failure (never a skip) with the harness's explanation and no traceback."""
    try:
        return await starting
    except HarnessError as error:
        problem = str(error)
    pytest.fail(problem, pytrace=False)


@pytest.fixture(scope="session")
def e2e_artifacts() -> Path:
    ARTIFACTS_DIR.mkdir(parents=True, exist_ok=True)
    return ARTIFACTS_DIR


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def chromium() -> AsyncIterator[Browser]:
    """Headless Debian Chromium, shared by the whole session. Fails (never skips) when it cannot start."""
    async with async_playwright() as playwright:
        browser = await _or_fail(launch_chromium(playwright))
        yield browser
        await browser.close()


@pytest.fixture(scope="module")
def playground_config() -> PlaygroundConfig | None:
    """The mock Teams world; override in a test module (None = Microsoft's built-in one)."""
    return PlaygroundConfig()


@pytest.fixture(scope="module")
def bot_endpoint() -> str:
    """Override in the test module (module scope) with the `/api/messages` URL of a running bot."""
    pytest.fail("an e2e module must define a module-scoped `bot_endpoint` fixture", pytrace=False)


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def playground(
    bot_endpoint: str, playground_config: PlaygroundConfig | None, e2e_artifacts: Path, request: pytest.FixtureRequest
) -> AsyncIterator[PlaygroundServer]:
    """A Playground process for this module's bot. Fails (never skips) when it cannot start."""
    log_path = e2e_artifacts / f"playground-{request.module.__name__.rsplit('.', 1)[-1]}.log"
    server = await _or_fail(start_playground(bot_endpoint, log_path=log_path, config=playground_config))
    yield server
    server.stop()


@pytest_asyncio.fixture(loop_scope="session")
async def playground_page(
    chromium: Browser, playground: PlaygroundServer, e2e_artifacts: Path, request: pytest.FixtureRequest
) -> AsyncIterator[PlaygroundPage]:
    """A fresh browser context with the Playground open in the personal chat; screenshot on failure."""
    context: BrowserContext = await chromium.new_context(viewport=VIEWPORT, locale="en-US")
    context.set_default_timeout(10_000)
    # The client asks an Office CDN for fonts; answer it at once instead of letting Chromium try the network.
    await context.route(_is_external, lambda route: route.abort())
    page = PlaygroundPage(await context.new_page(), playground, e2e_artifacts)
    problem = ""
    try:
        await page.open()
    except PlaywrightError as error:
        problem = f"the Playground page did not load: {error}\n{playground.log_tail()}"
        await page.screenshot(f"{request.node.name}-open-failed")
        await context.close()
    if problem:
        pytest.fail(problem, pytrace=False)
    yield page
    report = getattr(request.node, "e2e_call_report", None)
    if report is not None and report.failed:
        await page.screenshot(f"{request.node.name}-failed")
    await context.close()
