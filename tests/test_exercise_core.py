"""The exercise's pure parts: the three clocks, bots, expectations and the event log's chain."""

from __future__ import annotations

import io
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from rich.console import Console

from channel.exercise.author.clock import Clocks
from channel.exercise.author.scenario import (
    Check,
    Clock,
    Expectation,
    Inject,
    Policy,
    load_scenario,
    parse_duration,
    parse_offset,
)
from channel.exercise.eventlog import EventLog, LogError, Stamp, read_log
from channel.exercise.run.bots import Bot, Letter, sample
from channel.exercise.run.expectations import Expectations, letter_facts, receipt_fact
from channel.exercise.run.live import LiveView
from tests.test_exercise_run import SMALL

CLOCK = Clock.model_validate(
    {
        "start": "2017-11-20T09:00:00Z",
        "speed": 60,
        "end": "T+02:00:00",
        "moves": [
            {"id": 1, "title": "Warning", "at": "T+0"},
            {"id": 2, "title": "Remarks", "at": "T+00:30", "world": "2017-12-02T18:00:00Z"},
            {"id": 3, "title": "Runs on", "at": "T+01:00"},
        ],
    }
)


class Wall:
    """A wall clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def at(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).astimezone(UTC)


def test_offsets_and_durations_parse_both_ways_of_writing() -> None:
    """T+HH:MM[:SS] and T+90m are exercise offsets; 1d12h and 1.5h are world durations."""
    assert parse_offset("T+01:30") == parse_offset("T+90m") == parse_offset("T+01:30:00") == 5400
    assert parse_duration("1d12h") == 129600
    assert parse_duration("1.5h") == 5400
    for bad in ("90", "T-5m", "5 minutes"):
        with pytest.raises(ValueError, match="offset"):
            parse_offset(bad)
    with pytest.raises(ValueError, match="duration"):
        parse_duration("soon")


def test_world_time_runs_at_clock_speed_and_jumps_at_moves() -> None:
    """Move 1 runs from the start at 60x; move 2 jumps; move 3 continues move 2's world clock."""
    clocks = Clocks(CLOCK, None)
    assert clocks.world_at(0) == at("2017-11-20T09:00:00Z")
    assert clocks.world_at(600) == at("2017-11-20T19:00:00Z")  # 10 min plays 10 h
    assert clocks.world_at(1800) == at("2017-12-02T18:00:00Z")  # the jump
    assert clocks.world_at(3600) == at("2017-12-04T00:00:00Z")  # 30 min after the jump: +30 h
    assert clocks.span_at(3599).move.id == 2
    assert clocks.exercise_at(at("2017-12-02T20:00:00Z")) == 1800 + 120
    assert clocks.exercise_at(at("2017-11-25T00:00:00Z")) is None  # between moves: no such time
    stamp = clocks.stamp(1800)
    assert stamp == Stamp(t=1_800_000, world="2017-12-02T18:00:00.000Z", move=2)


def test_exercise_time_pauses_and_changes_speed() -> None:
    """Real-time clocks follow the wall at their speed, stand still when paused."""
    wall = Wall()
    clocks = Clocks(CLOCK, 2.0, wall)
    wall.now += 10
    assert clocks.now() == 20
    assert clocks.pause()
    assert not clocks.pause()  # pausing twice changes nothing
    wall.now += 100
    assert clocks.now() == 20
    assert clocks.wall_until(30) is None  # nothing comes due while paused
    assert clocks.resume()
    wall.now += 5
    assert clocks.now() == 30
    clocks.set_speed(1.0)
    wall.now += 4
    assert clocks.now() == 34
    assert clocks.wall_until(40) == 6


def test_speed_max_moves_only_when_told_and_never_back() -> None:
    """At speed max exercise time jumps to the next event; it cannot go backwards."""
    clocks = Clocks(CLOCK, None)
    assert clocks.wall_until(500) == 0
    clocks.advance_to(500)
    clocks.advance_to(100)
    assert clocks.now() == 500


POLICY = Policy.model_validate(
    {
        "state": {"tension": 0},
        "letters": [
            {
                "from": "us.cia.director",
                "open": 0.5,
                "think": {"uniform": ["1h", "3h"]},
                "reason": "No.",
                "escalate": {"tension": 2},
                "reply": {"body": "To $sender about $subject (tension $tension)", "after": "2h"},
            },
            {"open": 1.0},
        ],
        "thresholds": [
            {
                "variable": "tension",
                "at_least": 3,
                "send": {"to": "ch.fdfa.protecting-power", "subject": "Help", "body": "$party"},
            }
        ],
    }
)
LETTER = Letter("L1", "us.cia.director", "ir.irgc.quds", "Warning", "Body")


