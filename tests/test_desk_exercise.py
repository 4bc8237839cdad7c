"""The desk in an exercise: a seat's desk over a real courier files control's notices apart
(opened with the seat's keys, the receipt going to control), shows the marking on every page,
the world clock ticking and stopping, the seat's deadlines, the run's letter labels; and the
same desk outside an exercise is unchanged. Driven in headless Chromium like tests/test_desk.py.

Screenshots land in build/desk-screenshots/ (or $DESK_SCREENSHOTS), kept as test artefacts.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from structlog.testing import capture_logs

from channel.party.client import Client
from channel.party.desk.app import desk_app
from channel.party.exercise import ExerciseSeats, save_labels
from channel.party.keyring import Keyring
from channel.party.seat import Heard, clock_of, deadlines_of
from channel.party.session import party_client
from channel.party.web import serve
from channel.protocol.lifecycle import State
from channel.protocol.notice import CONTROL_PARTY, Deadline, Notice, NoticeKind
from tests.test_desk import Browser, browser_test, jar_session, needs_browser

SEAT = "ir.mfa.minister"
OTHER = "us.cia.director"
RUN = "river-20261205-161500"
MARKING = "EXERCISE EXERCISE EXERCISE"
WORLD = datetime(2017, 12, 22, 9, 0, tzinfo=UTC)
RATE = 60.0


@dataclass
class Exercise:
    ring: Keyring  # the players' keyring home (RUN/keyring)
    seat: Client
    control: Client
    other: Client
    login: str

    @property
    def base(self) -> str:
        return self.login.split("/login")[0]

    async def notice(self, kind: NoticeKind, **fields: Any) -> str:
        """Control tells the seat something, as the run does: a sealed letter; its id."""
        notice = Notice(
            kind=kind,
            run=RUN,
            world=fields.pop("world", WORLD),
            offset=fields.pop("offset", 0.0),
            rate=fields.pop("rate", RATE),
            marking=MARKING,
            **fields,
        )
        sealed, _ = await self.control.send_letter(SEAT, notice.body(), subject=notice.subject())
        return sealed.envelope.id


@pytest.fixture(autouse=True)
def quiet() -> Iterator[None]:
    with capture_logs():
        yield


@pytest.fixture
async def exercise(courier_url: str, tmp_path: Path) -> AsyncIterator[Exercise]:
    """A run's keyring home with the seat and control's pinned key, and the seat's desk."""
    home = tmp_path / "run" / "keyring"
    ring = Keyring(home)
    seat_keys = ring.new(SEAT)
    ExerciseSeats(run=RUN, title="River warning", marking=MARKING, people=(SEAT,)).save(home)
    control_ring = Keyring(tmp_path / "run" / "control")  # control's keys stay out of the home
    control_keys = control_ring.new(CONTROL_PARTY)
    ring.pin_contact(control_ring.public(CONTROL_PARTY))
    other_ring = Keyring(tmp_path / "langley")
    other_keys = other_ring.new(OTHER)
    async with (
        party_client(courier_url, ring, seat_keys, refresh_courier=True) as seat,
        Client(courier_url, control_keys) as control,
        Client(courier_url, other_keys) as other,
    ):
        for client in (seat, control, other):
            await client.register()
        control.trust(seat_keys.public())
        other.trust(seat_keys.public())
        app, guard = desk_app(seat, ring, seat_keys)
        runner, url = await serve(app, guard, port=0, open_browser=False)
        try:
            yield Exercise(ring, seat, control, other, url)
        finally:
            await runner.cleanup()


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


def shown_time(text: str) -> datetime:
    return datetime.strptime(text.strip(), "%Y-%m-%d %H:%M:%SZ").replace(tzinfo=UTC)


async def markings(browser: Browser) -> list[tuple[str, str]]:
    found = await browser.run(
        browser.driver.execute_script,
        "return [...document.querySelectorAll('.marking')]"
        ".map(e => [e.textContent.trim(), e.getAttribute('aria-label')])",
    )
    return [(str(text), str(label)) for text, label in found]


