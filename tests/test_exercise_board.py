"""The control cell's board over a real live run (embedded courier, real control API, real event
log), guarded like the desk and driven by clicks in headless Chromium (Debian chromium-driver).

Screenshots land in build/desk-screenshots/ (or $DESK_SCREENSHOTS), kept as test artefacts.
"""

from __future__ import annotations

import asyncio
import subprocess
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
from structlog.testing import capture_logs

from channel.exercise.author.scenario import load_scenario
from channel.exercise.board.app import board_app
from channel.exercise.eventlog import LOG_FILE, read_log
from channel.exercise.run.control import CONTROL_FILE, send_command
from channel.exercise.run.play import RunOptions, play
from channel.party.client import Client
from channel.party.keyring import Keyring
from channel.party.web import CSP, serve
from tests.test_cli import CHANNEL
from tests.test_desk import Browser, browser_test, jar_session, needs_browser

DIRECTOR, QUDS = "us.cia.director", "ir.irgc.quds"
WAIT = 60.0  # seconds a live change may take on a loaded machine

# A person's seat and a bot, at speed 1 (one exercise second per wall second): the first inject
# is five hours away, so the run stays alive for the whole test.
SCENARIO = """\
title: The board under test
marking: EXERCISE EXERCISE EXERCISE
parties:
  - {name: us.cia.director, play: "bot:quiet"}
  - {name: ir.irgc.quds, play: human, stand_in: "bot:quiet"}
clock:
  start: 2017-11-20T09:00:00Z
  speed: 60
  end: T+10:00:00
policies:
  quiet: {}
injects:
  - id: INJ-01
    at: T+05:00:00
    from: us.cia.director
    to: ir.irgc.quds
    subject: Warning
    body: Do not.
    expect:
      - {id: EXP-1, check: replied, from: us.cia.director, to: ir.irgc.quds, within: 10d}
  - id: INJ-02
    at: T+06:00:00
    channel: news
    to: ir.irgc.quds
    subject: Wire report
    body: Strikes reported near the border.
"""


@dataclass
class BoardUnderTest:
    run_dir: Path
    login: str

    @property
    def base(self) -> str:
        return self.login.split("/login")[0]

    def records(self, kind: str) -> list[dict[str, Any]]:
        return [r for r in read_log(self.run_dir / LOG_FILE) if r["kind"] == kind]


@pytest.fixture(autouse=True)
def quiet() -> Iterator[None]:
    with capture_logs():
        yield


@pytest.fixture
async def board(tmp_path: Path) -> AsyncIterator[BoardUnderTest]:
    """A live run with a person's seat, and its board on 127.0.0.1."""
    source = tmp_path / "board.yaml"
    source.write_text(SCENARIO, encoding="utf-8")
    out = tmp_path / "run"
    running = asyncio.create_task(
        play(RunOptions(source=load_scenario(source), out=out, speed=1.0))
    )
    try:
        await poll(lambda: _exists(out / CONTROL_FILE), "the control API")
        app, guard = board_app(out)
        runner, url = await serve(app, guard, port=0, open_browser=False)
        try:
            yield BoardUnderTest(out, url)
        finally:
            await runner.cleanup()
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def _exists(path: Path) -> bool:
    return await asyncio.to_thread(path.exists)


async def poll(fetch: Callable[[], Awaitable[Any]], what: str) -> Any:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        if got := await fetch():
            return got
        await asyncio.sleep(0.2)
    raise AssertionError(f"never saw {what}")


async def person_opens_the_warning(run_dir: Path) -> None:
    """The person in the Quds seat opens the letter from the director, from the run's keyring."""
    url = read_log(run_dir / LOG_FILE)[0]["evidence"]["courier_url"]
    async with Client(url, Keyring(run_dir / "keyring").load(QUDS)) as quds:

        async def warning() -> list[str]:
            return [s.id for s in await quds.inbox() if s.sender == DIRECTOR]

        letters = await poll(warning, "the warning in the person's inbox")
        await quds.open_letter(letters[0])