def test_a_seeded_bot_makes_the_same_choices_every_time() -> None:
    """Same seed and party: the same think times and decisions; another seed: others."""

    def choices(seed: int) -> list[tuple[float, bool]]:
        bot = Bot("ir.irgc.quds", POLICY, seed)
        made = []
        for _ in range(20):
            arrival, _ = bot.arrive(LETTER)
            made.append((arrival.think, bot.decide(arrival).open))
        return made

    assert choices(1) == choices(1)
    assert choices(1) != choices(2)
    assert all(3600 <= think <= 10800 for think, _ in choices(3))
    opened = sum(opens for _, opens in choices(4))
    assert 3 <= opened <= 17  # p = 0.5 over 20 letters


def test_rules_match_senders_escalate_and_cross_thresholds_once() -> None:
    """The first rule matching the sender applies; tension 4 crosses 3 once, sending one letter."""
    bot = Bot("ir.irgc.quds", POLICY, 1)
    arrival, first = bot.arrive(LETTER)
    assert arrival.rule.reason == "No."
    assert [(c.old, c.new) for c in first.changes] == [(0, 2)]
    assert first.letters == []
    _, second = bot.arrive(LETTER)
    assert [(c.old, c.new) for c in second.changes] == [(2, 4)]
    assert [(o.to, o.body) for o in second.letters] == [
        ("ch.fdfa.protecting-power", "ir.irgc.quds")
    ]
    _, third = bot.arrive(LETTER)
    assert third.letters == []  # a threshold fires once
    other, _ = bot.arrive(Letter("L2", "ch.fdfa.protecting-power", "ir.irgc.quds"))
    assert other.rule.open == 1.0


def test_replies_fill_their_templates_and_answer_the_letter() -> None:
    """A reply goes to the sender, in reply to the letter, with $names filled in."""
    bot = Bot("ir.irgc.quds", POLICY, 1)
    arrival, _ = bot.arrive(LETTER)
    (reply,) = bot.opened(arrival, LETTER).letters
    assert reply.to == "us.cia.director"
    assert reply.in_reply_to == "L1"
    assert reply.subject == "Re: Warning"
    assert reply.body == "To us.cia.director about Warning (tension 2)"
    assert reply.delay == 7200


def test_distributions_sample_within_their_shapes() -> None:
    """Fixed is fixed; uniform stays in range; exponential and lognormal are positive."""
    import random

    from channel.exercise.author.scenario import Latency

    latency = Latency.model_validate(
        {
            "letter": "90m",
            "communique": {"exponential": "1h"},
            "news": {"lognormal": {"median": "2h"}},
        }
    )
    rng = random.Random(1)
    assert sample(latency.letter, rng) == 5400
    draws = [sample(latency.communique, rng) for _ in range(500)]
    assert min(draws) > 0
    assert 2400 < sum(draws) / len(draws) < 4800  # mean about an hour
    medians = sorted(sample(latency.news, rng) for _ in range(501))
    assert 5000 < medians[250] < 9400  # median about two hours


def expectation(check: Check, within: str = "1h") -> tuple[Inject, Expectation]:
    exp = Expectation.model_validate(
        {"id": "E1", "check": check, "from": "a.one", "to": "b.two", "within": within}
    )
    inject = Inject.model_validate(
        {"id": "I1", "at": "T+0", "from": "a.one", "to": "b.two", "subject": "s", "expect": [exp]}
    )
    return inject, exp


def test_expectations_are_met_by_matching_facts_inside_their_window() -> None:
    """A reply from b to a meets `replied`; a letter the other way or too late does not."""
    inject, exp = expectation(Check.REPLIED)
    book = Expectations()
    book.open(inject, exp, now=10, deadline=70)
    assert book.meet(letter_facts("L2", "a.one", "b.two", None)[0], now=20) == []
    (reply_fact,) = [
        f for f in letter_facts("L3", "b.two", "a.one", "a.one") if f.check is Check.REPLIED
    ]
    assert book.meet(reply_fact, now=80) == []  # too late
    (met,) = book.meet(reply_fact, now=60)
    assert met.letter == "L3"
    assert book.expire("E1") is None  # already met


