"""The desk: two parties' desks on real sockets over a real courier, guarded (token, cookie,
CSRF, CSP), and driven by a person's clicks in headless Chromium (Debian chromium-driver).

Screenshots land in build/desk-screenshots/ (or $DESK_SCREENSHOTS), kept as test artefacts.
"""

from __future__ import annotations

import asyncio
import os
import pty
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from channel.party.client import Client
from channel.party.desk.app import desk_app
from channel.party.keyring import Keyring
from channel.party.session import party_client
from channel.party.web import serve
from channel.protocol.errors import KeyringError
from channel.protocol.models import Precedence
from channel.protocol.seal import party_fingerprint
from tests.test_cli import CHANNEL, Shell, assert_user_error, registered

DIRECTOR = "us.cia.director"
QUDS = "ir.irgc.quds"
BODY = "We will hold you and Iran accountable for attacks on American interests in Iraq."
WAIT = 60.0  # seconds a live update may take on a loaded machine
SHOTS = Path(os.environ.get("DESK_SCREENSHOTS", "build/desk-screenshots"))
BROWSER = shutil.which("chromium") is not None and shutil.which("chromedriver") is not None
browser_test = pytest.mark.timeout(400)  # headless Chromium on a loaded machine
needs_browser = pytest.mark.skipif(
    not BROWSER, reason="chromium and chromium-driver are not installed (.ci/run installs them)"
)


@dataclass
class DeskUnderTest:
    name: str
    ring: Keyring
    client: Client
    login: str  # the printed URL with its one-time token

    @property
    def base(self) -> str:
        return self.login.split("/login")[0]


@pytest.fixture(autouse=True)
def quiet() -> Iterator[None]:
    with capture_logs():
        yield


@pytest.fixture
async def desks(courier_url: str, tmp_path: Path) -> AsyncIterator[dict[str, DeskUnderTest]]:
    """Two parties, each with its own keyring and its own desk on 127.0.0.1."""
    opened: dict[str, DeskUnderTest] = {}
    cleanups: list[Any] = []
    for name, home in ((DIRECTOR, "langley"), (QUDS, "tehran")):
        ring = Keyring(tmp_path / home)
        keys = ring.new(name)
        session = party_client(courier_url, ring, keys, refresh_courier=True)
        client = await session.__aenter__()
        await client.register()
        app, guard = desk_app(client, ring, keys)
        runner, url = await serve(app, guard, port=0, open_browser=False)
        cleanups += [runner.cleanup, lambda s=session: s.__aexit__(None, None, None)]
        opened[name] = DeskUnderTest(name, ring, client, url)
    yield opened
    for cleanup in reversed(cleanups):
        await cleanup()


def jar_session() -> aiohttp.ClientSession:
    """A session that keeps cookies for 127.0.0.1 (aiohttp's jar skips IP hosts by default)."""
    return aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))


async def logged_in(http: aiohttp.ClientSession, desk: DeskUnderTest) -> None:
    async with http.get(desk.login, allow_redirects=False) as reply:
        assert reply.status == 303


# --- the guard ------------------------------------------------------------------------------


async def test_the_token_becomes_a_strict_httponly_cookie_once(
    desks: dict[str, DeskUnderTest],
) -> None:
    """The one-time token sets an HttpOnly SameSite=Strict cookie, and cannot be used twice."""
    desk = desks[DIRECTOR]
    async with jar_session() as http:
        async with http.get(desk.login, allow_redirects=False) as reply:
            assert reply.status == 303
            cookie = reply.headers["Set-Cookie"]
        assert "HttpOnly" in cookie
        assert "SameSite=Strict" in cookie
        async with http.get(f"{desk.base}/inbox") as reply:
            assert reply.status == 200
            assert "Inbox" in await reply.text()
    async with aiohttp.ClientSession() as other, other.get(desk.login) as reply:
        assert reply.status == 401