@needs_browser
@browser_test
async def test_a_seat_desk_files_notices_apart_with_clock_deadlines_and_marking(
    exercise: Exercise, browsers: Callable[[], Any]
) -> None:
    """Control's tasking and news are opened, archived and listed under "From control", not in
    the inbox; the deadlines show (the passed one marked); the world clock shows the notice's
    world time and ticks, then stands still when paused; the end is said; the marking is on
    every page; a notice body from another party is an ordinary letter, with its label."""
    browser = await browsers()
    await browser.go(exercise.login)
    await browser.wait_for("h1", "Inbox")
    assert await browser.text("#world-clock") == "not started yet"

    sent_at = time.monotonic()
    tasking = await exercise.notice(
        NoticeKind.TASKING,
        inject="INJ-02",
        title="For transmission to the Ministry",
        text="Ask the Swiss to pass a warning to the foreign ministry.",
        deadlines=(
            Deadline(expectation="EXP-00", due=WORLD - timedelta(hours=1), text="Too late."),
            Deadline(expectation="EXP-01", due=WORLD + timedelta(hours=3), text="Warn them."),
        ),
    )
    news = await exercise.notice(
        NoticeKind.NEWS, inject="INJ-03", title="Tanker seized", text="Wire: a tanker is held."
    )
    forged = Notice(kind=NoticeKind.NEWS, run=RUN, world=WORLD, offset=0, rate=RATE)
    ordinary, _ = await exercise.other.send_letter(SEAT, forged.body(), subject="Looks official")
    save_labels(exercise.ring.home, {"L1": ordinary.envelope.id})

    # The notices arrive by themselves on the open page: filed, newest first.
    await browser.click("a[href='/notices']")
    await browser.wait_for(f"article[data-letter='{news}']", "Tanker seized")
    listed = await browser.text("#notices")
    assert listed.index("News INJ-03: Tanker seized") < listed.index("Tasking INJ-02")
    assert "Ask the Swiss" in listed
    assert "World time 2017-12-22 09:00:00Z" in listed
    assert "Looks official" not in listed
    passed = await browser.wait_for("tr[data-expectation='EXP-00']")
    assert "passed" in passed
    assert "passed" in str(
        await browser.run(
            lambda: browser.driver.find_element(
                "css selector", "tr[data-expectation='EXP-00']"
            ).get_attribute("class")
        )
    )
    pending = await browser.text("tr[data-expectation='EXP-01']")
    assert "2017-12-22 12:00:00Z" in pending
    assert "world time" in pending
    assert "at this speed" in pending
    await browser.shot("exercise-1-from-control")

    # Opened with the seat's keys (control holds the signed receipt) and archived.
    seat_keys = exercise.ring.load(SEAT)
    for letter_id in (tasking, news):
        assert (await exercise.control.status(letter_id)).state is State.OPENED
        assert exercise.ring.read_letter(seat_keys, letter_id) is not None

    # The world clock: the notice's world time, moving at 60 world seconds a wall second.
    first = shown_time(await browser.text("#world-clock"))
    elapsed = time.monotonic() - sent_at
    assert WORLD <= first <= WORLD + timedelta(seconds=(elapsed + 5) * RATE)
    await asyncio.sleep(2.5)
    later = shown_time(await browser.text("#world-clock"))
    assert later - first >= timedelta(seconds=60)
    assert "Running" in await browser.text("#exercise-status")
    wall = shown_time(await browser.text("#wall-clock"))
    assert abs(wall - datetime.now(UTC)) < timedelta(seconds=30)

    # The inbox holds letters only: the look-alike from another party, sealed, with its label.
    await browser.go(f"{exercise.base}/inbox")
    row = await browser.wait_for(f"tr[data-letter='{ordinary.envelope.id}']", "L1")
    assert "sealed" in row
    inbox = await browser.text("#rows")
    assert tasking[-8:] not in inbox
    assert news[-8:] not in inbox
    assert (await exercise.other.status(ordinary.envelope.id)).state is State.DELIVERED
    await browser.shot("exercise-2-inbox")

    # The marking, top and bottom, labelled, on every page (the certified copy too).
    for path in (
        "/inbox",
        "/sent",
        "/compose",
        "/notices",
        f"/letter/{ordinary.envelope.id}",
        f"/letter/{tasking}/certified",
        "/letter/not-a-letter",  # a problem page
    ):
        await browser.go(exercise.base + path)
        await browser.wait_for("main")
        assert await markings(browser) == [(MARKING, "Exercise marking")] * 2, path
    await browser.go(f"{exercise.base}/letter/{tasking}/certified")
    assert "(world time 2017-12-22" in await browser.wait_for("main", "Certified copy")
    await browser.shot("exercise-3-certified-copy")
    await browser.go(f"{exercise.base}/letter/{ordinary.envelope.id}")
    assert await browser.text("#label") == "L1"

    # Paused: a status line, and the clock stands still; then the end is said.
    await browser.go(f"{exercise.base}/notices")
    paused = await exercise.notice(
        NoticeKind.PAUSED, world=WORLD + timedelta(minutes=30), offset=1800, rate=0
    )
    line = await browser.wait_for(f"li.status-line[data-letter='{paused}']", "Exercise paused")
    assert "2017-12-22 09:30:00Z" in line
    assert "Paused" in await browser.wait_for("#exercise-status", "Paused")
    stopped = await browser.text("#world-clock")
    assert stopped == "2017-12-22 09:30:00Z"
    await asyncio.sleep(2)
    assert await browser.text("#world-clock") == stopped
    assert "the clock stands still" in await browser.text("tr[data-expectation='EXP-01']")
    await browser.shot("exercise-4-paused")

    await exercise.notice(
        NoticeKind.ENDED, world=WORLD + timedelta(minutes=30), offset=1800, rate=0, text="Endex."
    )
    assert "The exercise has ended" in await browser.wait_for("#ended")
    assert "ended" in await browser.wait_for("#exercise-status", "ended")
    await browser.shot("exercise-5-ended")

    console = await browser.run(browser.driver.get_log, "browser")
    assert not [line for line in console if "Content Security Policy" in line["message"]]