def test_an_expectation_left_open_is_missed_at_its_deadline() -> None:
    """`expire` marks an unmet window missed once; receipts other than open/return meet nothing."""
    inject, exp = expectation(Check.OPENED)
    book = Expectations()
    book.open(inject, exp, now=0, deadline=60)
    assert receipt_fact("L1", "delivered", "a.one", "b.two") is None
    missed = book.expire("E1")
    assert missed is not None
    assert missed.outcome.value == "missed"
    assert book.expire("E1") is None


def test_the_event_log_chain_catches_an_edit_a_drop_and_a_swap(tmp_path: Path) -> None:
    """Changing, removing or reordering any line breaks the chain at that line."""
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        for n in range(4):
            log.write("note", Stamp(n * 1000, "2017-11-20T09:00:00.000Z", 1), {"n": n})
    records = read_log(path)
    assert [r["data"]["n"] for r in records] == [0, 1, 2, 3]
    assert records[-1]["hash"] == log.head
    lines = path.read_text().splitlines()

    edited = json.loads(lines[2])
    edited["data"]["n"] = 9
    for name, broken in {
        "edit": [*lines[:2], json.dumps(edited), *lines[3:]],
        "drop": [*lines[:1], *lines[2:]],
        "swap": [lines[0], lines[2], lines[1], lines[3]],
    }.items():
        target = tmp_path / f"{name}.jsonl"
        target.write_text("\n".join(broken) + "\n")
        with pytest.raises(LogError, match=r":[23]: "):
            read_log(target)


def test_an_event_log_is_never_appended_to(tmp_path: Path) -> None:
    """Opening a log that exists fails: a run cannot extend another run's chain."""
    path = tmp_path / "events.jsonl"
    with EventLog(path) as log:
        log.write("note", Stamp(0, "2017-11-20T09:00:00.000Z", 1), {})
    with pytest.raises(FileExistsError), EventLog(path):
        pass


def test_the_log_refuses_floats(tmp_path: Path) -> None:
    """Canonical JSON has no floats: a float in a record is a bug caught at write time."""
    with EventLog(tmp_path / "events.jsonl") as log, pytest.raises(ValueError, match="floats"):
        log.write("note", Stamp(0, "2017-11-20T09:00:00.000Z", 1), {"p": 0.5})


def test_reply_subjects_do_not_stack() -> None:
    """Answering `Re: Warning` gives `Re: Warning`, not `Re: Re: Warning`."""
    bot = Bot("ir.irgc.quds", POLICY, 1)
    arrival, _ = bot.arrive(LETTER)
    answer = Letter("L2", "us.cia.director", "ir.irgc.quds", "Re: Warning", "Body")
    (reply,) = bot.opened(arrival, answer).letters
    assert reply.subject == "Re: Warning"


def test_the_live_view_counts_msel_progress_and_expectations(tmp_path: Path) -> None:
    """The MSEL bar counts injects fired or tasked, contingencies included, out of what is left
    to fire (a skipped inject leaves it); met and missed expectations are counted; a pause shows
    on the header."""
    path = tmp_path / "small.yaml"
    path.write_text(SMALL, encoding="utf-8")
    view = LiveView(load_scenario(path).scenario, Console(file=io.StringIO()), live=False)

    def record(kind: str, **data: object) -> dict[str, object]:
        return {"kind": kind, "t": 0, "world": "2017-11-20T09:00:00.000Z", "move": 1, "data": data}

    view.show(record("inject_tasked", inject="INJ-01", channel="letter", to=[], subject="s"))
    view.show(record("inject_fired", inject="INJ-C", channel="news", to=[], subject="s"))
    view.show(record("inject_skipped", inject="INJ-02"))
    view.show(record("expectation_met", expectation="E", check="sent", **{"from": "a", "to": "b"}))
    view.show(record("control", command="pause"))
    (task,) = view.progress.tasks
    # INJ-01 and the contingency INJ-C fired; three scheduled, less INJ-02 skipped, plus INJ-C.
    assert (task.completed, task.total) == (2, 3)
    assert task.description == "2 injects fired (1 contingency): 1 of 3 scheduled, 1 skipped"
    assert (view.met, view.missed, view.paused) == (1, 0, True)
    assert "[PAUSED]" in view._header().plain
