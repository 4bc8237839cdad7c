"""A player's CLI in an exercise: control's notices in `watch` and `inbox`, letter labels, world
time; and outside an exercise, nothing changes.

A real courier and Redis; the seat's keyring home is set up as a run leaves it (exercise.json,
labels.json, control's public key pinned), and a real control party sends real notice letters.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from structlog.testing import capture_logs

from channel.party.client import Client
from channel.party.exercise import ExerciseSeats, save_labels
from channel.party.keyring import Keyring
from channel.party.notice_text import span, time_left
from channel.party.seat import Heard
from channel.protocol.canonical import parse_time
from channel.protocol.notice import CONTROL_PARTY, Deadline, Notice, NoticeKind
from tests.conftest import PartyFactory
from tests.test_cli import Shell, assert_user_error, registered

SEAT = "us.state.opscenter"
OTHER = "ir.mfa.tehran"
RUN = "swiss-channel-20261205-160000"
WORLD = datetime(2017, 12, 22, 9, 0, tzinfo=UTC)


def notice(kind: NoticeKind, **fields: object) -> Notice:
    values: dict[str, object] = {
        "kind": kind,
        "run": RUN,
        "world": WORLD,
        "offset": 0.0,
        "rate": 60.0,
        "marking": "EXERCISE EXERCISE EXERCISE",
    }
    return Notice.model_validate(values | fields)


TASKING = notice(
    NoticeKind.TASKING,
    inject="INJ-02",
    title="Ask the Swiss",
    text="Ask the Swiss to carry a warning to Tehran.",
    deadlines=(Deadline(expectation="EXP-01", due=WORLD + timedelta(hours=4), text="Write."),),
)
NEWS = notice(NoticeKind.NEWS, inject="INJ-03", title="Wire", text="Reuters: talks stall.")
PAUSED = notice(NoticeKind.PAUSED, rate=0.0, world=WORLD + timedelta(minutes=30))
ENDED = notice(NoticeKind.ENDED, world=WORLD + timedelta(hours=6), text="ENDEX. Thank you.")


@pytest.fixture(autouse=True)
def quiet_courier() -> Iterator[None]:
    """Keep the in-process courier's log lines out of the CLI's captured stdout."""
    with capture_logs():
        yield


@pytest.fixture
def shell(tmp_path: Path, courier_url: str) -> Shell:
    return Shell(tmp_path / "keyring", courier_url)


async def seat_home(shell: Shell, party: PartyFactory, *, exercise: bool = True) -> Client:
    """The seat and another party registered from the home; control registered on its own, its
    public key pinned in the home; the home marked as the run's (unless `exercise` is False)."""
    await registered(shell, SEAT, OTHER)
    control = await party(CONTROL_PARTY)
    Keyring(shell.home).pin_contact(control.me.public())
    if exercise:
        ExerciseSeats(run=RUN, title="Swiss channel", people=(SEAT,)).save(shell.home)
    return control


async def tell(control: Client, item: Notice, to: str = SEAT) -> str:
    sealed, _ = await control.send_letter(to, item.body(), subject=item.subject())
    return sealed.envelope.id


async def lookalike(shell: Shell) -> str:
    """A letter from another party whose body is a notice's, labelled L1 by the run."""
    sent = await shell.json(
        "send", "--as", OTHER, "--to", SEAT, "--subject", "Not control", "--text", TASKING.body(),
        "--trust-new",
    )  # fmt: skip
    save_labels(shell.home, {"L1": sent["id"]})
    return str(sent["id"])


async def position(shell: Shell, courier_url: str) -> str:
    async with Client(courier_url, Keyring(shell.home).load(SEAT)) as seat:
        return await seat.event_position()