async def csrf_of(http: aiohttp.ClientSession, board: BoardUnderTest) -> str:
    async with http.get(f"{board.base}/") as reply:
        text = await reply.text()
    return text.split('name="csrf" value="', 1)[1].split('"', 1)[0]


class LiveBrowser(Browser):
    """A browser whose reads survive htmx swapping a part of the page under them."""

    def _first_text(self, css: str) -> str | None:
        from selenium.common.exceptions import StaleElementReferenceException

        try:
            return super()._first_text(css)
        except StaleElementReferenceException:
            return None

    async def click(self, css: str) -> None:
        from selenium.common.exceptions import StaleElementReferenceException

        for _ in range(20):
            try:
                await super().click(css)
                return
            except StaleElementReferenceException:
                await asyncio.sleep(0.1)
        raise AssertionError(f"{css!r} kept being replaced")


# --- the guard --------------------------------------------------------------------------------


async def test_the_board_is_guarded_like_the_desk(board: BoardUnderTest) -> None:
    """No token: 401; a cross-site post (no CSRF token, foreign Origin): 403 and the run goes on;
    every page carries the CSP without external sources."""
    async with aiohttp.ClientSession() as stranger:
        for path in ("/", "/projector", "/part/msel"):
            async with stranger.get(f"{board.base}{path}") as reply:
                assert reply.status == 401
                assert reply.headers["Content-Security-Policy"] == CSP
        async with stranger.post(f"{board.base}/command", data={"command": "pause"}) as reply:
            assert reply.status == 401
    async with jar_session() as http:
        async with http.get(board.login, allow_redirects=False) as reply:
            assert reply.status == 303
        for path in ("/", "/projector"):
            async with http.get(f"{board.base}{path}") as reply:
                assert reply.status == 200
                assert reply.headers["Content-Security-Policy"] == CSP
                assert "EXERCISE EXERCISE EXERCISE" in await reply.text()
        csrf = await csrf_of(http, board)
        headers = {"Origin": "http://evil.example"}
        form = {"command": "pause", "csrf": csrf}
        async with http.post(f"{board.base}/command", data=form, headers=headers) as reply:
            assert reply.status == 403
        async with http.post(f"{board.base}/command", data={"command": "pause"}) as reply:
            assert reply.status == 403
    status = await send_command(board.run_dir, "status")
    assert status["paused"] is False
    assert board.records("control") == []


async def test_a_refused_command_is_a_readable_page(board: BoardUnderTest) -> None:
    """Releasing an inject that is not held, a speed that is not one: the run's own reason on a
    409 page, nothing logged; firing asks to confirm before anything is sent."""
    async with jar_session() as http:
        async with http.get(board.login, allow_redirects=False):
            pass
        csrf = await csrf_of(http, board)
        form = {"command": "release", "argument": "INJ-02", "csrf": csrf}
        async with http.post(f"{board.base}/command", data=form) as reply:
            assert reply.status == 409
            text = await reply.text()
        assert "inject INJ-02 is not held" in text
        assert "Traceback" not in text
        form = {"command": "speed", "argument": "fast", "csrf": csrf}
        async with http.post(f"{board.base}/command", data=form) as reply:
            assert reply.status == 409
            assert "speed must be a number or max" in await reply.text()
        form = {"command": "fire", "argument": "INJ-02", "csrf": csrf}
        async with http.post(f"{board.base}/command", data=form) as reply:
            assert reply.status == 200
            assert "Fire INJ-02 now?" in await reply.text()
    assert board.records("inject_released") == []
    assert board.records("inject_fired") == []
    assert board.records("control") == []


