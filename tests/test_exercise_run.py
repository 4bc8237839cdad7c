"""Exercises played end to end: a real embedded courier and Redis, real letters, real receipts.

Each run starts its own courier in its run folder, exactly as `channel exercise run` does.
"""

from __future__ import annotations

import asyncio
import base64
import json
from pathlib import Path
from typing import Any

import pytest

from channel.exercise.author.scenario import Source, bundled_dir, load_scenario
from channel.exercise.eventlog import first_divergence, projection, read_log
from channel.exercise.run.control import CONTROL_FILE, send_command
from channel.exercise.run.play import Played, RunOptions, play
from channel.exercise.run.replay import replay_run
from channel.party.client import Client
from channel.party.keyring import Keyring
from channel.protocol.models import SignedContent
from channel.protocol.notice import CONTROL_PARTY
from channel.protocol.seal import verify_content

DIRECTOR, QUDS, SWISS, TEHRAN = (
    "us.cia.director",
    "ir.irgc.quds",
    "ch.fdfa.protecting-power",
    "ir.mfa.tehran",
)

SMALL = """\
title: Small known-answer exercise
objectives:
  - {id: OBJ-1, text: Keep the channel open}
parties:
  - {name: us.cia.director, play: human, stand_in: "bot:writer"}
  - {name: ir.irgc.quds, play: "bot:refuser"}
  - {name: ch.fdfa.protecting-power, play: "bot:swiss"}
  - {name: ir.mfa.tehran, play: "bot:tehran"}
clock:
  start: 2017-11-20T09:00:00Z
  speed: 60
  end: T+01:00:00
  moves:
    - {id: 2, title: Second attempt, at: T+00:30:00, world: 2017-12-05T09:00:00Z}
latency:
  letter: {uniform: [5m, 30m]}
transcript: post_release
policies:
  writer:
    receipts:
      - event: returned_unopened
        escalate: {tension: 1}
  refuser:
    letters:
      - from: us.cia.director
        open: 0
        think: {lognormal: {median: 2h}}
        reason: Returned unopened.
  swiss:
    letters:
      - from: us.cia.director
        forward: {to: ir.mfa.tehran, after: 1h}
  tehran:
    letters:
      - open: 0.6
        think: {uniform: [1h, 3h]}
        reply:
          probability: 0.7
          body: "Received from $sender."
          after: {uniform: [2h, 6h]}
          to: ch.fdfa.protecting-power
injects:
  - id: INJ-01
    at: T+00:05
    from: us.cia.director
    to: ir.irgc.quds
    subject: Warning
    body: Do not mistake restraint for indifference.
    objectives: [OBJ-1]
    expect:
      - {id: EXP-1, check: returned_unopened, from: us.cia.director, to: ir.irgc.quds, within: 6h}
      - {id: EXP-2, check: opened, from: us.cia.director, to: ir.irgc.quds, within: 6h,
         score: 2, contingency: INJ-C}
  - id: INJ-C
    contingency: true
    channel: news
    subject: Letter refused
    body: Reports say the letter came back unopened.
  - id: INJ-AFTER
    after: {expectation: EXP-1, outcome: met, delay: 1h}
    channel: communique
    from: us.cia.director
    subject: Statement
    body: We wrote. They did not read.
  - id: INJ-02
    at: T+00:35
    from: us.cia.director
    to: ch.fdfa.protecting-power
    subject: Please transmit
    body: Please pass this to Tehran.
    expect:
      - {id: EXP-3, check: sent, from: ch.fdfa.protecting-power, to: ir.mfa.tehran, within: 4h,
         objectives: [OBJ-1]}
"""


def scenario(tmp_path: Path, text: str = SMALL, name: str = "small.yaml") -> Source:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return load_scenario(path)


async def rehearse(source: Source, out: Path, seed: int = 1, **options: Any) -> Played:
    return await play(RunOptions(source=source, out=out, seed=seed, rehearse=True, **options))


