"""A person plays a seat through the ordinary CLI while control steers the run: end to end.

`channel exercise run` plays tests/scenarios/river-warning.yaml on its embedded courier, with a
person in Lowland's seat. The test is that person (`channel send/inbox/open --as`, with
CHANNEL_SERVER and CHANNEL_HOME as the run prints them) and the control cell (`channel exercise
control`): the person acts after quiet spells of about 30 s and 90 s, control holds, pauses,
resumes, changes the speed, skips, releases and fires. The report must then say exactly what
was done: the person's letters scored, the Commission's forwards counted as relayed, every
control action at its time, the evaluators' notes and the hot-wash feedback, and it must print
to PDF and render in headless Chromium.

Everything the test did is kept in `Played`, so figures other parts add to the report (notices
delivered to the person's seat, dwell times) can be checked against it with a few more lines.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from channel.exercise.author.scenario import format_offset
from channel.exercise.eventlog import read_log
from tests.test_exercise_report import chromium

# One run of about two and a half minutes (the quiet spells are the point), shared by every test.
pytestmark = pytest.mark.timeout(300)

SCENARIO = Path(__file__).parent / "scenarios" / "river-warning.yaml"
PERSON = "ld.civil-protection"
COMMISSION = "rb.commission"
UPLAND = "ul.water-authority"
CHANNEL = [sys.executable, "-m", "channel"]
# Fast enough that the test stays short, slow enough that the person's deadlines (2h to 6h of
# story at clock.speed 20) outlast a 90 s quiet spell.
SPEED = "2"
FIRST_QUIET = 30.0  # the person answers the tasking after this long
SECOND_QUIET = 90.0  # then stays quiet this long before reading and answering the notification
PAUSE = 5.0  # wall seconds control keeps the run paused
FINISH_SPEED = "2000"  # once the person is done, the rest plays out in seconds

NOTES = """\
evaluators: [A. Evaluator]
summary: The duty officer kept to the Commission's channel throughout.
objectives:
  OBJ-2:
    rating: S
    core_capability: Operational Coordination
    strengths:
      - The notification was acknowledged through the Commission.
    areas_for_improvement:
      - observation: The acknowledgement took a long time.
        analysis: The duty officer waited before reading the Commission's letter.
        recommendation: Read priority letters as they arrive.
        corrective_action: Add inbox checks to the duty officer's hourly routine.
        organisation: Lowland Civil Protection
        point_of_contact: Duty officer lead
        start: 2026-04-01
        end: 2026-06-30
"""


@dataclass
class Played:
    """What the test did, as it did it: the known answers the report is checked against."""

    run: Path
    sent: dict[str, str] = field(default_factory=dict)  # what the person wrote → its letter id
    opened: list[str] = field(default_factory=list)  # letter ids the person opened
    # Wall time (epoch seconds) of each thing the person did, by letter id: a letter's dwell in
    # the person's inbox is its opening here less its delivery in the log.
    acted: dict[str, float] = field(default_factory=dict)
    inbox: list[dict[str, Any]] = field(default_factory=list)  # the person's inbox, as last seen
    looked: float = 0.0  # wall time the person listed the inbox that held the forward
    control: list[tuple[str, str | None, float]] = field(default_factory=list)  # (command, arg, t)
    paused_wall: tuple[float, float] = (0.0, 0.0)  # at least, at most (the commands take time)


def channel(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*CHANNEL, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


def json_of(*args: str, env: dict[str, str] | None = None) -> Any:
    done = channel(*args, "--json", env=env)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


def records(run: Path) -> list[dict[str, Any]]:
    """The run's log as far as it is written (a live run appends to it)."""
    path = run / "events.jsonl"
    if not path.exists():
        return []
    lines = path.read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.endswith("}")]


def wait_for(what: str, found: Any, timeout: float = 60.0) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        time.sleep(0.5)
    raise AssertionError(f"gave up waiting for {what}")


def fired(run: Path, inject: str) -> bool:
    """Whether `inject` has fired (or, for a person's tasking, been tasked)."""
    kinds = ("inject_fired", "inject_tasked")
    return any(r["kind"] in kinds and r["data"]["inject"] == inject for r in records(run))


def forwarded(run: Path) -> bool:
    """Whether the Commission has written to the person (the log records what bots send)."""
    return any(
        r["kind"] == "letter_sent" and (r["data"]["from"], r["data"]["to"]) == (COMMISSION, PERSON)
        for r in records(run)
    )


def offset_seconds(offset: str) -> float:
    hours, minutes, seconds = offset.removeprefix("T+").split(":")
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds)