async def test_hold_and_release_from_the_board(board: BoardUnderTest) -> None:
    """Hold marks the inject held in the MSEL and the log; Release lifts it (no confirmation)."""
    async with jar_session() as http:
        async with http.get(board.login, allow_redirects=False):
            pass
        csrf = await csrf_of(http, board)
        for command, shown in (("hold", "held"), ("release", "pending")):
            form = {"command": command, "argument": "INJ-02", "csrf": csrf}
            async with http.post(f"{board.base}/command", data=form) as reply:
                assert reply.status == 200  # after the redirect to the board
            async with http.get(f"{board.base}/part/msel") as reply:
                row = (await reply.text()).split('id="inject-INJ-02"', 1)[1].split("</tr>", 1)[0]
            assert f'class="badge status">{shown}<' in row
    assert [r["data"]["inject"] for r in board.records("inject_held")] == ["INJ-02"]
    assert [r["data"]["inject"] for r in board.records("inject_released")] == ["INJ-02"]


# --- in the browser ---------------------------------------------------------------------------


@needs_browser
@browser_test
async def test_the_board_pauses_the_run_and_fires_an_inject(
    board: BoardUnderTest, tmp_path: Path
) -> None:
    """Clocks and MSEL shown; Pause pauses the run (status and the log's control record); Fire,
    confirmed, fires the inject and its letter appears in the lanes, marked opened once the
    person opens it; the projector renders."""
    browser = await asyncio.to_thread(LiveBrowser, tmp_path / "profile")
    try:
        await browser.go(board.login)
        await browser.wait_for("#clock-exercise", "T+00:00")
        await browser.wait_for("#inject-INJ-01", "pending")
        assert "Warning" in await browser.text("#msel")
        assert "EXERCISE EXERCISE EXERCISE" in await browser.text(".marking")
        await browser.click("#pause")
        await browser.wait_for("#run-state", "PAUSED")
        assert (await send_command(board.run_dir, "status"))["paused"] is True
        assert [r["data"] for r in board.records("control")] == [{"command": "pause"}]
        await browser.click("#fire-INJ-01")
        await browser.wait_for("h1", "Fire INJ-01 now?")
        await browser.click("#confirm")
        await browser.wait_for("#inject-INJ-01", "fired")
        fired = board.records("inject_fired")
        assert [(r["data"]["inject"], r["data"]["cause"]) for r in fired] == [("INJ-01", "control")]
        await browser.wait_for("#lanes figcaption", "L1 us.cia.director → ir.irgc.quds")
        await browser.wait_for("#expectations", "pending")
        await person_opens_the_warning(board.run_dir)
        await browser.wait_for("#lanes figcaption", "opened")
        await browser.run(browser.driver.set_window_size, 1280, 1900)
        await browser.shot("board")
        await browser.go(f"{board.base}/projector")
        await browser.wait_for("#run-state", "PAUSED")
        assert "1 of 2 injects done" in await browser.text("#progress")
        assert "inject fired" in await browser.text("#latest")
        await browser.shot("board-projector")
    finally:
        await asyncio.to_thread(browser.close)


async def test_channel_exercise_board_prints_a_one_time_link(board: BoardUnderTest) -> None:
    """`channel exercise board --run DIR --no-browser` serves that run on 127.0.0.1 behind a
    link that logs in once."""
    command = [*CHANNEL, "exercise", "board", "--run", str(board.run_dir), "--no-browser"]
    process = await asyncio.create_subprocess_exec(
        *command, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL
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
                assert "INJ-01" in await reply.text()
            async with http.get(url, allow_redirects=False) as again:
                assert again.status == 401
    finally:
        process.terminate()
        await process.wait()


def test_a_folder_without_a_run_is_a_one_line_error(tmp_path: Path) -> None:
    """The board on a folder with no event log: a one-line error, no trace, exit code 3."""
    done = subprocess.run(
        [*CHANNEL, "exercise", "board", "--run", str(tmp_path), "--no-browser"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 3
    assert (
        done.stderr.strip()
        == f"error: {tmp_path}/events.jsonl is missing or unreadable: no exercise run there"
    )
