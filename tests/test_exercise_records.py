"""Typed event-log records, and a person's dwell time kept apart from courier latency.

The dwell log is written line by line with chosen wall times (the runner stamps `wall` with the
clock, so no played run could give exact wall figures); every figure asserted follows from it.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from channel.exercise.author.scenario import bundled_dir, load_scenario
from channel.exercise.eventlog import (
    GenericRecord,
    LetterSent,
    LogError,
    RunStarted,
    decode,
    read_log,
    read_records,
    record_hash,
)
from channel.exercise.report.analysis import AfterAction, analyse
from channel.exercise.report.html import render_html
from channel.exercise.report.render import render_json, render_markdown
from channel.exercise.run.play import RunOptions, play
from channel.protocol.canonical import ZERO_HASH
from channel.protocol.notice import CONTROL_PARTY

PERSON, BOT = "us.state.envoy", "ir.mfa.tehran"


@pytest.mark.parametrize("path", sorted(bundled_dir().glob("*.yaml")), ids=lambda p: p.stem)
async def test_every_record_a_bundled_rehearsal_writes_decodes(path: Path, tmp_path: Path) -> None:
    """Each kind the runner writes today parses to its typed model: none falls back to generic."""
    played = await play(RunOptions(source=load_scenario(path), out=tmp_path / "run", rehearse=True))
    records = read_records(played.log)
    assert isinstance(records[0], RunStarted)
    assert [r.kind for r in records if isinstance(r, GenericRecord)] == []
    assert [r.kind for r in records] == [r["kind"] for r in read_log(played.log)]
    assert any(isinstance(r, LetterSent) for r in records)


def test_an_unknown_kind_is_kept_as_a_generic_record() -> None:
    """A kind a newer runner wrote is kept (the chain covers it) and counted nowhere."""
    raw = _raw(5, "satellite_pass", {"orbit": 3})
    record = decode(raw)
    assert isinstance(record, GenericRecord)
    assert (record.kind, record.data) == ("satellite_pass", {"orbit": 3})


def test_a_known_kind_missing_a_field_is_a_clear_log_error() -> None:
    """A letter_sent without its recipient names the record and the field, not a traceback."""
    with pytest.raises(LogError, match=r"record 5 \(letter_sent\): data.to: Field required"):
        decode(_raw(5, "letter_sent", {"letter": "L1", "from": BOT}))


# --- dwell time against simulated latency: a log with known answers ------------------------------


def _raw(
    seq: int, kind: str, data: dict[str, Any], t: int = 0, wall: str = "10:00:00"
) -> dict[str, Any]:
    return {
        "seq": seq,
        "prev": ZERO_HASH,
        "kind": kind,
        "t": t,
        "world": "2017-11-20T09:00:00.000Z",
        "wall": f"2026-12-05T{wall}.000Z",
        "move": 1,
        "data": data,
        "evidence": {},
        "hash": "",
    }


def _write(path: Path, lines: list[tuple[str, int, str, dict[str, Any]]]) -> None:
    """A chained log: (kind, exercise ms, wall hh:mm:ss, data) per record; world at 60x."""
    prev, out = ZERO_HASH, []
    for seq, (kind, t, wall, data) in enumerate(lines):
        record = _raw(seq, kind, data, t, wall)
        record["prev"] = prev
        world_ms = 1_511_168_400_000 + t * 60  # 2017-11-20T09:00Z + 60 times exercise time
        record["world"] = _iso(world_ms)
        del record["hash"]
        record["hash"] = prev = record_hash(prev, record)
        out.append(json.dumps(record))
    path.write_text("\n".join(out) + "\n", encoding="utf-8")


def _iso(ms: int) -> str:
    return (
        datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%S.") + f"{ms % 1000:03d}Z"
    )


def _sent(label: str, sender: str, recipient: str) -> dict[str, Any]:
    return {"letter": label, "from": sender, "to": recipient, "by": "bot", "subject": label}


def _receipt(label: str, event: str, by: str) -> dict[str, Any]:
    return {"letter": label, "event": event, "by": by}


STARTED = {
    "scenario": {"title": "Dwell", "digest": "cd" * 32},
    "speed": "1",
    "parties": [
        {"name": PERSON, "label": "Envoy", "play": "human", "player": "Ann"},
        {"name": BOT, "label": "Tehran", "play": "bot:tehran"},
    ],
    "objectives": [{"id": "OBJ-1", "text": "Talk"}],
    "moves": [{"id": 1, "title": "Only", "t": 0, "world": "2017-11-20T09:00:00.000Z"}],
    "end": 600_000,
    "world_speed": "60",
    "latency": {"letter": "fixed 30m"},
}


@pytest.fixture(scope="module")
def dwelt(tmp_path_factory: pytest.TempPathFactory) -> AfterAction:
    """L1 to the person: 30 s exercise (40 s wall) in the courier, then 2 min in the inbox
    before opening. L2: 30 s in the courier, then unopened to the end: 270 s exercise, 390 s
    wall (the run was paused two minutes). L3 goes to the bot: no dwell. A notice from control
    is neither a letter nor counted among them."""
    path = tmp_path_factory.mktemp("dwell") / "events.jsonl"
    _write(
        path,
        [
            ("run_started", 0, "10:00:00", STARTED),
            ("letter_sent", 60_000, "10:01:00", _sent("L1", BOT, PERSON)),
            ("receipt", 90_000, "10:01:40", _receipt("L1", "delivered", PERSON)),
            ("receipt", 210_000, "10:03:40", _receipt("L1", "opened", PERSON)),
            ("letter_sent", 300_000, "10:05:00", _sent("L2", BOT, PERSON)),
            ("receipt", 330_000, "10:05:30", _receipt("L2", "delivered", PERSON)),
            ("letter_sent", 340_000, "10:05:40", _sent("L3", PERSON, BOT)),
            ("receipt", 350_000, "10:05:50", _receipt("L3", "delivered", BOT)),
            ("letter_sent", 360_000, "10:06:00", _sent("L4", CONTROL_PARTY, PERSON)),
            (
                "notice_sent",
                360_000,
                "10:06:00",
                {"kind": "tasking", "inject": "INJ-1", "party": PERSON, "letter_id": "01abc"},
            ),
            ("run_ended", 600_000, "10:12:00", {"reason": "end"}),
        ],
    )
    return analyse(read_log(path))


def test_latency_and_dwell_are_measured_apart(dwelt: AfterAction) -> None:
    """Each letter to the person: courier latency and inbox dwell on both clocks, exactly."""
    timing = {letter.label: letter.timing for letter in dwelt.comms.letters}
    l1, l2 = timing["L1"], timing["L2"]
    assert l1
    assert l1.latency
    assert l1.dwell
    assert l2
    assert l2.latency
    assert l2.dwell
    assert (l1.latency.exercise_s, l1.latency.wall_s) == (30, 40)
    assert (l1.dwell.exercise_s, l1.dwell.wall_s, l1.dwell_until) == (120, 120, "opened")
    assert (l2.latency.exercise_s, l2.latency.wall_s) == (30, 30)
    assert (l2.dwell.exercise_s, l2.dwell.wall_s, l2.dwell_until) == (270, 390, "end")
    assert timing["L3"] is None  # to a bot: nobody dwelt


def test_per_person_dwell_median_and_max(dwelt: AfterAction) -> None:
    """The communications analysis gives the person's dwell figures; a bot gets none."""
    person, bot = dwelt.comms.totals
    assert person.person
    assert person.dwell is not None
    assert not bot.person
    assert bot.dwell is None
    assert (person.dwell.wall.median, person.dwell.wall.max) == (255, 390)
    assert (person.dwell.exercise.median, person.dwell.exercise.max) == (195, 270)


