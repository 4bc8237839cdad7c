"""The report's figures against known answers: every control action with its time, an
intermediary's forwards counted as relayed, and one count of injects fired on the live view, in
the log's `run_ended` and in the report."""

from __future__ import annotations

import io
import re
from pathlib import Path
from typing import Any

import pytest
from rich.console import Console

from channel.exercise.author.scenario import Scenario
from channel.exercise.eventlog import EventLog, read_log
from channel.exercise.report.analysis import AfterAction, analyse
from channel.exercise.report.render import render_markdown
from channel.exercise.run.live import LiveView
from channel.exercise.tally import describe_ended
from channel.protocol.lifecycle import State
from tests.test_exercise_report import A, B, C, Tabletop, as_is, inject, run_started_data

# Four scheduled injects and a contingency. Control holds and releases INJ-04, skips INJ-03,
# fires INJ-02 by hand; the contingency INJ-05 fires: 4 fired, 1 of them a contingency, 3 of the
# 4 scheduled, 1 skipped.
PLAN = [
    inject("INJ-01", 1, A, [C], 10_000),
    inject("INJ-02", 1, None, [], 400_000),
    inject("INJ-03", 2, None, [], 650_000),
    inject("INJ-04", 2, None, [], 700_000),
    inject("INJ-05", 2, None, [], None),
]
ENDED = {
    "reason": "end",
    "injects_fired": 4,
    "contingencies_fired": 1,
    "injects_skipped": 1,
    "injects_total": 4,
    "letters": 4,
}


def news(table: Tabletop, inject_id: str, t: int, cause: str) -> None:
    data = {"inject": inject_id, "channel": "news", "to": [], "subject": f"Inject {inject_id}"}
    table.write("inject_fired", t, data | {"cause": cause, "text": "Wire item"})


def play(path: Path) -> None:
    """A person writes to the Swiss, who relay to the Quds Force and relay its answer back."""
    with EventLog(path) as log:
        table = Tabletop(log)
        data = run_started_data() | {"injects": PLAN, "speed": "60"}
        table.write("run_started", 0, data, table_evidence(table))
        tasking = {"inject": "INJ-01", "party": A, "to": [C], "subject": "Write", "from": A}
        table.write("inject_tasked", 10_000, tasking)
        table.send("L1", A, C, 20_000)
        table.receipt("L1", State.DELIVERED, 20_000)
        table.receipt("L1", State.OPENED, 40_000)
        table.send("L2", C, B, 60_000, subject="Via the protecting power", forwards="L1")
        table.receipt("L2", State.DELIVERED, 60_000)
        table.receipt("L2", State.OPENED, 90_000)
        table.send("L3", B, C, 120_000, subject="Re: Via", in_reply_to="L2")
        table.receipt("L3", State.DELIVERED, 120_000)
        table.receipt("L3", State.OPENED, 150_000)
        table.send("L4", C, A, 180_000, subject="Via the protecting power", forwards="L3")
        table.receipt("L4", State.DELIVERED, 180_000)
        table.receipt("L4", State.OPENED, 200_000)
        table.write("control", 240_000, {"command": "speed", "argument": "120"})
        table.write("control", 300_000, {"command": "pause"})
        table.write("control", 300_000, {"command": "resume"})
        table.write("control", 330_000, {"command": "fire", "argument": "INJ-02"})
        news(table, "INJ-02", 330_000, "control")
        table.write("control", 360_000, {"command": "speed", "argument": "30"})
        table.write("inject_held", 620_000, {"inject": "INJ-04", "by": "control"})
        table.write("inject_skipped", 640_000, {"inject": "INJ-03", "by": "control"})
        table.write("inject_released", 720_000, {"inject": "INJ-04", "by": "control"})
        news(table, "INJ-04", 720_000, "control")
        news(table, "INJ-05", 800_000, "contingency:E9")
        table.finish(900_000, as_is, ENDED)


def table_evidence(table: Tabletop) -> dict[str, Any]:
    """run_started's evidence, as Tabletop.start writes it."""
    from channel.protocol.models import b64
    from channel.protocol.seal import raw_public

    keys = {
        name: {
            "signing_key": b64(party.public().signing_key),
            "encryption_key": b64(party.public().encryption_key),
        }
        for name, party in table.parties.items()
    }
    return {
        "courier_url": "http://127.0.0.1:8421",
        "courier_key": b64(raw_public(table.courier)),
        "party_keys": keys,
    }


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    path = tmp_path_factory.mktemp("figures") / "events.jsonl"
    play(path)
    return read_log(path)


@pytest.fixture(scope="module")
def aar(records: list[dict[str, Any]]) -> AfterAction:
    return analyse(records)