def kinds(records: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [r["data"] for r in records if r["kind"] == kind]


async def test_known_scenario_meets_misses_and_fires_its_contingency(tmp_path: Path) -> None:
    """The refusal meets EXP-1, the unopened letter misses EXP-2 and fires INJ-C, `after` fires."""
    played = await rehearse(scenario(tmp_path), tmp_path / "run")
    records = read_log(played.log)
    assert played.reason == "end"
    assert records[0]["kind"] == "run_started"
    assert records[-1]["kind"] == "run_ended"
    met = {d["expectation"]: d["letter"] for d in kinds(records, "expectation_met")}
    missed = {d["expectation"]: d for d in kinds(records, "expectation_missed")}
    assert met == {"EXP-1": "L1", "EXP-3": "L3"}
    assert set(missed) == {"EXP-2"}
    assert missed["EXP-2"]["contingency"] == "INJ-C"
    fired = {d["inject"]: d for d in kinds(records, "inject_fired")}
    assert fired["INJ-C"]["cause"] == "contingency:EXP-2"
    assert fired["INJ-AFTER"]["cause"] == "after:EXP-1"
    assert fired["INJ-AFTER"]["text"] == "We wrote. They did not read."
    # The contingency fires exactly at the deadline: 6 h of story at 60x is 6 exercise minutes.
    missed_at = next(r["t"] for r in records if r["kind"] == "expectation_missed")
    assert missed_at == 300_000 + 360_000
    receipts = [(d["letter"], d["event"]) for d in kinds(records, "receipt")]
    assert ("L1", "returned_unopened") in receipts
    assert ("L2", "opened") in receipts  # the protecting power opens, then forwards as L3
    sent = {d["letter"]: d for d in kinds(records, "letter_sent")}
    assert (sent["L3"]["from"], sent["L3"]["to"]) == (SWISS, TEHRAN)
    assert kinds(records, "state_changed")[0] == {
        "party": DIRECTOR,
        "variable": "tension",
        "old": 0,
        "new": 1,
        "cause": "returned_unopened L1",
    }


async def test_every_letter_ends_with_a_verified_final_status(tmp_path: Path) -> None:
    """Each letter the run saw has one letter_final whose chain is the courier's, and no content."""
    played = await rehearse(scenario(tmp_path), tmp_path / "run")
    records = read_log(played.log)
    labels = [d["letter"] for d in kinds(records, "letter_sent")]
    finals = {d["letter"]: d for d in kinds(records, "letter_final")}
    assert sorted(finals) == sorted(labels)
    assert labels
    assert finals["L1"]["state"] == "returned_unopened"
    # metadata in the log: the letter bodies never appear outside post_release records
    text = "\n".join(json.dumps(r) for r in records if r["kind"] != "released")
    assert "Do not mistake restraint" not in text
    assert "Please pass this to Tehran" not in text


async def test_post_release_publishes_opened_letters_signed_by_their_senders(
    tmp_path: Path,
) -> None:
    """post_release: what bots opened is released at the end, each verifiable by its sender."""
    played = await rehearse(scenario(tmp_path), tmp_path / "run")
    records = read_log(played.log)
    keys = records[0]["evidence"]["party_keys"]
    released = [r for r in records if r["kind"] == "released"]
    opened = {d["letter"] for d in kinds(records, "receipt") if d["event"] == "opened"}
    assert {r["data"]["letter"] for r in released} == opened
    for record in released:
        content = SignedContent.model_validate(record["evidence"]["content"])
        sender_key = base64.b64decode(keys[content.content.sender]["signing_key"])
        assert verify_content(content, sender_key)
    never = {d["letter"] for d in kinds(records, "receipt") if d["event"] == "returned_unopened"}
    assert never.isdisjoint({r["data"]["letter"] for r in released})


async def test_same_seed_same_events_other_seed_other_events(tmp_path: Path) -> None:
    """Determinism: seed 7 twice gives identical projections; seed 8 takes other draws."""
    source = scenario(tmp_path)
    first = read_log((await rehearse(source, tmp_path / "a", seed=7)).log)
    second = read_log((await rehearse(source, tmp_path / "b", seed=7)).log)
    other = read_log((await rehearse(source, tmp_path / "c", seed=8)).log)
    assert first_divergence(first, second) is None
    assert len(first) > 20
    # the letter ids and signatures differ, the exercise does not
    ids = [
        {r["evidence"]["letter_id"] for r in run if r["kind"] == "letter_sent"}
        for run in (first, second)
    ]
    assert ids[0]
    assert ids[0].isdisjoint(ids[1])
    rest = [projection(r) for r in first[1:]], [projection(r) for r in other[1:]]
    assert rest[0] != rest[1]


async def test_replay_reproduces_a_max_speed_run(tmp_path: Path) -> None:
    """`replay` plays the kept scenario copy with the logged seed and finds no difference."""
    played = await rehearse(scenario(tmp_path), tmp_path / "run", seed=3)
    result = await asyncio.to_thread(replay_run, played.out, tmp_path / "again")
    assert result.divergence is None
    assert result.records == len(read_log(played.log))


async def test_replay_refuses_an_edited_scenario_copy(tmp_path: Path) -> None:
    """The scenario copy in the run folder is checked against the digest in the log."""
    from channel.protocol.errors import IntegrityError

    played = await rehearse(scenario(tmp_path), tmp_path / "run")
    copy = played.out / "scenario" / "small.yaml"
    copy.write_text(copy.read_text().replace("open: 0.6", "open: 0.9"))
    with pytest.raises(IntegrityError, match="changed since the run"):
        await asyncio.to_thread(replay_run, played.out, tmp_path / "again")


async def test_speed_max_refuses_human_seats(tmp_path: Path) -> None:
    """A person cannot play at speed max: the run refuses before creating anything."""
    from channel.protocol.errors import BadRequest

    with pytest.raises(BadRequest, match="speed max needs bots"):
        await play(RunOptions(source=scenario(tmp_path), out=tmp_path / "run"))
    assert not (tmp_path / "run").exists()


async def test_a_run_folder_is_never_reused(tmp_path: Path) -> None:
    """A second run into the same folder is refused: one folder, one log."""
    from channel.protocol.errors import BadRequest

    source = scenario(tmp_path)
    await rehearse(source, tmp_path / "run")
    with pytest.raises(BadRequest, match="not empty"):
        await rehearse(source, tmp_path / "run")


CONTROLLED = """\
title: Controlled
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
      - {id: EXP-1, check: returned_unopened, from: us.cia.director, to: ir.irgc.quds, within: 10d}
  - id: INJ-02
    at: T+06:00:00
    channel: news
    subject: Wire
  - id: INJ-03
    at: T+07:00:00
    channel: news
    subject: Held wire
"""


async def wait_for_control(run_dir: Path) -> None:
    for _ in range(400):  # up to 20 s on a loaded machine
        if (run_dir / CONTROL_FILE).exists():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the run never opened its control API")


async def test_control_cell_pauses_fires_skips_holds_and_a_human_returns_a_letter(
    tmp_path: Path,
) -> None:
    """Pause stops exercise time; fire works while paused; a person's return meets EXP-1."""
    out = tmp_path / "run"
    options = RunOptions(source=scenario(tmp_path, CONTROLLED), out=out, speed=1.0)
    running = asyncio.create_task(play(options))
    await wait_for_control(out)
    paused = await send_command(out, "pause")
    assert paused["ok"]
    assert paused["paused"]
    fired = await send_command(out, "fire", "INJ-01")
    assert fired["ok"]
    assert "INJ-01" in fired["fired"]
    assert fired["paused"]
    again = await send_command(out, "fire", "INJ-01")
    assert not again["ok"]
    assert "already fired" in again["error"]
    assert (await send_command(out, "skip", "INJ-02"))["ok"]
    assert (await send_command(out, "hold", "INJ-03"))["ok"]
    unknown = await send_command(out, "fire", "INJ-99")
    assert not unknown["ok"]
    assert "no inject" in unknown["error"]
    stopped_at = (await send_command(out, "status"))["exercise"]
    await asyncio.sleep(0.3)
    assert (await send_command(out, "status"))["exercise"] == stopped_at  # paused: no time passes

    # The person in the Quds seat uses the exercise keyring, as the CLI would.
    ring = Keyring(out / "keyring")
    url = read_log(out / "events.jsonl")[0]["evidence"]["courier_url"]
    async with Client(url, ring.load(QUDS)) as quds:
        # Control's notices (started, paused) sit beside the one exercise letter.
        (letter,) = [found for found in await quds.inbox() if found.sender != CONTROL_PARTY]
        await quds.return_letter(letter.id, "Not from you.")
    for _ in range(400):  # up to 20 s on a loaded machine
        status = await send_command(out, "status")
        records = read_log(out / "events.jsonl")
        if kinds(records, "expectation_met"):
            break
        await asyncio.sleep(0.05)
    assert (await send_command(out, "release", "INJ-03"))["ok"]
    assert (await send_command(out, "resume"))["ok"]
    assert (await send_command(out, "speed", "max"))["ok"]
    played = await asyncio.wait_for(running, 60)
    records = read_log(played.log)
    assert not (out / CONTROL_FILE).exists()
    commands = [(d["command"], d.get("argument")) for d in kinds(records, "control")]
    assert commands[:2] == [("pause", None), ("fire", "INJ-01")]
    (met,) = kinds(records, "expectation_met")
    assert met["expectation"] == "EXP-1"
    returned = [d for d in kinds(records, "receipt") if d["event"] == "returned_unopened"]
    assert returned == [
        {
            "letter": "L1",
            "event": "returned_unopened",
            "by": QUDS,
            "seq": 2,
            "reason": "Not from you.",
        }
    ]
    fired_ids = [d["inject"] for d in kinds(records, "inject_fired")]
    assert fired_ids == ["INJ-01", "INJ-03"]  # INJ-02 skipped, INJ-03 fired when its time came
    assert kinds(records, "inject_skipped") == [{"inject": "INJ-02", "by": "control"}]
    assert status["paused"] is True


async def test_control_api_wants_the_token(tmp_path: Path) -> None:
    """The control API refuses a command without the bearer token from control.json."""
    import aiohttp

    out = tmp_path / "run"
    options = RunOptions(source=scenario(tmp_path, CONTROLLED), out=out, speed=1.0)
    running = asyncio.create_task(play(options))
    await wait_for_control(out)
    handle = json.loads((out / CONTROL_FILE).read_text())
    assert (out / CONTROL_FILE).stat().st_mode & 0o777 == 0o600
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{handle['url']}/v1/commands", json={"command": "pause"}) as reply,
    ):
        assert reply.status == 401
    assert not (await send_command(out, "status"))["paused"]
    await send_command(out, "speed", "max")
    await asyncio.wait_for(running, 60)