class Person:
    """Lowland's duty officer at the keyboard: the ordinary CLI, as the run tells players."""

    def __init__(self, played: Played, server: str) -> None:
        self.played = played
        self.env = os.environ | {
            "CHANNEL_SERVER": server,
            "CHANNEL_HOME": str(played.run / "keyring"),
        }

    def send(self, key: str, to: str, subject: str, text: str, *extra: str) -> str:
        sent = json_of(
            "send",
            "--as",
            PERSON,
            "--to",
            to,
            "--subject",
            subject,
            "--text",
            text,
            *extra,
            env=self.env,
        )
        self.played.sent[key] = sent["id"]
        self.played.acted[sent["id"]] = time.time()
        return str(sent["id"])

    def inbox(self) -> list[dict[str, Any]]:
        self.played.inbox = json_of("inbox", "--as", PERSON, env=self.env)
        return self.played.inbox

    def letters_from(self, sender: str) -> list[dict[str, Any]]:
        """Letters from `sender`; anything else in the inbox (control's notices) is left alone."""
        return [row for row in self.inbox() if row["sender"] == sender]

    def open(self, letter_id: str) -> dict[str, Any]:
        self.played.acted[letter_id] = time.time()
        opened = json_of("open", letter_id, "--as", PERSON, env=self.env)
        self.played.opened.append(letter_id)
        return dict(opened)


class Control:
    """The control cell, with `channel exercise control --run RUN`."""

    def __init__(self, played: Played) -> None:
        self.played = played

    def __call__(self, command: str, argument: str | None = None) -> dict[str, Any]:
        args = [argument] if argument else []
        answer = json_of("exercise", "control", "--run", str(self.played.run), command, *args)
        self.played.control.append((command, argument, offset_seconds(answer["exercise"])))
        return dict(answer)