async def test_watch_prints_notices_and_stops_when_the_run_ends(
    shell: Shell, party: PartyFactory, courier_url: str
) -> None:
    """watch opens control's notices and prints them (tasking with deadline, news, pause), shows
    a lookalike letter from another party as an ordinary labelled letter, and exits 0 at the end."""
    control = await seat_home(shell, party)
    start = await position(shell, courier_url)
    tasking = await tell(control, TASKING)
    await tell(control, NEWS)
    fake = await lookalike(shell)
    await tell(control, PAUSED)
    await tell(control, ENDED)

    result = await asyncio.wait_for(shell.ok("watch", "--as", SEAT, "--after", start), 120)
    out = result.stdout
    assert "Tasking INJ-02: Ask the Swiss" in out
    assert "  Ask the Swiss to carry a warning to Tehran." in out
    assert "world 2017-12-22 09:00Z" in out
    assert "Deadline EXP-01: Write. by 2017-12-22 13:00Z world time (in " in out
    assert "at the current speed)" in out
    assert "News INJ-03: Wire" in out
    assert "Reuters: talks stall." in out
    assert "world 2017-12-22 09:30Z  Exercise paused" in out
    assert f"new letter        {OTHER} → {SEAT}  [routine]  L1 {fake}" in out
    assert out.rstrip().endswith(
        "The exercise has ended: ENDEX. Thank you. (world 2017-12-22 15:00Z). Stopping."
    )
    assert "ENDEX" not in out.replace("ended: ENDEX", "")  # the end is said once, clearly
    assert "opened" not in out  # the notices' own receipts are not news to the player
    kept = Keyring(shell.home)
    # Opened as any letter: archived in the seat's keyring, control holds the opened receipt.
    assert kept.read_letter(kept.load(SEAT), tasking) is not None
    assert kept.read_letter(kept.load(SEAT), fake) is None  # never opened for the player
    assert (await control.status(tasking)).state.value == "opened"
    again = await asyncio.wait_for(shell.ok("watch", "--as", SEAT), 60)
    assert "The exercise has ended" in again.stdout  # a later watch stops at once


async def test_watch_json_emits_notices_as_objects(
    shell: Shell, party: PartyFactory, courier_url: str
) -> None:
    """With --json each notice is one object (kind notice, its fields); stdout stays JSON."""
    control = await seat_home(shell, party)
    start = await position(shell, courier_url)
    await tell(control, TASKING)
    await tell(control, ENDED)
    result = await asyncio.wait_for(
        shell.ok("watch", "--as", SEAT, "--after", start, "--json"), 120
    )
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert [line["kind"] for line in lines] == ["notice", "notice"]
    assert lines[0]["notice"]["inject"] == "INJ-02"
    assert lines[0]["notice"]["deadlines"][0]["expectation"] == "EXP-01"
    assert lines[1]["notice"]["kind"] == "ended"
    assert all(line["id"] for line in lines)  # what --after takes
    assert "The exercise has ended" in result.stderr


async def test_watch_warns_about_a_notice_it_cannot_open_and_goes_on(
    shell: Shell, party: PartyFactory, courier_url: str
) -> None:
    """A letter from control withdrawn before the seat opens it: a warning; the watch goes on."""
    control = await seat_home(shell, party)
    start = await position(shell, courier_url)
    gone = await tell(control, TASKING)
    await control.withdraw_letter(gone)
    await tell(control, ENDED)
    result = await asyncio.wait_for(shell.ok("watch", "--as", SEAT, "--after", start), 120)
    assert f"warning: could not open letter {gone} from control" in result.stderr
    assert f"new letter        {CONTROL_PARTY} → {SEAT}  [routine]  {gone}" in result.stdout
    assert "The exercise has ended" in result.stdout


async def test_exercise_send_takes_a_label_for_reply_to(tmp_path: Path) -> None:
    """`channel exercise send --reply-to L99` in a run whose keyring has no L99: one line."""
    run = tmp_path / "run"
    save_labels(run / "keyring", {"L1": "01m93fnezxetdfvvh4fd2dds4v"})
    shell = Shell(run / "keyring", "http://127.0.0.1:9")
    result = await shell(
        "exercise", "send", "--run", str(run), "--as", SEAT, "--to", OTHER, "--text", "x",
        "--reply-to", "L99",
    )  # fmt: skip
    assert_user_error(result, 4, "no letter labelled L99 (this run has L1–L1)")


async def test_inbox_files_notices_apart_and_shows_subjects_labels_and_world_time(
    shell: Shell, party: PartyFactory
) -> None:
    """inbox opens control's notices and lists them apart; letters show their label, the subject
    once opened (`open L1`), and world time worked out from the latest notice."""
    control = await seat_home(shell, party)
    tasking = await tell(control, TASKING)
    fake = await lookalike(shell)

    listed = await shell.json("inbox", "--as", SEAT)
    by_id = {row["id"]: row for row in listed}
    assert by_id[tasking]["notice"]["inject"] == "INJ-02"
    assert by_id[tasking]["state"] == "opened"
    assert by_id[fake]["label"] == "L1"
    assert by_id[fake]["subject"] is None  # not opened: the seat cannot read it yet
    assert "notice" not in by_id[fake]  # a notice's text from another party is a letter
    elapsed = parse_time(by_id[fake]["sent_at"]) - parse_time(by_id[tasking]["sent_at"])
    assert parse_time(by_id[fake]["world_time"]) == WORLD + elapsed * 60

    opened = await shell.ok("open", "L1", "--as", SEAT)
    assert "Subject: Not control" in opened.stdout

    text = (await shell.ok("inbox", "--as", SEAT)).stdout
    head, _, letters = text.partition("\nLetters\n")
    assert head.startswith("From control\n")
    assert "world 2017-12-22 09:00Z  Tasking INJ-02: Ask the Swiss" in head
    assert fake not in head
    assert "L1" in letters
    assert "Not control" in letters
    assert "2017-12-22 09:" in letters
    assert tasking not in letters
    assert fake not in letters

    outbox = await shell.json("outbox", "--as", OTHER)
    assert [(row["label"], row["subject"]) for row in outbox] == [("L1", "Not control")]