def test_notices_are_listed_and_never_counted_as_letters(dwelt: AfterAction) -> None:
    """The control cell's letter is left out of letters; its notice is counted once."""
    assert [letter.label for letter in dwelt.comms.letters] == ["L1", "L2", "L3"]
    assert dwelt.key_figures.letters == 3
    assert dwelt.key_figures.notices == 1
    assert [(n.kind, n.inject, n.party) for n in dwelt.notices] == [("tasking", "INJ-1", PERSON)]
    assert CONTROL_PARTY not in dwelt.comms.parties


def test_the_rendered_report_shows_both_columns_and_the_person_tag(dwelt: AfterAction) -> None:
    """Markdown and HTML: latency and dwell per letter, the dwell table, tags, the notices."""
    text = render_markdown(dwelt)
    assert "| courier latency (to a person) | dwell in the person's inbox |" in text
    assert "| 30s exercise, 40s wall | 2m exercise, 2m wall (until opened) |" in text
    assert "| 30s exercise, 30s wall | 4m30s exercise, 6m30s wall (until the end) |" in text
    assert "| Envoy (person) | 2 | 4m15s | 6m30s | 3m15s | 4m30s |" in text
    assert "| Envoy (person) | us.state.envoy | person | Ann |" in text
    assert "## Appendix G: What control told the seats" in text
    assert "| Notices to seats (not letters) | 1 |" in text
    page = render_html(dwelt)
    assert 'id="dwell"' in page
    assert 'id="notices-table"' in page
    assert "(us.state.envoy · person)</title>" in page  # the person's swim lane says so
    assert '"dwell_until": "end"' in render_json(dwelt)