@pytest.fixture(scope="module")
def played(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Played]:
    """Play the scenario once, with the person and control scripted; the report is written."""
    base = tmp_path_factory.mktemp("people")
    played = Played(base / "run")
    log = (base / "run.log").open("w")
    run = subprocess.Popen(
        [
            *CHANNEL,
            "exercise",
            "run",
            str(SCENARIO),
            *("--speed", SPEED, "--seed", "1"),
            *("--out", str(played.run), "--no-live", "--json"),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    try:
        script(played)
        assert run.wait(timeout=90) == 0, (base / "run.log").read_text()
        yield played
    finally:
        if run.poll() is None:
            run.kill()
            run.wait()
        log.close()


def script(played: Played) -> None:
    """The person's and control's moves, in the order a real session would make them."""
    run = played.run
    started = wait_for("the run to start", lambda: records(run)[:1])[0]
    wait_for("the control API", lambda: (run / "control.json").exists())
    person = Person(played, started["evidence"]["courier_url"])
    control = Control(played)

    # The tasking (INJ-02): the person writes to the Commission after a quiet spell of ~30 s.
    wait_for("the tasking", lambda: fired(run, "INJ-02"))
    time.sleep(FIRST_QUIET)
    person.send(
        "request",
        COMMISSION,
        "Request for the Gorna release schedule",
        "Please obtain from Upland the planned schedule and volume of any Gorna release.",
    )
    last_act = time.monotonic()

    # Control steers while the person waits.
    control("hold", "INJ-06")
    before = time.monotonic()
    control("pause")
    paused = time.monotonic()
    time.sleep(PAUSE)
    control("resume")
    played.paused_wall = (PAUSE, time.monotonic() - before)
    assert paused - before < PAUSE  # so the pause really was PAUSE or more
    control("speed", "3")
    control("skip", "INJ-07")
    control("release", "INJ-06")
    control("fire", "INJ-05")

    # Upland's notification comes through the Commission (the test learns so from the log, so the
    # person stays quiet: no polling); the person looks at the inbox, reads and answers after a
    # quiet spell of ~90 s since they last acted.
    wait_for("the Commission's forward", lambda: forwarded(run), SECOND_QUIET + 60)
    time.sleep(max(0.0, SECOND_QUIET - (time.monotonic() - last_act)))
    [notification] = wait_for("the forward", lambda: person.letters_from(COMMISSION), 30)
    played.looked = time.time()  # listing the inbox is what delivers it: the dwell starts here
    person.open(notification["id"])
    person.send(
        "acknowledgement",
        COMMISSION,
        "For Upland: release notification acknowledged",
        "Acknowledged; the flood plain below Vetrovo is being evacuated.",
        "--reply-to",
        notification["id"],
    )
    control("speed", FINISH_SPEED)


def report(played: Played) -> dict[str, Any]:
    return dict(json.loads((played.run / "report.json").read_text(encoding="utf-8")))


def test_the_persons_letters_are_seen_and_scored(played: Played) -> None:
    """After quiet spells of 30 s and 90 s, the person's letter and reply meet expectations."""
    outcomes = {
        exp["id"]: (exp["outcome"], [e["letter_id"] for e in exp["evidence"]])
        for objective in report(played)["objectives"]
        for exp in objective["expectations"]
    }
    [notification] = played.opened
    assert outcomes["EXP-01"] == ("met", [played.sent["request"]])
    assert outcomes["EXP-05"][0] == "met"
    assert notification in outcomes["EXP-05"][1]
    assert outcomes["EXP-06"][0] == "met"
    assert played.sent["acknowledgement"] in outcomes["EXP-06"][1]
    # The bots' part: the Commission relays both ways, Upland reads what it is sent.
    assert {e: o for e, (o, _) in outcomes.items()} == {f"EXP-0{n}": "met" for n in range(1, 7)}
    figures = report(played)["key_figures"]
    assert (figures["expectations_met"], figures["expectations_missed"]) == (6, 0)
    assert (figures["people"], figures["bots"]) == (1, 2)


def test_the_person_receives_the_tasking_and_news_from_control(played: Played) -> None:
    """The person's inbox files control's notices apart: the start, the news, the tasking."""
    notices = [row["notice"] for row in played.inbox if row["sender"] == "exercise.control"]
    assert all(notices)  # every letter from control is a notice, opened for the person
    heard = {(n["kind"], n.get("inject")) for n in notices}
    assert {("started", None), ("news", "INJ-01"), ("tasking", "INJ-02")} <= heard
    [tasking] = [n for n in notices if n["kind"] == "tasking"]
    assert [d["expectation"] for d in tasking["deadlines"]] == ["EXP-01"]


def test_the_persons_dwell_is_apart_from_courier_latency(played: Played) -> None:
    """The forward sat in the person's inbox from their listing to their opening: that is dwell."""
    [track] = [
        letter
        for letter in report(played)["comms"]["letters"]
        if letter["recipient"] == PERSON and letter["sender"] == COMMISSION
    ]
    assert (track["person"], track["final_state"]) == (True, "opened")
    timing = track["timing"]
    assert timing["dwell_until"] == "opened"
    expected = played.acted[track["letter_id"]] - played.looked  # what the person did
    # The runner stamps both steps when it sees them on the person's stream: a second's slack.
    assert timing["dwell"]["wall_s"] == pytest.approx(expected, abs=1.5)
    # The latency ran from the Commission's send (as logged) to the person's listing.
    [sent] = [
        r
        for r in read_log(played.run / "events.jsonl")
        if r["kind"] == "letter_sent" and r["data"]["letter"] == track["label"]
    ]
    sent_wall = datetime.fromisoformat(sent["wall"]).timestamp()
    assert timing["latency"]["wall_s"] == pytest.approx(played.looked - sent_wall, abs=1.5)


def test_the_commissions_forwards_are_relayed_not_unanswered(played: Played) -> None:
    """Every letter the Commission received it passed on: relayed, none unanswered."""
    comms = report(played)["comms"]
    totals = {row["party"]: row for row in comms["totals"]}
    letters = [r for r in read_log(played.run / "events.jsonl") if r["kind"] == "letter_sent"]
    to_commission = [r for r in letters if r["data"]["to"] == COMMISSION]
    # The person's request, Upland's notification (INJ-03) and the person's acknowledgement.
    assert len(to_commission) == 3
    commission = totals[COMMISSION]
    assert (commission["received"], commission["sent"]) == (3, 3)
    assert sorted(commission["relayed"]) == sorted(r["data"]["letter"] for r in to_commission)
    assert commission["unanswered"] == []
    person = totals[PERSON]
    assert (person["sent"], person["received"], person["opened"]) == (2, 1, 1)
    assert person["unanswered"] == []
    assert report(played)["key_figures"]["letters"] == 6


def test_every_control_action_is_an_artificiality_at_its_time(played: Played) -> None:
    """Hold, pause, resume, both speed changes, skip, release and fire, in order, at their times."""
    got = report(played)
    actions = got["control_actions"]
    assert [(a["command"], a["argument"]) for a in actions] == [
        (command, argument) for command, argument, _ in played.control
    ]
    for action, (_, _, t) in zip(actions, played.control, strict=True):
        assert abs(action["t"] / 1000 - t) <= 1.5, (action, t)
    pause, resume = actions[1], actions[2]
    assert pause["t"] == pytest.approx(resume["t"], abs=50)  # exercise time stood still
    said = re.fullmatch(
        r"the control cell resumed the exercise after (\d+)s of wall time", resume["text"]
    )
    assert said is not None, resume["text"]
    least, most = played.paused_wall
    assert round(least) <= int(said[1]) <= round(most)
    artificialities = got["overview"]["artificialities"]
    for action in actions:
        assert f"{format_offset(action['t'] / 1000)}: {action['text']}" in artificialities
    assert any("changed the speed 2×" in line for line in artificialities), artificialities
    assert got["key_figures"]["control_actions"] == len(played.control) == 8
    count = got["inject_count"]
    # INJ-01, 02, 03, 06, 08 on schedule, INJ-07 skipped, INJ-05 fired by hand, INJ-04 never.
    assert (count["fired"], count["contingencies"], count["skipped"]) == (6, 1, 1)
    assert (count["scheduled_fired"], count["scheduled"]) == (5, 6)


def test_notes_and_feedback_reach_the_report(played: Played) -> None:
    """`exercise notes` as evaluators fill them in and `exercise feedback` reach the report."""
    run = str(played.run)
    done = channel("exercise", "notes", run)
    assert done.returncode == 0, done.stderr
    (played.run / "notes.yaml").write_text(NOTES, encoding="utf-8")
    done = channel(
        "exercise",
        "feedback",
        run,
        "--seat",
        PERSON,
        "--name",
        "Duty officer",
        "--rating",
        "4",
        "--went-well",
        "The Commission relayed quickly",
        "--improve",
        "Subjects in the inbox",
        "--do-differently",
        "Read priority letters first",
        "--no-input",
    )
    assert done.returncode == 0, done.stderr
    done = channel("exercise", "report", run, "--format", "json", "--format", "md")
    assert done.returncode == 0, done.stderr
    got = report(played)
    assert got["evaluators"] == ["A. Evaluator"]
    objective = {o["id"]: o for o in got["objectives"]}["OBJ-2"]
    assert objective["rating"] == "S"
    assert objective["core_capability"] == "Operational Coordination"
    plan = [row for row in got["improvement_plan"] if row["corrective_action"]]
    assert [(row["organisation"], row["start"], row["end"]) for row in plan] == [
        ("Lowland Civil Protection", "2026-04-01", "2026-06-30")
    ]
    markdown = (played.run / "report.md").read_text(encoding="utf-8")
    assert "The duty officer kept to the Commission's channel throughout." in markdown
    assert "The Commission relayed quickly" in markdown
    assert "1 of 4 seats answered; mean rating 4.0 of 5." in markdown
    assert (
        "| Lowland Civil Protection Directorate | Duty officer | 4/5 | The Commission relayed "
        "quickly | Subjects in the inbox | Read priority letters first | — |"
    ) in markdown


@pytest.mark.skipif(shutil.which("chromium") is None, reason="chromium is not installed")
def test_the_report_prints_to_pdf_and_renders_in_chromium(played: Played, tmp_path: Path) -> None:
    """`report --format pdf` prints a PDF, and the HTML renders in headless Chromium."""
    done = channel("exercise", "report", str(played.run), "--format", "pdf", "--format", "html")
    assert done.returncode == 0, done.stderr
    assert (played.run / "report.pdf").read_bytes().startswith(b"%PDF-")
    page = (played.run / "report.html").as_uri()
    dom = chromium("--dump-dom", page, profile=tmp_path / "profile").stdout
    assert "River warning" in dom
    assert "Lowland Civil Protection Directorate" in dom
    shot = tmp_path / "shot.png"
    chromium(f"--screenshot={shot}", "--window-size=1400,2000", page, profile=tmp_path / "p2")
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_the_scenario_lints_clean_and_rehearses(tmp_path: Path) -> None:
    """River warning has no lint findings at speed 1 or 2, and its stand-ins meet every deadline."""
    for speed in ("1", SPEED):
        done = channel("exercise", "lint", str(SCENARIO), "--speed", speed)
        assert done.returncode == 0, done.stderr
        assert done.stderr == ""
    out = tmp_path / "rehearsal"
    done = channel(
        "exercise",
        "run",
        str(SCENARIO),
        "--rehearse",
        "--speed",
        "max",
        "--seed",
        "2",
        "--out",
        str(out),
        "--no-live",
        "--format",
        "json",
    )
    assert done.returncode == 0, done.stderr
    got = json.loads((out / "report.json").read_text(encoding="utf-8"))
    assert (got["key_figures"]["expectations_met"], got["key_figures"]["letters"]) == (6, 6)
    commission = {row["party"]: row for row in got["comms"]["totals"]}[COMMISSION]
    assert (len(commission["relayed"]), commission["unanswered"]) == (3, [])