async def test_outside_an_exercise_the_desk_is_unchanged(courier_url: str, tmp_path: Path) -> None:
    """Without exercise.json: no marking, no clock, no "From control" page, and a letter from a
    party named exercise.control is an ordinary letter in the inbox, left sealed."""
    ring = Keyring(tmp_path / "plain")
    keys = ring.new(SEAT)
    control_keys = Keyring(tmp_path / "control").new(CONTROL_PARTY)
    async with (
        party_client(courier_url, ring, keys, refresh_courier=True) as seat,
        Client(courier_url, control_keys) as control,
    ):
        await seat.register()
        await control.register()
        control.trust(keys.public())
        notice = Notice(kind=NoticeKind.NEWS, run=RUN, world=WORLD, offset=0, rate=RATE)
        sealed, _ = await control.send_letter(SEAT, notice.body(), subject=notice.subject())
        app, guard = desk_app(seat, ring, keys)
        runner, url = await serve(app, guard, port=0, open_browser=False)
        base = url.split("/login")[0]
        try:
            async with jar_session() as http:
                async with http.get(url) as reply:
                    page = await reply.text()
                assert sealed.envelope.id in page
                for marker in ("marking", "world-clock", "/notices", "world-clock.js"):
                    assert marker not in page
                async with http.get(f"{base}/notices") as reply:
                    assert reply.status == 404
        finally:
            await runner.cleanup()
        assert (await control.status(sealed.envelope.id)).state is State.DELIVERED


