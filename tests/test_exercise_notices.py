"""What control tells a person's seat: notices as letters from exercise.control, read through the
person's own client and keyring, on a real courier and Redis (the test fixtures' courier, so the
letters can still be read after the run)."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import timedelta
from pathlib import Path

import pytest

from channel.exercise.author.lint import lint
from channel.exercise.author.scenario import load_scenario
from channel.exercise.escrow import read_escrow
from channel.exercise.eventlog import read_log
from channel.exercise.report.render import write_reports
from channel.exercise.run.control import send_command
from channel.exercise.run.notices import CONTROL_DIR
from channel.exercise.run.play import RunOptions, play
from channel.party.client import Client
from channel.party.exercise import ExerciseSeats, load_labels
from channel.party.keyring import Keyring
from channel.protocol.canonical import format_time
from channel.protocol.notice import CONTROL_PARTY, Deadline, Notice, NoticeKind
from channel.protocol.seal import verify_content
from tests.test_exercise_run import wait_for_control

PERSON, BOT = "us.cia.director", "ir.irgc.quds"

NOTICED = """\
title: Noticed
marking: EXERCISE
transcript: escrow
parties:
  - {name: us.cia.director, play: human, stand_in: "bot:quiet"}
  - {name: ir.irgc.quds, play: "bot:quiet"}
clock:
  start: 2017-11-20T09:00:00Z
  speed: 60
  end: T+10:00:00
policies:
  quiet: {}
injects:
  - id: INJ-01
    at: T+00:00:01
    from: us.cia.director
    to: [ir.irgc.quds]
    subject: Warn the Quds Force
    action: Write to the Quds Force commander.
    body: Do not mistake restraint for indifference.
    expect:
      - {id: EXP-1, check: sent, from: us.cia.director, to: ir.irgc.quds, within: 6h,
         text: Send the warning.}
  - id: INJ-02
    at: T+00:00:02
    channel: news
    subject: Wire
    body: Reports of a strike.
  - id: INJ-03
    at: T+00:00:03
    channel: communique
    from: ir.irgc.quds
    subject: Statement
    body: We will answer.
"""


async def notices(person: Client, seen: dict[str, Notice], kinds: set[NoticeKind]) -> None:
    """Open every new letter from control in the person's inbox until `kinds` have all come."""
    for _ in range(600):  # up to 30 s on a loaded machine
        for letter in await person.inbox():
            if letter.sender != CONTROL_PARTY or letter.id in seen:
                continue
            content, _ = await person.open_letter(letter.id)
            notice = Notice.from_letter(content.content)
            assert notice is not None, content.content.body
            seen[letter.id] = notice
        if kinds <= {n.kind for n in seen.values()}:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"never received {kinds - {n.kind for n in seen.values()}}")


def of(seen: dict[str, Notice], kind: NoticeKind) -> Notice:
    (found,) = [n for n in seen.values() if n.kind is kind]
    return found