@pytest.mark.parametrize("path", sorted(bundled_dir().glob("*.yaml")), ids=lambda p: p.stem)
async def test_bundled_scenarios_run_to_the_end_at_max_speed(path: Path, tmp_path: Path) -> None:
    """Every bundled scenario plays to its end with bots in every seat, with letters verified."""
    played = await rehearse(load_scenario(path), tmp_path / "run")
    records = read_log(played.log)
    assert played.reason == "end"
    assert kinds(records, "action_failed") == []
    assert kinds(records, "letter_sent"), "a scenario that sends no letter exercises nothing"
    assert len(kinds(records, "letter_final")) == len(kinds(records, "letter_sent"))
    outcomes = kinds(records, "expectation_met") + kinds(records, "expectation_missed")
    assert outcomes


def test_shipped_schema_is_the_generated_one() -> None:
    """author/schema.json is what the models generate (`make docs` refreshes it)."""
    from channel.exercise.author.scenario import json_schema

    shipped = json.loads((bundled_dir().parent / "schema.json").read_text(encoding="utf-8"))
    assert shipped == json_schema()


def test_every_bundled_scenario_matches_the_shipped_schema() -> None:
    """The bundled YAML validates against the JSON Schema a facilitator's editor would use."""
    import jsonschema
    import yaml

    shipped = json.loads((bundled_dir().parent / "schema.json").read_text(encoding="utf-8"))
    for path in bundled_dir().glob("*.yaml"):
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
        jsonschema.validate(_stringify_times(data), shipped)