async def test_a_notice_from_control_for_another_run_is_an_ordinary_letter(
    exercise: Exercise,
) -> None:
    """A notice of another run from control is opened but filed as a letter, with its subject."""
    notice = Notice(kind=NoticeKind.NEWS, run="another-run", world=WORLD, offset=0, rate=RATE)
    sealed, _ = await exercise.control.send_letter(SEAT, notice.body(), subject="Old news")
    async with jar_session() as http:
        async with http.get(exercise.login) as reply:
            assert reply.status == 200
        deadline = time.monotonic() + 60
        while True:
            async with http.get(f"{exercise.base}/inbox/rows") as reply:
                rows = await reply.text()
            if "Old news" in rows or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.3)
        assert "Old news" in rows
        async with http.get(f"{exercise.base}/notices") as reply:
            assert "Old news" not in await reply.text()
    assert (await exercise.control.status(sealed.envelope.id)).state is State.OPENED


def heard(kind: NoticeKind, sent: datetime, world: datetime, rate: float, **extra: Any) -> Heard:
    notice = Notice(kind=kind, run=RUN, world=world, offset=0, rate=rate, **extra)
    return Heard(f"01JF{len(extra):022d}", sent, notice)


def test_the_clock_and_deadlines_follow_the_latest_notice() -> None:
    """World time runs at the latest notice's rate, stands still when paused and once ended;
    a deadline's wall time left is its world time left over the rate."""
    t0 = datetime(2026, 12, 5, 16, 0, tzinfo=UTC)
    due = Deadline(expectation="EXP-01", due=WORLD + timedelta(hours=2))
    tasking = heard(NoticeKind.TASKING, t0, WORLD, 60, deadlines=(due,))
    clock = clock_of([tasking])
    assert clock is not None
    assert clock.world_at(t0 + timedelta(seconds=60)) == WORLD + timedelta(hours=1)
    (left,) = deadlines_of([tasking], clock, t0 + timedelta(seconds=60))
    assert left.world_left == timedelta(hours=1)
    assert left.wall_left == timedelta(seconds=60)
    assert not left.passed
    (late,) = deadlines_of([tasking], clock, t0 + timedelta(seconds=180))
    assert late.passed

    paused = heard(NoticeKind.PAUSED, t0 + timedelta(seconds=60), WORLD + timedelta(hours=1), 0)
    clock = clock_of([tasking, paused])
    assert clock is not None
    assert clock.world_at(t0 + timedelta(hours=5)) == WORLD + timedelta(hours=1)
    (still,) = deadlines_of([tasking, paused], clock, t0 + timedelta(hours=5))
    assert still.wall_left is None
    assert "Paused" in clock.status

    ended = heard(NoticeKind.ENDED, t0 + timedelta(seconds=90), WORLD + timedelta(hours=2), 60)
    clock = clock_of([tasking, ended])
    assert clock is not None
    assert clock.ended
    assert clock.rate == 0
    assert clock_of([]) is None


async def test_the_pages_event_stream_names_each_change_for_htmx(exercise: Exercise) -> None:
    """A notice reaching the seat comes down the desk's /events as an SSE event named `changed`
    (what the pages' `sse:changed` triggers listen for), with what changed as its data."""
    async with jar_session() as http:
        async with http.get(exercise.login) as reply:
            assert reply.status == 200
        async with http.get(f"{exercise.base}/events") as stream:
            assert stream.status == 200
            news = await exercise.notice(NoticeKind.NEWS, title="Tanker seized")
            names: list[str] = []
            data: list[str] = []
            async with asyncio.timeout(60):
                while news not in data:
                    line = (await stream.content.readline()).decode().strip()
                    if line.startswith("event:"):
                        names.append(line.split(":", 1)[1].strip())
                    elif line.startswith("data:"):
                        data.append(line.split(":", 1)[1].strip())
    assert set(names) == {"changed"}
    assert "notices" in data  # filed before the pages were told
    assert data.index("notices") < data.index(news)