async def test_labels_work_wherever_a_letter_id_does(shell: Shell, party: PartyFactory) -> None:
    """status, show and send --reply-to take L1; an unknown label is a one-line error."""
    await seat_home(shell, party)
    fake = await lookalike(shell)
    assert (await shell.json("status", "L1", "--as", SEAT))["id"] == fake
    await shell.ok("open", "l1", "--as", SEAT)
    assert (await shell.json("show", "L1", "--as", SEAT))["letter_id"] == fake
    reply = await shell.json(
        "send", "--as", SEAT, "--to", OTHER, "--reply-to", "L1", "--text", "Ok"
    )
    assert reply["envelope"]["in_reply_to"] == fake
    for command in ("open", "status", "show", "return", "withdraw", "returned"):
        missing = await shell(command, "L99", "--as", SEAT)
        assert_user_error(missing, 4, "no letter labelled L99 (this run has L1–L1)")
    missing = await shell("send", "--as", SEAT, "--to", OTHER, "--reply-to", "L99", "--text", "x")
    assert_user_error(missing, 4, "no letter labelled L99")


async def test_outside_an_exercise_nothing_changes(
    shell: Shell, party: PartyFactory, courier_url: str
) -> None:
    """Without exercise.json: control's letter stays sealed and ordinary, labels mean nothing,
    and watch prints it as any letter; subjects of opened letters show in the inbox."""
    control = await seat_home(shell, party, exercise=False)
    start = await position(shell, courier_url)
    tasking = await tell(control, TASKING)
    fake = await lookalike(shell)

    watched = await asyncio.wait_for(
        shell.ok("watch", "--as", SEAT, "--after", start, "--count", "2", "--json"), 60
    )
    events = [json.loads(line) for line in watched.stdout.splitlines()]
    assert [(e["kind"], e["letter_id"]) for e in events] == [("letter", tasking), ("letter", fake)]
    assert all("label" not in e for e in events)

    listed = await shell.json("inbox", "--as", SEAT)
    assert {row["id"]: row["state"] for row in listed} == {tasking: "delivered", fake: "delivered"}
    assert all(set(row) - {"subject"} == set(listed[0]) - {"subject"} for row in listed)
    assert not any("label" in row or "notice" in row for row in listed)
    text = (await shell.ok("inbox", "--as", SEAT)).stdout
    assert "From control" not in text
    assert "label" not in text

    assert_user_error(await shell("open", "L1", "--as", SEAT), 2, "is not a letter id")
    await shell.ok("open", fake, "--as", SEAT)
    assert "Not control" in (await shell.ok("inbox", "--as", SEAT)).stdout


def test_a_deadline_reads_as_wall_time_left_at_the_notice_rate() -> None:
    """Wall time left is world time left over the rate; a paused clock and a passed deadline
    say so instead of a number."""
    sent = datetime(2026, 12, 5, 16, 0, tzinfo=UTC)
    heard = Heard(letter_id="01m93fnezxetdfvvh4fd2dds4v", sent=sent, notice=TASKING)
    (deadline,) = TASKING.deadlines  # 4 world hours after sending, at 60x: 4 wall minutes
    assert (
        time_left(heard, deadline, sent + timedelta(seconds=30)) == "in 3m30s at the current speed"
    )
    assert time_left(heard, deadline, sent + timedelta(minutes=5)) == "passed"
    paused = Heard(heard.letter_id, sent, TASKING.model_copy(update={"rate": 0.0}))
    assert time_left(paused, deadline, sent + timedelta(hours=1)) == "clock paused"
    assert [span(s) for s in (45, 250, 7500, 3 * 86400 + 4 * 3600)] == [
        "45s",
        "4m10s",
        "2h05m",
        "3d4h",
    ]