def _stringify_times(value: Any) -> Any:
    """YAML reads timestamps as datetimes; JSON (and the schema) see text."""
    import datetime

    if isinstance(value, dict):
        return {k: _stringify_times(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_stringify_times(v) for v in value]
    if isinstance(value, datetime.datetime):
        return value.isoformat()
    return value


ESCROWED = CONTROLLED.replace("title: Controlled", "title: Escrowed\ntranscript: escrow")


async def test_escrow_seals_every_letter_to_the_archive_key_people_included(
    tmp_path: Path,
) -> None:
    """Bots' letters are escrowed by the runner, a person's by `exercise send`; the archive key
    opens each to content signed by its sender, and the courier never had it."""
    from channel.exercise.escrow import read_escrow, send_escrowed
    from channel.protocol.models import Precedence

    out = tmp_path / "run"
    options = RunOptions(source=scenario(tmp_path, ESCROWED), out=out, speed=1.0)
    running = asyncio.create_task(play(options))
    await wait_for_control(out)
    assert (out / "archive.key").stat().st_mode & 0o777 == 0o600
    await send_command(out, "fire", "INJ-01")  # the director's bot writes to the human seat
    (first,) = [r for r in read_log(out / "events.jsonl") if r["kind"] == "letter_sent"]
    person = await send_escrowed(
        out,
        QUDS,
        DIRECTOR,
        "We received nothing.",
        "Reply",
        Precedence.PRIORITY,
        in_reply_to=first["evidence"]["letter_id"],
    )
    for _ in range(400):  # up to 20 s on a loaded machine
        if len(kinds(read_log(out / "events.jsonl"), "escrowed")) == 2:
            break
        await asyncio.sleep(0.05)
    await send_command(out, "speed", "max")
    records = read_log((await asyncio.wait_for(running, 60)).log)
    keys = records[0]["evidence"]["party_keys"]
    sent = {
        r["data"]["letter"]: r["evidence"]["letter_id"]
        for r in records
        if r["kind"] == "letter_sent"
    }
    escrows = {
        r["data"]["letter"]: r["evidence"]["archive"] for r in records if r["kind"] == "escrowed"
    }
    assert sorted(escrows) == sorted(sent) == ["L1", "L2"]
    bodies = set()
    for label, blob in escrows.items():
        content = read_escrow(out, sent[label], base64.b64decode(blob))
        sender_key = base64.b64decode(keys[content.content.sender]["signing_key"])
        assert verify_content(content, sender_key)
        bodies.add(content.content.body)
    assert bodies == {"Do not.", "We received nothing."}
    assert sent["L2"] == person
    replied = next(d for d in kinds(records, "letter_sent") if d["letter"] == "L2")
    assert replied["in_reply_to"] == "L1"
    assert replied["precedence"] == "priority"


async def test_the_guides_annotated_example_lints_clean_and_plays(tmp_path: Path) -> None:
    """The complete example in docs/exercises.md is a working scenario, as the guide promises."""
    from channel.exercise.author.lint import lint

    guide = (Path(__file__).parent.parent / "docs" / "exercises.md").read_text(encoding="utf-8")
    blocks = guide.split("```yaml\n")[1:]
    (example,) = [b.split("```")[0] for b in blocks if b.startswith("# hotline-check.yaml")]
    source = scenario(tmp_path, example, "hotline-check.yaml")
    assert [p for p in lint(source) if p.severity == "error"] == []
    played = await rehearse(source, tmp_path / "run")
    records = read_log(played.log)
    assert played.reason == "end"
    assert kinds(records, "letter_sent")


async def test_a_run_on_an_existing_courier_uses_it_and_starts_no_redis(
    courier_url: str, tmp_path: Path
) -> None:
    """--server: the parties register on that courier, letters go through it, no courier/ dir."""
    played = await rehearse(scenario(tmp_path), tmp_path / "run", server=courier_url)
    records = read_log(played.log)
    assert records[0]["evidence"]["courier_url"] == courier_url
    assert not (played.out / "courier").exists()
    assert len(kinds(records, "letter_final")) == len(kinds(records, "letter_sent")) > 0


async def test_a_name_taken_on_the_courier_is_a_clear_error(
    courier_url: str, tmp_path: Path
) -> None:
    """A party already registered there with other keys stops the run before the first inject."""
    from channel.protocol.errors import NameTaken

    await rehearse(scenario(tmp_path), tmp_path / "first", server=courier_url)
    with pytest.raises(NameTaken, match=r"already registered on .* with other keys"):
        await rehearse(scenario(tmp_path), tmp_path / "second", server=courier_url)


async def test_transcripts_hold_only_what_was_escrowed_or_released_and_verified(
    tmp_path: Path,
) -> None:
    """escrow: the archive key opens every letter; post_release: bots' and a person's released
    letters, each checked; a forged release is refused; metadata_only has no transcript."""
    from channel.exercise.report.transcript import release, render, transcript
    from channel.protocol.errors import BadRequest

    escrowed = await rehearse(scenario(tmp_path, ESCROWED, "escrow.yaml"), tmp_path / "e")
    text = render(transcript(escrowed.out))
    assert "Do not." in text
    assert "escrow; the sender's signature verified" in text

    source = scenario(
        tmp_path,
        CONTROLLED.replace("title: Controlled", "title: Released\ntranscript: post_release"),
        "released.yaml",
    )
    out = tmp_path / "r"
    running = asyncio.create_task(play(RunOptions(source=source, out=out, speed=1.0)))
    await wait_for_control(out)
    await send_command(out, "fire", "INJ-01")
    ring = Keyring(out / "keyring")
    url = read_log(out / "events.jsonl")[0]["evidence"]["courier_url"]
    async with Client(url, ring.load(QUDS)) as quds:
        for _ in range(400):  # up to 20 s on a loaded machine
            letters = [found for found in await quds.inbox() if found.sender != CONTROL_PARTY]
            if letters:
                break
            await asyncio.sleep(0.05)
        content, _ = await quds.open_letter(letters[0].id)
        ring.save_received(QUDS, content)  # as `channel open` does
    await send_command(out, "speed", "max")
    await asyncio.wait_for(running, 60)
    assert [p.stem for p in release(out, QUDS)] == [letters[0].id]
    forged = content.model_copy(
        update={"content": content.content.model_copy(update={"body": "Yes."})}
    )
    (out / "released" / QUDS / "forged.json").write_text(forged.model_dump_json())
    result = transcript(out)
    assert [(e.label, e.body, e.source) for e in result.entries] == [
        ("L1", "Do not.", f"released by {QUDS}")
    ]
    assert result.rejected == [f"{letters[0].id} (released by {QUDS}): not signed by {DIRECTOR}"]

    plain = await rehearse(scenario(tmp_path, CONTROLLED, "plain.yaml"), tmp_path / "p")
    with pytest.raises(BadRequest, match="metadata_only"):
        transcript(plain.out)


WIRE = """\
title: Wire latency
parties:
  - {name: us.cia.director, play: "bot:listener"}
  - {name: ir.irgc.quds, play: "bot:listener"}
clock: {start: 2017-11-20T09:00:00Z, speed: 60, end: T+01:00:00}
latency: {news: 2h, communique: 30m}
policies:
  listener:
    state: {tension: 0}
    injects:
      - {inject: NEWS, escalate: {tension: 1}}
      - {inject: SAID, escalate: {tension: 2}}
injects:
  - {id: NEWS, at: T+00:10, channel: news, subject: Near miss}
  - {id: SAID, at: T+00:10, channel: communique, from: ir.irgc.quds, subject: Statement}
"""


async def test_public_items_reach_the_bots_after_their_channels_latency(tmp_path: Path) -> None:
    """News (2 h) and a communiqué (30 min) reach the bots that long after firing, world time."""
    played = await rehearse(scenario(tmp_path, WIRE, "wire.yaml"), tmp_path / "run")
    records = read_log(played.log)
    changes = [
        (r["t"], r["data"]["party"], r["data"]["cause"])
        for r in records
        if r["kind"] == "state_changed"
    ]
    fired = 600_000
    assert changes == [
        (fired + 30_000, DIRECTOR, "inject SAID"),
        (fired + 30_000, QUDS, "inject SAID"),
        (fired + 120_000, DIRECTOR, "inject NEWS"),
        (fired + 120_000, QUDS, "inject NEWS"),
    ]


async def test_the_report_states_the_simulated_latency_of_each_channel(tmp_path: Path) -> None:
    """The artificialities name each channel's delay as the scenario declared it."""
    from channel.exercise.report.analysis import analyse

    played = await rehearse(scenario(tmp_path, WIRE, "wire.yaml"), tmp_path / "run")
    sentences = analyse(read_log(played.log)).overview.artificialities
    assert "courier and wire latency simulated (world time): communique 30m, news 2h" in sentences