async def test_without_the_cookie_nothing_is_served(desks: dict[str, DeskUnderTest]) -> None:
    """No cookie (or a forged one): 401 on pages, the event stream and actions alike."""
    desk = desks[DIRECTOR]
    async with aiohttp.ClientSession(cookies={"desk_session": "forged"}) as http:
        for path in ("/inbox", "/sent", "/events", "/compose"):
            async with http.get(desk.base + path) as reply:
                assert reply.status == 401, path
        async with http.post(f"{desk.base}/compose", data={"to": QUDS}) as reply:
            assert reply.status == 401


async def test_every_page_carries_a_csp_without_external_sources(
    desks: dict[str, DeskUnderTest],
) -> None:
    """The CSP allows this origin only, on pages, refusals and static files."""
    desk = desks[DIRECTOR]
    async with jar_session() as http:
        await logged_in(http, desk)
        for path in ("/inbox", "/static/vendor/htmx.min.js", "/nowhere"):
            async with http.get(desk.base + path) as reply:
                csp = reply.headers["Content-Security-Policy"]
                assert "default-src 'none'" in csp
                assert "script-src 'self'" in csp, path
                assert "http" not in csp
                assert "*" not in csp
    async with aiohttp.ClientSession() as anonymous, anonymous.get(desk.base + "/inbox") as reply:
        assert "default-src 'none'" in reply.headers["Content-Security-Policy"]


async def test_a_cross_site_post_is_refused_and_sends_nothing(
    desks: dict[str, DeskUnderTest],
) -> None:
    """A POST without the session's CSRF token, or from another origin, is 403 and sends nothing."""
    desk, quds = desks[DIRECTOR], desks[QUDS]
    form = {"to": QUDS, "body": BODY, "deadline": "1d", "fingerprint": "x"}
    async with jar_session() as http:
        await logged_in(http, desk)
        async with http.post(f"{desk.base}/compose", data=form) as reply:
            assert reply.status == 403
        async with http.post(f"{desk.base}/compose", data=form | {"csrf": "guess"}) as reply:
            assert reply.status == 403
        page = await (await http.get(f"{desk.base}/compose")).text()
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        evil = {"Origin": "http://evil.example"}
        async with http.post(
            f"{desk.base}/compose", data=form | {"csrf": csrf}, headers=evil
        ) as reply:
            assert reply.status == 403
    assert await quds.client.inbox() == []


async def test_a_foreign_host_name_is_refused(desks: dict[str, DeskUnderTest]) -> None:
    """A page reached through another host name (DNS rebinding) gets 421, not the desk."""
    desk = desks[DIRECTOR]
    async with jar_session() as http:
        reply = await http.get(desk.login, headers={"Host": "attacker.example"})
        assert reply.status == 421


# --- in the browser -------------------------------------------------------------------------