def test_every_control_action_is_an_artificiality_with_its_time(aar: AfterAction) -> None:
    """Fire, pause, resume, each speed change, hold, release and skip, each at its offset."""
    found = aar.overview.artificialities
    assert (
        "run at speed 60: exercise time ran 60× wall time; the control cell changed the speed "
        "2× (to 120 at T+00:04:00, to 30 at T+00:06:00)"
    ) in found
    actions = [line for line in found if line.startswith("T+")]
    assert actions[:3] == [
        "T+00:04:00: the control cell set the speed to 120",
        "T+00:05:00: the control cell paused the exercise",
        actions[2],
    ]
    assert re.fullmatch(
        r"T\+00:05:00: the control cell resumed the exercise after \d+s of wall time", actions[2]
    )
    assert actions[3:] == [
        "T+00:05:30: the control cell fired INJ-02 by hand",
        "T+00:06:00: the control cell set the speed to 30",
        "T+00:10:20: the control cell held INJ-04",
        "T+00:10:40: the control cell skipped INJ-03",
        "T+00:12:00: the control cell released INJ-04",
    ]
    assert [a.command for a in aar.control_actions] == [
        "speed",
        "pause",
        "resume",
        "fire",
        "speed",
        "hold",
        "skip",
        "release",
    ]


def test_forwarded_letters_count_as_relayed_not_unanswered(aar: AfterAction) -> None:
    """The Swiss passed on both letters they opened: relayed, and nothing left unanswered."""
    a, b, c = aar.comms.totals
    assert (c.party, c.relayed, c.unanswered) == (C, ["L1", "L3"], [])
    assert (b.relayed, b.unanswered) == ([], [])  # B answered L2 with L3
    assert (a.relayed, a.unanswered) == ([], ["L4"])
    assert [letter.forwards for letter in aar.comms.letters] == [None, "L1", None, "L3"]
    markdown = render_markdown(aar)
    assert "| Swiss Embassy | 2 | 2 | 2 | 0 | 25m | 30m | — | — | L1, L3 | — | — |" in markdown


EXPECTED_COUNT = "4 injects fired (1 contingency): 3 of 4 scheduled, 1 skipped"


def test_one_count_of_injects_fired_everywhere(
    aar: AfterAction, records: list[dict[str, Any]]
) -> None:
    """The live view, the log's run_ended and the report say the same count, contingencies in."""
    assert aar.inject_count.text == EXPECTED_COUNT
    assert (aar.inject_count.fired, aar.inject_count.contingencies) == (4, 1)
    assert describe_ended(records[-1]["data"]) == EXPECTED_COUNT
    assert aar.timeline[-1].text == f"Exercise ended (end): {EXPECTED_COUNT}, 4 letters"
    out = io.StringIO()
    view = LiveView(scenario(), Console(file=out, width=200), live=False)
    with view:
        for record in records:
            view.show(record)
    assert view.tally.text() == EXPECTED_COUNT
    assert f"exercise ended (end): {EXPECTED_COUNT}, 4 letters" in out.getvalue()
    task = view.progress.tasks[0]
    assert (task.completed, task.total) == (4, 4)  # the skipped inject leaves the MSEL


def scenario() -> Scenario:
    """The scenario the hand-built log stands for: four scheduled injects and a contingency."""
    injects: list[dict[str, Any]] = [
        {"id": "INJ-01", "at": "T+10s", "from": A, "to": [C], "subject": "Write"},
        *(
            {"id": i, "at": f"T+{n}m", "channel": "news", "subject": "News"}
            for i, n in (("INJ-02", 7), ("INJ-03", 11), ("INJ-04", 12))
        ),
        {"id": "INJ-05", "contingency": True, "channel": "news", "subject": "Nudge"},
    ]
    return Scenario.model_validate(
        {
            "title": "Figures",
            "parties": [
                {"name": A, "play": "human"},
                {"name": B, "play": "control"},
                {"name": C, "play": "control"},
            ],
            "clock": {"start": "2017-11-20T09:00:00Z", "end": "T+20m"},
            "injects": injects,
        }
    )


async def test_a_played_intermediary_relays_and_the_counts_agree(tmp_path: Path) -> None:
    """Played through the courier: the Swiss bot's forwards are logged and count as relayed,
    and run_ended and the report give the same count, contingencies included."""
    from tests.test_exercise_run import rehearse, scenario

    played = await rehearse(scenario(tmp_path), tmp_path / "run")
    records = read_log(played.log)
    report = analyse(records)
    relays = {t.label: t.forwards for t in report.comms.letters if t.forwards}
    assert relays  # the Swiss passed the director's letter on to Tehran
    swiss = next(p for p in report.comms.totals if p.party == "ch.fdfa.protecting-power")
    assert swiss.relayed == sorted(relays.values(), key=lambda label: int(label[1:]))
    assert not set(swiss.unanswered) & set(relays.values())
    ended = records[-1]["data"]
    assert describe_ended(ended) == report.inject_count.text
    assert ended["contingencies_fired"] == report.inject_count.contingencies
    assert report.inject_count.fired == len({m.id for m in report.injects})