async def test_a_person_receives_taskings_news_clock_changes_and_the_end_from_control(
    courier_url: str, tmp_path: Path
) -> None:
    """Tasking, news, communiqué, start, pause, resume, speed and end reach the person's seat as
    letters control signed, with inject ids, world times and deadlines; none counts as a letter."""
    path = tmp_path / "noticed.yaml"
    path.write_text(NOTICED, encoding="utf-8")
    out = tmp_path / "run"
    options = RunOptions(source=load_scenario(path), out=out, server=courier_url, speed=1.0)
    running = asyncio.create_task(play(options))
    await wait_for_control(out)

    # The person's own keyring: control's public key pinned there, its private key not.
    ring = Keyring(out / "keyring")
    pinned = ring.contact(CONTROL_PARTY)
    assert pinned is not None
    assert CONTROL_PARTY not in ring.names()
    assert not any("private" in p.name for p in (out / "keyring").rglob("*exercise.control*"))
    private = [p for p in (out / CONTROL_DIR).rglob("*") if p.is_file()]
    assert private
    assert all(p.stat().st_mode & 0o777 == 0o600 for p in private)
    seats = ExerciseSeats.load(out / "keyring")
    assert seats is not None
    assert (seats.run, seats.people, seats.control, seats.marking) == (
        out.name,
        (PERSON,),
        CONTROL_PARTY,
        "EXERCISE",
    )

    seen: dict[str, Notice] = {}
    async with Client(courier_url, ring.load(PERSON)) as person:
        courier_key = ring.courier(courier_url)
        assert courier_key is not None
        person.trust_courier(courier_key)
        person.trust(pinned)  # only the pinned key: a notice signed by anyone else fails to open
        wanted = {NoticeKind.STARTED, NoticeKind.TASKING, NoticeKind.NEWS, NoticeKind.COMMUNIQUE}
        await notices(person, seen, wanted)
        # The person does what the tasking asks; the runner sees that letter and scores it.
        await person.send_letter(BOT, "Do not.", subject="EXERCISE — Warning")
        assert (await send_command(out, "pause"))["ok"]
        await notices(person, seen, wanted | {NoticeKind.PAUSED})
        assert (await send_command(out, "resume"))["ok"]
        await notices(person, seen, wanted | {NoticeKind.PAUSED, NoticeKind.RESUMED})
        for _ in range(600):  # the person's letter is seen before the run is sped to its end
            if any(r["kind"] == "expectation_met" for r in read_log(out / "events.jsonl")):
                break
            await asyncio.sleep(0.05)
        assert (await send_command(out, "speed", "max"))["ok"]
        played = await asyncio.wait_for(running, 60)
        # The courier outlives the run: the end notice was accepted before the run finished.
        await notices(person, seen, {NoticeKind.SPEED, NoticeKind.ENDED})

    records = read_log(played.log)
    logged = {
        r["data"]["inject"]: r for r in records if r["kind"] in ("inject_tasked", "inject_fired")
    }
    tasking = of(seen, NoticeKind.TASKING)
    assert tasking.inject == "INJ-01"
    assert tasking.run == out.name
    assert tasking.title == "Warn the Quds Force"
    assert (
        tasking.text
        == "Write to the Quds Force commander.\n\nDo not mistake restraint for indifference."
    )
    assert format_time(tasking.world) == logged["INJ-01"]["world"]
    assert tasking.rate == 60  # world seconds per wall second: 60 x the exercise at speed 1
    assert tasking.deadlines == (
        Deadline(
            expectation="EXP-1", due=tasking.world + timedelta(hours=6), text="Send the warning."
        ),
    )
    news, communique = of(seen, NoticeKind.NEWS), of(seen, NoticeKind.COMMUNIQUE)
    assert (news.inject, news.text, news.author) == ("INJ-02", "Reports of a strike.", None)
    assert format_time(news.world) == logged["INJ-02"]["world"]
    assert (communique.inject, communique.text, communique.author) == (
        "INJ-03",
        "We will answer.",
        BOT,
    )
    assert of(seen, NoticeKind.PAUSED).rate == 0
    assert of(seen, NoticeKind.RESUMED).rate == 60
    assert of(seen, NoticeKind.SPEED).rate == 0  # speed max: world time jumps
    assert of(seen, NoticeKind.ENDED).text == "The exercise has ended: the clock reached its end."

    # Logged: one notice_sent per notice, the end before run_ended, escrowed to the archive key.
    sent = [r for r in records if r["kind"] == "notice_sent"]
    assert sorted(r["evidence"]["letter_id"] for r in sent) == sorted(seen)
    assert {r["data"]["party"] for r in sent} == {PERSON}
    assert [r["data"]["kind"] for r in sent][-1] == "ended"
    assert records.index(sent[-1]) < len(records) - 1 == records.index(records[-1])
    assert records[-1]["kind"] == "run_ended"
    control_key = base64.b64decode(records[0]["evidence"]["control_key"])
    assert control_key == pinned.signing_key
    for record in sent:
        content = read_escrow(
            out, record["evidence"]["letter_id"], base64.b64decode(record["evidence"]["archive"])
        )
        assert verify_content(content, control_key)
        assert content.content.recipient == PERSON

    # Not exercise letters: only the person's own letter is tracked, counted and reported.
    letters = [r["data"] for r in records if r["kind"] == "letter_sent"]
    assert [(d["from"], d["to"], d["by"]) for d in letters] == [(PERSON, BOT, "human")]
    # The person's client knows the letter by its label too (labels.json in their keyring home).
    first = next(r for r in records if r["kind"] == "letter_sent")
    assert load_labels(out / "keyring") == {first["data"]["letter"]: first["evidence"]["letter_id"]}
    assert records[-1]["data"]["letters"] == 1
    met = [r["data"]["expectation"] for r in records if r["kind"] == "expectation_met"]
    assert met == ["EXP-1"]
    report = json.loads(write_reports(played.log, played.out, ["json"])["json"].read_text())
    assert report["key_figures"]["letters"] == 1


async def test_a_rehearsal_registers_control_but_sends_no_notices(tmp_path: Path) -> None:
    """Bots in every seat: control is a party of the run, and no notice is sent to anyone."""
    path = tmp_path / "noticed.yaml"
    path.write_text(NOTICED, encoding="utf-8")
    played = await play(RunOptions(source=load_scenario(path), out=tmp_path / "run", rehearse=True))
    records = read_log(played.log)
    assert "control_key" in records[0]["evidence"]
    assert [r for r in records if r["kind"] == "notice_sent"] == []
    seats = ExerciseSeats.load(played.out / "keyring")
    assert seats is not None
    assert seats.people == ()


def test_lint_refuses_a_party_named_like_the_control_cell(tmp_path: Path) -> None:
    """A scenario party called exercise.control is an error on its line."""
    path = tmp_path / "clash.yaml"
    path.write_text(NOTICED.replace("ir.irgc.quds", CONTROL_PARTY), encoding="utf-8")
    errors = [p for p in lint(load_scenario(path)) if p.severity == "error"]
    clash = [p for p in errors if "control cell's own party" in p.message]
    assert len(clash) == 1
    assert clash[0].line == 6  # parties[1].name
    assert str(clash[0]).startswith(f"{path}:6")


async def test_a_courier_where_control_is_taken_is_a_clear_error(
    courier_url: str, tmp_path: Path
) -> None:
    """A second exercise on the same courier (other party names) stops on exercise.control."""
    from channel.protocol.errors import NameTaken

    first = tmp_path / "first.yaml"
    first.write_text(NOTICED, encoding="utf-8")
    await play(
        RunOptions(
            source=load_scenario(first), out=tmp_path / "a", rehearse=True, server=courier_url
        )
    )
    other = tmp_path / "other.yaml"
    other.write_text(
        NOTICED.replace("us.cia.director", "us.nsc.staff").replace(BOT, "ir.mfa.tehran"),
        encoding="utf-8",
    )
    with pytest.raises(
        NameTaken, match=r"exercise\.control is already registered on .* other keys"
    ):
        await play(
            RunOptions(
                source=load_scenario(other), out=tmp_path / "b", rehearse=True, server=courier_url
            )
        )