class Browser:
    """One headless Chromium, called off the event loop (the desks and courier run on it)."""

    def __init__(self, profile: Path) -> None:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        options = webdriver.ChromeOptions()
        options.binary_location = str(shutil.which("chromium"))
        for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1280,900"):
            options.add_argument(flag)
        options.add_argument(f"--user-data-dir={profile}")
        options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
        service = Service(executable_path=str(shutil.which("chromedriver")))
        self.driver = webdriver.Chrome(options=options, service=service)

    async def run(self, call: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.to_thread(call, *args)

    async def go(self, url: str) -> None:
        await self.run(self.driver.get, url)

    async def click(self, css: str) -> None:
        await self.run(lambda: self.driver.find_element("css selector", css).click())

    async def type(self, css: str, text: str) -> None:
        await self.run(lambda: self.driver.find_element("css selector", css).send_keys(text))

    async def choose(self, css: str, option: str) -> None:
        from selenium.webdriver.support.select import Select

        element = await self.run(lambda: self.driver.find_element("css selector", css))
        await self.run(Select(element).select_by_visible_text, option)

    async def text(self, css: str = "body") -> str:
        return str(await self.run(lambda: self.driver.find_element("css selector", css).text))

    async def wait_for(self, css: str, fragment: str = "") -> str:
        """The text of `css` once it contains `fragment` (live updates arrive by themselves)."""
        deadline = time.monotonic() + WAIT
        while True:
            text = await self.run(self._first_text, css)
            if text is not None and fragment in text:
                return str(text)
            if time.monotonic() > deadline:
                raise AssertionError(f"{css!r} never showed {fragment!r}: {await self.text()}")
            await asyncio.sleep(0.2)

    def _first_text(self, css: str) -> str | None:
        found = self.driver.find_elements("css selector", css)
        return str(found[0].text) if found else None

    async def shot(self, name: str) -> Path:
        path = SHOTS / f"{name}.png"
        await self.run(lambda: SHOTS.mkdir(parents=True, exist_ok=True))
        await self.run(self.driver.save_screenshot, str(path))
        return path

    def close(self) -> None:
        self.driver.quit()


@pytest.fixture
async def browsers(tmp_path: Path) -> AsyncIterator[Callable[[], Any]]:
    opened: list[Browser] = []

    async def make() -> Browser:
        browser = await asyncio.to_thread(Browser, tmp_path / f"profile{len(opened)}")
        opened.append(browser)
        return browser

    yield make
    for browser in opened:
        await asyncio.to_thread(browser.close)


def field_value(browser: Browser, css: str) -> str:
    return str(browser.driver.find_element("css selector", css).get_attribute("value"))


async def send_from_desk(browser: Browser, desk: DeskUnderTest, subject: str) -> str:
    """Compose on `desk` (the recipient's keys already pinned); the new letter's id."""
    await browser.go(f"{desk.base}/compose")
    await browser.type("#to", QUDS)
    await browser.type("#subject", subject)
    await browser.type("#body", BODY)
    await browser.click("#send")
    await browser.wait_for("#h-receipts", "Receipts")
    return str(await browser.run(lambda: browser.driver.current_url)).rsplit("/", 1)[1]


@needs_browser
@browser_test
async def test_a_letter_from_desk_to_desk_opened_and_certified(
    desks: dict[str, DeskUnderTest], browsers: Callable[[], Any]
) -> None:
    """First contact confirmed by fingerprint; the envelope appears live; opened with
    confirmation; the text reads again; a certified copy; the sender sees `opened` live."""
    director, quds = desks[DIRECTOR], desks[QUDS]
    sender, recipient = await browsers(), await browsers()
    await sender.go(director.login)
    await recipient.go(quds.login)
    await recipient.wait_for("h1", "Inbox")

    await sender.click("a[href='/compose']")
    await sender.type("#to", QUDS)
    await sender.type("#subject", "Warning")
    await sender.type("#body", BODY)
    await sender.choose("#precedence", "flash")
    await sender.click("#send")
    shown = await sender.wait_for("#fingerprint")
    offered = director.ring.contact(QUDS)
    assert offered is None  # nothing pinned before the person confirms
    assert shown == party_fingerprint(quds.ring.public(QUDS))
    await sender.shot("1-first-contact")
    await sender.click("#pin")
    await sender.wait_for("#h-receipts", "Receipts")
    pinned = director.ring.contact(QUDS)
    assert pinned is not None
    assert party_fingerprint(pinned) == shown
    letter_id = str(await sender.run(lambda: sender.driver.current_url)).rsplit("/", 1)[1]
    assert "Warning" in await sender.text("h1")  # the sender reads its own copy
    await sender.go(f"{director.base}/sent")
    row = f"tr[data-letter='{letter_id}'] .state"
    await sender.wait_for(row)

    # The recipient's inbox, open all along, shows the envelope by itself, flash standing out.
    line = await recipient.wait_for(f"tr[data-letter='{letter_id}']", DIRECTOR)
    assert "FLASH" in line
    assert "sealed" in line
    await recipient.shot("2-inbox-live")
    await recipient.click(f"a[href='/letter/{letter_id}']")
    await recipient.click("#open")
    await recipient.wait_for("h1", "Open this letter?")
    await recipient.shot("3-confirm-open")
    await recipient.click("#confirm")
    assert BODY in await recipient.wait_for("#body", BODY)

    # The sender's sent view follows the receipts live.
    await sender.wait_for(row, "opened")
    await sender.shot("4-sent-live")

    # Readable again from the local archive, and a certified copy.
    await recipient.go(f"{quds.base}/letter/{letter_id}")
    assert BODY in await recipient.wait_for("#body")
    await recipient.click("#certified")
    copy = await recipient.wait_for("main", "Certified copy")
    assert BODY in copy
    assert "opened" in copy
    assert "✓ courier" in copy
    assert party_fingerprint(quds.ring.public(QUDS)) in copy
    await recipient.shot("5-certified-copy")
    await recipient.go(f"{quds.base}/inbox")
    assert "Warning" in await recipient.wait_for(f"tr[data-letter='{letter_id}']")

    # A threaded reply: the subject and the letter it answers come prefilled.
    await recipient.go(f"{quds.base}/letter/{letter_id}")
    await recipient.click("#reply")
    await recipient.wait_for("h1", "Compose")
    assert await recipient.run(field_value, recipient, "#reply_to") == letter_id
    await recipient.type("#body", "Received.")
    await recipient.click("#send")
    thread = await recipient.wait_for("#h-thread + ol", "Warning")
    assert "this letter" in thread
    assert "Re: Warning" in await recipient.text("h1")

    for browser in (sender, recipient):  # the vendored scripts run within the CSP
        console = await browser.run(browser.driver.get_log, "browser")
        assert not [line for line in console if "Content Security Policy" in line["message"]]


@needs_browser
@browser_test
async def test_returned_unopened_then_fetched_back_intact(
    desks: dict[str, DeskUnderTest], browsers: Callable[[], Any]
) -> None:
    """Returned unopened with a reason from the recipient's desk; the sender's desk shows it
    live and fetches the letter back, byte for byte the copy sent."""
    director, quds = desks[DIRECTOR], desks[QUDS]
    director.ring.pin_contact(quds.ring.public(QUDS))
    sender, recipient = await browsers(), await browsers()
    await sender.go(director.login)
    await recipient.go(quds.login)
    letter_id = await send_from_desk(sender, director, "Proposal")
    await sender.go(f"{director.base}/sent")

    await recipient.wait_for(f"tr[data-letter='{letter_id}']")
    await recipient.go(f"{quds.base}/letter/{letter_id}")
    await recipient.click("#return")
    await recipient.type("#reason", "Not through this channel")
    await recipient.click("#confirm")
    await recipient.wait_for("#state", "returned unopened")
    assert quds.ring.read_letter(quds.ring.load(QUDS), letter_id) is None  # never opened

    await sender.wait_for(f"tr[data-letter='{letter_id}'] .state", "returned unopened")
    await sender.go(f"{director.base}/letter/{letter_id}")
    assert "Not through this channel" in await sender.text("main")
    await sender.shot("7-letter-returned")
    await sender.click("#fetch")
    assert "Byte for byte the copy sent" in await sender.wait_for("#intact")
    await sender.shot("6-fetched-back")


@needs_browser
@browser_test
async def test_withdrawn_from_the_sent_view(
    desks: dict[str, DeskUnderTest], browsers: Callable[[], Any]
) -> None:
    """Withdraw asks first, then the letter is withdrawn and the recipient cannot open it."""
    director, quds = desks[DIRECTOR], desks[QUDS]
    director.ring.pin_contact(quds.ring.public(QUDS))
    sender = await browsers()
    await sender.go(director.login)
    letter_id = await send_from_desk(sender, director, "Second thoughts")
    await sender.click("#withdraw")
    await sender.wait_for("h1", "Withdraw this letter?")
    await sender.click("#confirm")
    await sender.wait_for("#state", "withdrawn")
    status = await quds.client.status(letter_id)
    assert status.state.value == "withdrawn"


# --- the command line: show, and the first-contact prompt ------------------------------------


async def test_show_reads_a_sent_and_an_opened_letter_again(
    courier_url: str, tmp_path: Path
) -> None:
    """`channel show` prints a letter the sender sent (its copy sealed to itself) and one the
    recipient opened, from each keyring; a letter still sealed is a one-line error."""
    director = Shell(tmp_path / "langley", courier_url)
    quds = Shell(tmp_path / "tehran", courier_url)
    await registered(director, DIRECTOR)
    await registered(quds, QUDS)
    letter_id = await send_cli(director, "--trust-new", "--subject", "Warning")
    mine = await director.json("show", letter_id, "--as", DIRECTOR)
    assert mine["body"] == BODY
    assert mine["recipient"] == QUDS
    assert mine["subject"] == "Warning"
    copies = list((director.home / DIRECTOR / "copies").iterdir())
    assert len(copies) == 1
    assert BODY.encode() not in copies[0].read_bytes()  # sealed, not plaintext

    sealed = await quds("show", letter_id, "--as", QUDS)
    assert_user_error(sealed, KeyringError.exit_code, "open it first")
    await quds.ok("open", letter_id, "--as", QUDS)
    again = await quds.ok("show", letter_id, "--as", QUDS)
    assert BODY in again.stdout
    assert f"From:    {DIRECTOR}" in again.stdout


async def test_a_script_must_accept_a_first_contact_explicitly(
    courier_url: str, tmp_path: Path
) -> None:
    """Without a terminal, a first contact is refused (nothing pinned, nothing sent) unless
    --trust-new, which pins the keys and names their fingerprint."""
    director = Shell(tmp_path / "langley", courier_url)
    quds = Shell(tmp_path / "tehran", courier_url)
    await registered(director, DIRECTOR)
    await registered(quds, QUDS)
    fingerprint = party_fingerprint(Keyring(quds.home).public(QUDS))

    refused = await director("send", "--as", DIRECTOR, "--to", QUDS, "--text", BODY)
    assert_user_error(refused, KeyringError.exit_code, f"first contact with {QUDS}")
    assert fingerprint in refused.stderr
    assert Keyring(director.home).contact(QUDS) is None
    assert not (director.home / DIRECTOR / "sent").exists()

    await send_cli(director, "--trust-new")
    assert Keyring(director.home).contact(QUDS) == Keyring(quds.home).public(QUDS)


async def test_a_person_confirms_a_first_contact_at_the_terminal(
    courier_url: str, tmp_path: Path
) -> None:
    """At a terminal, `send` shows the fingerprint and asks: "n" sends nothing, "y" pins, sends."""
    director = Shell(tmp_path / "langley", courier_url)
    quds = Shell(tmp_path / "tehran", courier_url)
    await registered(director, DIRECTOR)
    await registered(quds, QUDS)
    fingerprint = party_fingerprint(Keyring(quds.home).public(QUDS))
    command = [*CHANNEL, "send", "--as", DIRECTOR, "--to", QUDS, "--text", BODY]
    env = os.environ | {"CHANNEL_HOME": str(director.home), "CHANNEL_SERVER": courier_url}

    said_no = await asyncio.to_thread(at_terminal, command, env, "n\n")
    assert fingerprint in said_no.output
    assert said_no.status != 0
    assert Keyring(director.home).contact(QUDS) is None

    said_yes = await asyncio.to_thread(at_terminal, command, env, "y\n")
    assert said_yes.status == 0, said_yes.output
    assert "sent letter" in said_yes.output
    assert Keyring(director.home).contact(QUDS) == Keyring(quds.home).public(QUDS)


@dataclass
class Typed:
    output: str
    status: int


def at_terminal(command: list[str], env: dict[str, str], answer: str) -> Typed:
    """Run `command` with a pseudo-terminal as stdin, typing `answer` once it asks."""
    controller, terminal = pty.openpty()
    process = subprocess.Popen(command, stdin=terminal, stdout=terminal, stderr=terminal, env=env)
    os.close(terminal)
    output = b""
    answered = False
    while True:
        try:
            chunk = os.read(controller, 4096)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        output += chunk
        if not answered and b"[y/N]" in output:
            os.write(controller, answer.encode())
            answered = True
    os.close(controller)
    return Typed(output.decode(errors="replace"), process.wait(timeout=60))


async def send_cli(shell: Shell, *extra: str) -> str:
    sent = await shell.json("send", "--as", DIRECTOR, "--to", QUDS, "--text", BODY, *extra)
    return str(sent["id"])


async def test_the_inbox_filters_by_precedence_and_correspondent(
    desks: dict[str, DeskUnderTest],
) -> None:
    """Filters narrow the inbox: by precedence, by correspondent, by a search that matches none."""
    director, quds = desks[DIRECTOR], desks[QUDS]
    director.client.trust(quds.ring.public(QUDS))
    for precedence in (Precedence.ROUTINE, Precedence.FLASH):
        await director.client.send_letter(QUDS, BODY, precedence=precedence)
    async with jar_session() as http:
        await logged_in(http, quds)

        async def rows(query: str) -> int:
            async with http.get(f"{quds.base}/inbox/rows?{query}") as reply:
                assert reply.status == 200
                return (await reply.text()).count("data-letter=")

        assert await rows("") == 2
        assert await rows("precedence=flash") == 1
        assert await rows(f"who={DIRECTOR}&state=delivered") == 2
        assert await rows("who=nobody") == 0
        assert await rows("q=zzzz") == 0


async def test_a_refused_action_is_a_page_not_a_trace(desks: dict[str, DeskUnderTest]) -> None:
    """Opening a letter that is not yours, or a letter id that is malformed, shows a problem page
    with a 4xx status and changes nothing."""
    director, quds = desks[DIRECTOR], desks[QUDS]
    director.client.trust(quds.ring.public(QUDS))
    sealed, _ = await director.client.send_letter(QUDS, BODY)
    async with jar_session() as http:
        await logged_in(http, director)
        page = await (await http.get(f"{director.base}/compose")).text()
        csrf = page.split('name="csrf" value="')[1].split('"')[0]
        form = {"csrf": csrf, "confirmed": "yes"}
        url = f"{director.base}/letter/{sealed.envelope.id}/open"
        async with http.post(url, data=form) as reply:
            assert 400 <= reply.status < 500
            assert "Traceback" not in await reply.text()
        async with http.get(f"{director.base}/letter/not-a-letter") as reply:
            assert reply.status == 400
    assert (await quds.client.status(sealed.envelope.id)).state.value == "accepted"


@needs_browser
@browser_test
async def test_every_field_is_labelled_and_reachable_by_keyboard(
    desks: dict[str, DeskUnderTest], browsers: Callable[[], Any]
) -> None:
    """Every form control on the inbox and compose pages has a label, and Tab reaches Compose."""
    desk = desks[DIRECTOR]
    browser = await browsers()
    await browser.go(desk.login)
    for path in ("/inbox", "/compose"):
        await browser.go(desk.base + path)
        unlabelled = await browser.run(
            browser.driver.execute_script,
            "return [...document.querySelectorAll('input:not([type=hidden]),select,textarea')]"
            ".filter(e => !(e.labels && e.labels.length) && !e.getAttribute('aria-label'))"
            ".map(e => e.name)",
        )
        assert unlabelled == [], path
        landmarks = await browser.run(
            browser.driver.execute_script,
            "return [...document.querySelectorAll('main, nav, header')].map(e => e.tagName)",
        )
        assert "MAIN" in landmarks
        assert "NAV" in landmarks
    from selenium.webdriver.common.keys import Keys

    await browser.go(desk.base + "/inbox")
    reached = []
    for _ in range(6):
        await browser.run(lambda: browser.driver.switch_to.active_element.send_keys(Keys.TAB))
        reached.append(await browser.run(lambda: browser.driver.switch_to.active_element.text))
        if reached[-1] == "Compose":
            break
    assert "Compose" in reached
    await browser.run(lambda: browser.driver.switch_to.active_element.send_keys(Keys.ENTER))
    await browser.wait_for("h1", "Compose")


async def test_channel_desk_serves_on_loopback_and_prints_a_one_time_link(
    courier_url: str, tmp_path: Path
) -> None:
    """`channel desk --no-browser` prints a 127.0.0.1 link whose token logs in once."""
    shell = Shell(tmp_path / "tehran", courier_url)
    await registered(shell, QUDS)
    env = os.environ | {"CHANNEL_HOME": str(shell.home), "CHANNEL_SERVER": courier_url}
    command = [*CHANNEL, "desk", "--as", QUDS, "--no-browser"]
    process = await asyncio.create_subprocess_exec(
        *command, env=env, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
    )
    try:
        assert process.stdout is not None
        url = ""
        while "login?token=" not in url:
            url = (await asyncio.wait_for(process.stdout.readline(), 60)).decode().strip()
        assert url.startswith("http://127.0.0.1:")
        async with jar_session() as http:
            async with http.get(url) as reply:
                assert reply.status == 200
                assert QUDS in await reply.text()
            async with http.get(url, allow_redirects=False) as again:
                assert again.status == 401
    finally:
        process.terminate()
        await process.wait()


async def csrf_of(http: aiohttp.ClientSession, desk: DeskUnderTest) -> str:
    page = await (await http.get(f"{desk.base}/compose")).text()
    return page.split('name="csrf" value="')[1].split('"')[0]


async def test_compose_takes_an_absolute_deadline_and_refuses_a_bad_one(
    desks: dict[str, DeskUnderTest],
) -> None:
    """A deadline given as a UTC date and time is the envelope's; a past one is a 400 form."""
    director, quds = desks[DIRECTOR], desks[QUDS]
    director.ring.pin_contact(quds.ring.public(QUDS))
    async with jar_session() as http:
        await logged_in(http, director)
        form = {"csrf": await csrf_of(http, director), "to": QUDS, "body": BODY}
        async with http.post(
            f"{director.base}/compose", data=form | {"deadline_at": "2000-01-01T00:00"}
        ) as reply:
            assert reply.status == 400
            assert "in the past" in await reply.text()
        at = (datetime.now(UTC) + timedelta(days=3)).strftime("%Y-%m-%dT%H:%M")
        async with http.post(
            f"{director.base}/compose", data=form | {"deadline_at": at, "precedence": "immediate"}
        ) as reply:
            assert reply.status == 200
    (letter,) = await quds.client.inbox()
    assert letter.expires_at.startswith(at)
    assert letter.precedence is Precedence.IMMEDIATE


async def test_the_inbox_pages_by_twenty(desks: dict[str, DeskUnderTest]) -> None:
    """21 letters: the first page holds 20 and links to the older one on page 2."""
    director, quds = desks[DIRECTOR], desks[QUDS]
    director.client.trust(quds.ring.public(QUDS))
    for _ in range(21):
        await director.client.send_letter(QUDS, BODY)
    async with jar_session() as http:
        await logged_in(http, quds)
        first = await (await http.get(f"{quds.base}/inbox")).text()
        second = await (await http.get(f"{quds.base}/inbox?page=2")).text()
    assert first.count("data-letter=") == 20
    assert 'rel="next"' in first
    assert second.count("data-letter=") == 1
    assert 'rel="prev"' in second
