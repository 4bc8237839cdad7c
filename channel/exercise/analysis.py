"""The after-action report's content, computed from an event log's records alone (no I/O).

`analyse(records)` takes the records `read_log` returns (already chain-checked) and gives an
`AfterAction`: the overview, a timeline, each objective with its expectations and a suggested
HSEEP rating, the communications analysis (who wrote to whom, how fast letters were opened and
answered) and the integrity of every letter's final status, checked with the keys `run_started`
announced, never with keys a status carries. `channel.exercise.report` renders it.

Times: `t` is exercise milliseconds; durations between letters are world (story) seconds.
"""

from __future__ import annotations

import base64
import binascii
import statistics
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError

from channel.canonical import to_millis
from channel.errors import IntegrityError
from channel.exercise.eventlog import LogError
from channel.exercise.scenario import format_duration
from channel.lifecycle import State
from channel.models import LetterStatus, Receipt
from channel.seal import verify_chain, verify_seal

Outcome = Literal["met", "missed", "pending", "not fired"]
Rating = Literal["P", "S", "M", "U", "not assessed"]
Record = Mapping[str, Any]
Who = Callable[[str], str]

RATING_RULE = (
    "Suggested rating = the score-weighted share of an objective's expectations that were met "
    "(by count when every score is 0): all met → P (performed without challenges), at least 2/3 "
    "→ S (some challenges), at least 1/3 → M (major challenges), less → U (unable to be "
    "performed). Pending expectations count as not met; expectations of injects that never fired "
    "are left out; an objective with no expectations is not assessed. The evaluator decides."
)
OPEN_RULE = "Time to open: from the letter's sending to its opened receipt, world time."
REPLY_RULE = (
    "Time to reply: from the original's opened receipt (its sending, if it was never opened) to "
    "the reply's sending, world time; a reply is a letter back to the original's sender in reply "
    "to it, and only the first reply counts."
)
MOVE_RULE = "Per move, a letter and everything that happens to it count in the move it was sent in."
UNANSWERED_RULE = (
    "Unanswered: opened by the recipient, who never replied. Undecided: neither opened nor "
    "returned by the recipient nor withdrawn by the sender by the end (expired letters included)."
)
STRENGTHS_HINT = "Evaluator: what went well, with the evidence that shows it."
AREAS_HINT = "Evaluator: what to improve, with its root cause."
DECIDED = frozenset({State.OPENED, State.RETURNED_UNOPENED, State.WITHDRAWN})


class Part(BaseModel):
    """Every report part is a frozen record that refuses unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --- the overview --------------------------------------------------------------------------------


class Seat(Part):
    name: str
    label: str
    play: str
    player: str


class ObjectiveText(Part):
    id: str
    text: str


class MoveInfo(Part):
    id: int
    title: str
    t: int
    world: str


class Overview(Part):
    title: str
    revision: str
    digest: str
    file: str
    marking: str
    summary: str
    transcript: str
    seed: str
    speed: str
    rehearse: bool
    wall_start: str
    wall_end: str
    world_start: str
    world_end: str
    duration_ms: int
    end_ms: int
    end_reason: str | None
    parties: list[Seat]
    objectives: list[ObjectiveText]
    moves: list[MoveInfo]
    artificialities: list[str]


class TimelineEntry(Part):
    t: int
    world: str
    move: int
    kind: str
    text: str


class InjectMark(Part):
    id: str
    kind: str
    t: int
    world: str
    move: int
    channel: str
    subject: str


# --- objectives ----------------------------------------------------------------------------------


class Evidence(Part):
    letter: str
    letter_id: str | None
    event: str | None
    seq: int | None


class ExpectationResult(Part):
    id: str
    inject: str
    check: str
    sender: str
    recipient: str
    text: str
    score: int
    objectives: list[str]
    outcome: Outcome
    t: int | None
    evidence: list[Evidence]


class ObjectiveResult(Part):
    id: str
    text: str
    expectations: list[ExpectationResult]
    met_weight: int
    total_weight: int
    fraction: float | None
    rating: Rating
    strengths: list[str] = []
    areas_for_improvement: list[str] = []
    strengths_hint: str = STRENGTHS_HINT
    areas_hint: str = AREAS_HINT


class PlanRow(Part):
    """One improvement-plan row; the objective is filled in, the rest is the evaluator's."""

    objective: str
    rating: Rating
    area_for_improvement: str = ""
    corrective_action: str = ""
    capability_element: str = ""
    owner: str = ""
    start: str = ""
    completion: str = ""


# --- communications ------------------------------------------------------------------------------


class Mark(Part):
    """One receipt in a letter's life, as the log recorded it."""

    event: str
    t: int
    world: str
    seq: int | None
    by: str | None
    reason: str | None


class LetterTrack(Part):
    label: str
    letter_id: str | None
    sender: str
    recipient: str
    t: int
    world: str
    move: int
    by: str | None
    subject: str | None
    in_reply_to: str | None
    precedence: str | None
    marks: list[Mark]
    final_state: str | None

    def mark(self, event: str) -> Mark | None:
        return next((mark for mark in self.marks if mark.event == event), None)

    @property
    def delivered_t(self) -> int | None:
        delivered = self.mark(State.DELIVERED)
        return delivered.t if delivered else None

    @property
    def decided(self) -> bool:
        return any(mark.event in DECIDED for mark in self.marks)


class FirstContact(Part):
    sender: str
    recipient: str
    letter: str
    t: int
    world: str


class Durations(Part):
    """World seconds, in the order the letters were sent."""

    seconds: list[float]
    median: float | None
    max: float | None


class PartyComms(Part):
    party: str
    sent: int
    received: int
    opened: int
    returned_unopened: int
    time_to_open: Durations
    time_to_reply: Durations
    unanswered: list[str]
    undecided: list[str]


class MoveComms(Part):
    move: int
    title: str
    matrix: dict[str, dict[str, int]]
    parties: list[PartyComms]


class Comms(Part):
    parties: list[str]
    matrix: dict[str, dict[str, int]]
    first_contact: list[FirstContact]
    totals: list[PartyComms]
    per_move: list[MoveComms]
    letters: list[LetterTrack]
    rules: list[str]


# --- integrity -----------------------------------------------------------------------------------


class LetterCheck(Part):
    letter: str
    letter_id: str | None
    sender: str | None
    recipient: str | None
    ok: bool
    reason: str


class Integrity(Part):
    scenario_digest: str
    chain_head: str
    records: int
    courier_key: str | None
    courier_url: str | None
    letters: list[LetterCheck]
    verified: int
    failed: int
    missing_final: list[str]

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.missing_final


class AfterAction(Part):
    overview: Overview
    timeline: list[TimelineEntry]
    injects: list[InjectMark]
    objectives: list[ObjectiveResult]
    rating_rule: str
    improvement_plan: list[PlanRow]
    comms: Comms
    integrity: Integrity

    def who(self, name: str) -> str:
        """A party as the report names it: its label, or its name when it has none."""
        return next((p.label for p in self.overview.parties if p.name == name and p.label), name)


# --- the analysis --------------------------------------------------------------------------------


def analyse(records: Sequence[Record]) -> AfterAction:
    """The whole report from a log's records (as `read_log` returns them, chain already checked)."""
    if not records or records[0].get("kind") != "run_started":
        raise LogError("the event log does not start with run_started")
    start = records[0]
    who = _namer(start["data"].get("parties", []))
    letters = letter_tracks(records)
    objectives = objective_results(records, letters)
    return AfterAction(
        overview=overview(records, letters),
        timeline=timeline(records, who),
        injects=inject_marks(records),
        objectives=objectives,
        rating_rule=RATING_RULE,
        improvement_plan=improvement_plan(objectives),
        comms=comms(start, letters),
        integrity=integrity(records, letters),
    )


def _namer(parties: Iterable[Mapping[str, Any]]) -> Who:
    """Names as the report shows them: the party's label when the scenario gives one."""
    labels = {str(p["name"]): str(p.get("label") or p["name"]) for p in parties}
    return lambda name: labels.get(name, name)


def _seconds(earlier: str, later: str) -> float:
    return (to_millis(later) - to_millis(earlier)) / 1000


# --- overview ------------------------------------------------------------------------------------


def overview(records: Sequence[Record], letters: list[LetterTrack]) -> Overview:
    data = records[0]["data"]
    scenario = data.get("scenario", {})
    last = records[-1]
    ended = last["data"] if last["kind"] == "run_ended" else {}
    moves = [
        MoveInfo(
            id=int(m["id"]), title=str(m.get("title", "")), t=int(m["t"]), world=str(m["world"])
        )
        for m in data.get("moves", [])
    ]
    return Overview(
        title=str(scenario.get("title", "")),
        revision=str(scenario.get("revision", "")),
        digest=str(scenario.get("digest", "")),
        file=str(scenario.get("file", "")),
        marking=str(scenario.get("marking", "")),
        summary=str(scenario.get("summary", "")),
        transcript=str(scenario.get("transcript", "")),
        seed=str(data.get("seed", "")),
        speed=str(data.get("speed", "")),
        rehearse=bool(data.get("rehearse", False)),
        wall_start=str(records[0]["wall"]),
        wall_end=str(last["wall"]),
        world_start=str(records[0]["world"]),
        world_end=str(last["world"]),
        duration_ms=int(last["t"]),
        end_ms=int(data.get("end", last["t"])),
        end_reason=ended.get("reason"),
        parties=[_seat(party) for party in data.get("parties", [])],
        objectives=[
            ObjectiveText(id=str(o["id"]), text=str(o.get("text", "")))
            for o in data.get("objectives", [])
        ],
        moves=moves,
        artificialities=artificialities(records, moves, letters),
    )


def _seat(party: Mapping[str, Any]) -> Seat:
    return Seat(
        name=str(party["name"]),
        label=str(party.get("label", "")),
        play=str(party.get("play", "")),
        player=str(party.get("player", "")),
    )


def artificialities(
    records: Sequence[Record], moves: list[MoveInfo], letters: list[LetterTrack]
) -> list[str]:
    """Where the exercise differs from the world it plays, in plain sentences."""
    data = records[0]["data"]
    rate = world_rate(records[0])
    found = [
        *_seat_sentences(data.get("parties", []), bool(data.get("rehearse", False))),
        _speed_sentence(str(data.get("speed", "1"))),
        f"world clock runs {_times(rate)} exercise time" if rate and rate != 1 else None,
        _latency_sentence(letters),
        _jump_sentence(moves, rate),
        _control_sentence(records),
    ]
    return [sentence for sentence in found if sentence]


def _seat_sentences(parties: list[Mapping[str, Any]], rehearse: bool) -> list[str]:
    plays = [str(party.get("play", "")) for party in parties]
    policies = sorted({play.removeprefix("bot:") for play in plays if play.startswith("bot:")})
    bots = sum(play.startswith("bot:") for play in plays)
    control = plays.count("control")
    sentences = []
    if bots:
        listed = ", ".join(policies)
        sentences.append(f"{bots} of {len(plays)} seats played by bots (policies: {listed})")
    if control:
        sentences.append(f"{control} of {len(plays)} seats played by the control cell")
    if rehearse:
        sentences.append("rehearsal: stand-in bots played the human seats")
    return sentences


def _speed_sentence(speed: str) -> str | None:
    if speed == "max":
        return "run at speed max: exercise time compressed (waits skipped)"
    if speed in {"1", "1.0", ""}:
        return None
    return f"run at speed {speed}: exercise time ran {speed}× wall time"


def _times(rate: float) -> str:
    return f"{rate:.3g}×"


def world_rate(start: Record) -> float | None:
    """World seconds per exercise second (run_started's `world_speed`), if the log says."""
    try:
        return float(start["data"]["world_speed"])
    except (KeyError, TypeError, ValueError):
        return None


def _latency_sentence(letters: list[LetterTrack]) -> str | None:
    lags = [
        _seconds(letter.world, delivered.world)
        for letter in letters
        if (delivered := letter.mark(State.DELIVERED))
    ]
    if not any(lags):
        return None
    longest = format_duration(max(lags))
    return f"courier latency simulated: letters took up to {longest} (world time) to be delivered"


def _jump_sentence(moves: list[MoveInfo], rate: float | None) -> str | None:
    if rate is None:
        return None
    jumps = [
        f"move {after.id} starts at {after.world}"
        for before, after in pairwise(moves)
        if abs(_seconds(before.world, after.world) - rate * (after.t - before.t) / 1000) >= 1
    ]
    return f"moves jump world time ({'; '.join(jumps)})" if jumps else None


def _control_sentence(records: Sequence[Record]) -> str | None:
    commands = Counter(str(r["data"].get("command")) for r in records if r["kind"] == "control")
    if not commands:
        return None
    listed = ", ".join(f"{command} ×{count}" for command, count in sorted(commands.items()))
    return f"the control cell intervened: {listed}"


# --- timeline ------------------------------------------------------------------------------------


def _listed(who: Who, names: Iterable[str]) -> str:
    return ", ".join(who(name) for name in names) or "everyone"


def _run_started(data: Record, who: Who) -> str:
    scenario = data.get("scenario", {})
    return (
        f"Exercise started: {scenario.get('title', '')} (revision {scenario.get('revision', '')}),"
        f" seed {data.get('seed', '')}, speed {data.get('speed', '')}"
    )


def _move_started(data: Record, who: Who) -> str:
    return f"Move {data.get('id')} begins: {data.get('title', '')}"


def _inject_fired(data: Record, who: Who) -> str:
    sender = who(str(data["from"])) if data.get("from") else "the wires"
    text = (
        f"Inject {data.get('inject')} ({data.get('channel')}) from {sender} to "
        f"{_listed(who, data.get('to', []))}: {data.get('subject', '')}"
    )
    if data.get("cause", "scheduled") != "scheduled":
        text += f" [{data['cause']}]"
    if data.get("letters"):
        text += f" → {', '.join(data['letters'])}"
    return text


def _inject_tasked(data: Record, who: Who) -> str:
    action = data.get("action") or data.get("subject", "")
    return f"Inject {data.get('inject')} tasked to {who(str(data.get('party')))}: {action}"


def _inject_by(verb: str) -> Callable[[Record, Who], str]:
    return lambda data, who: f"Inject {data.get('inject')} {verb} by {data.get('by', 'control')}"


def _letter_sent(data: Record, who: Who) -> str:
    text = (
        f"{data.get('letter')} {who(str(data.get('from')))} → {who(str(data.get('to')))}"
        f" ({data.get('precedence', 'routine')}, by {data.get('by', '?')})"
    )
    if data.get("subject"):
        text += f": {data['subject']}"
    if data.get("in_reply_to"):
        text += f", in reply to {data['in_reply_to']}"
    return text


def _receipt(data: Record, who: Who) -> str:
    event = str(data.get("event", "")).replace("_", " ")
    text = f"{data.get('letter')} {event} by {who(str(data.get('by', 'courier')))}"
    text += f" (receipt {data['seq']})" if "seq" in data else ""
    return text + (f': "{data["reason"]}"' if data.get("reason") else "")


def _expectation(outcome: str) -> Callable[[Record, Who], str]:
    def describe(data: Record, who: Who) -> str:
        text = (
            f"Expectation {data.get('expectation')} {outcome}: {data.get('check')} "
            f"{who(str(data.get('from')))} → {who(str(data.get('to')))}"
        )
        return text + (f" by {data['letter']}" if data.get("letter") else "")

    return describe


def _control(data: Record, who: Who) -> str:
    argument = f" {data['argument']}" if data.get("argument") else ""
    return f"Control: {data.get('command')}{argument}"


def _action_failed(data: Record, who: Who) -> str:
    return (
        f"Failed: {who(str(data.get('party')))} could not {data.get('action')}: {data.get('error')}"
    )


def _run_ended(data: Record, who: Who) -> str:
    return (
        f"Exercise ended ({data.get('reason')}): {data.get('injects_fired')} of "
        f"{data.get('injects_total')} injects fired, {data.get('letters')} letters"
    )


_DESCRIBE: dict[str, Callable[[Record, Who], str]] = {
    "run_started": _run_started,
    "move_started": _move_started,
    "inject_fired": _inject_fired,
    "inject_tasked": _inject_tasked,
    "inject_skipped": _inject_by("skipped"),
    "inject_held": _inject_by("held"),
    "inject_released": _inject_by("released"),
    "letter_sent": _letter_sent,
    "receipt": _receipt,
    "expectation_met": _expectation("met"),
    "expectation_missed": _expectation("missed"),
    "control": _control,
    "action_failed": _action_failed,
    "run_ended": _run_ended,
}


def timeline(records: Sequence[Record], who: Who) -> list[TimelineEntry]:
    """One line per record a reader follows the exercise by (not decisions or bot state)."""
    return [
        TimelineEntry(
            t=int(record["t"]),
            world=str(record["world"]),
            move=int(record["move"]),
            kind=str(record["kind"]),
            text=_DESCRIBE[record["kind"]](record["data"], who),
        )
        for record in records
        if record["kind"] in _DESCRIBE
    ]


def inject_marks(records: Sequence[Record]) -> list[InjectMark]:
    return [
        InjectMark(
            id=str(record["data"].get("inject")),
            kind=str(record["kind"]),
            t=int(record["t"]),
            world=str(record["world"]),
            move=int(record["move"]),
            channel=str(record["data"].get("channel", "letter")),
            subject=str(record["data"].get("subject", "")),
        )
        for record in records
        if record["kind"] in {"inject_fired", "inject_tasked"}
    ]


# --- letters -------------------------------------------------------------------------------------


def letter_tracks(records: Sequence[Record]) -> list[LetterTrack]:
    """Every letter the log sent, with its receipts and final state, in sending order."""
    marks: dict[str, list[Mark]] = defaultdict(list)
    finals: dict[str, str] = {}
    for record in records:
        data = record["data"]
        if record["kind"] == "receipt":
            marks[str(data.get("letter"))].append(_mark(record))
        elif record["kind"] == "letter_final":
            finals[str(data.get("letter"))] = str(data.get("state"))
    return [
        _track(record, marks[str(record["data"]["letter"])], finals)
        for record in records
        if record["kind"] == "letter_sent"
    ]


def _mark(record: Record) -> Mark:
    data = record["data"]
    return Mark(
        event=str(data.get("event")),
        t=int(record["t"]),
        world=str(record["world"]),
        seq=data.get("seq"),
        by=data.get("by"),
        reason=data.get("reason"),
    )


def _track(record: Record, marks: list[Mark], finals: Mapping[str, str]) -> LetterTrack:
    data = record["data"]
    label = str(data["letter"])
    return LetterTrack(
        label=label,
        letter_id=record["evidence"].get("letter_id"),
        sender=str(data.get("from")),
        recipient=str(data.get("to")),
        t=int(record["t"]),
        world=str(record["world"]),
        move=int(record["move"]),
        by=data.get("by"),
        subject=data.get("subject"),
        in_reply_to=data.get("in_reply_to"),
        precedence=data.get("precedence"),
        marks=marks,
        final_state=finals.get(label),
    )


# --- objectives ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Expected:
    """An expectation from run_started, with the objectives it inherits from its inject."""

    spec: Mapping[str, Any]
    inject: str
    objectives: tuple[str, ...]


def _expected(start: Record) -> list[_Expected]:
    found = []
    for inject in start["data"].get("injects", []):
        for spec in inject.get("expect", []):
            tags = [*spec.get("objectives", []), *inject.get("objectives", [])]
            found.append(_Expected(spec, str(inject["id"]), tuple(dict.fromkeys(tags))))
    return found


def objective_results(
    records: Sequence[Record], letters: list[LetterTrack]
) -> list[ObjectiveResult]:
    """Each objective with its expectations' outcomes and a suggested rating."""
    expectations = expectation_results(records, letters)
    return [
        _objective(
            str(objective["id"]),
            str(objective.get("text", "")),
            [e for e in expectations if objective["id"] in e.objectives],
        )
        for objective in records[0]["data"].get("objectives", [])
    ]


def expectation_results(
    records: Sequence[Record], letters: list[LetterTrack]
) -> list[ExpectationResult]:
    outcomes = {
        str(r["data"].get("expectation")): r
        for r in records
        if r["kind"] in {"expectation_met", "expectation_missed"}
    }
    fired = {str(r["data"].get("inject")) for r in records if r["kind"] in _FIRED}
    tracks = {track.label: track for track in letters}
    return [
        _expectation_result(expected, outcomes.get(str(expected.spec["id"])), fired, tracks)
        for expected in _expected(records[0])
    ]


_FIRED = frozenset({"inject_fired", "inject_tasked"})


def _expectation_result(
    expected: _Expected,
    outcome: Record | None,
    fired: set[str],
    tracks: Mapping[str, LetterTrack],
) -> ExpectationResult:
    spec = expected.spec
    return ExpectationResult(
        id=str(spec["id"]),
        inject=expected.inject,
        check=str(spec.get("check", "")),
        sender=str(spec.get("from", "")),
        recipient=str(spec.get("to", "")),
        text=str(spec.get("text", "")),
        score=int(spec.get("score", 1)),
        objectives=list(expected.objectives),
        outcome=_outcome(outcome, expected.inject in fired),
        t=int(outcome["t"]) if outcome else None,
        evidence=_evidence(outcome, tracks) if outcome else [],
    )


def _outcome(outcome: Record | None, fired: bool) -> Outcome:
    if outcome is not None:
        return "met" if outcome["kind"] == "expectation_met" else "missed"
    return "pending" if fired else "not fired"


# The receipt that proves each check: a letter sent (or a reply) is proved by its accepted receipt.
_PROOF = {"sent": "accepted", "replied": "accepted"}


def _evidence(outcome: Record, tracks: Mapping[str, LetterTrack]) -> list[Evidence]:
    label = outcome["data"].get("letter")
    if outcome["kind"] != "expectation_met" or label is None:
        return []
    track = tracks.get(str(label))
    check = str(outcome["data"].get("check"))
    event = _PROOF.get(check, check)
    mark = track.mark(event) if track else None
    # The accepted receipt rides on letter_sent, not a receipt record; it is always number 0.
    seq = 0 if event == "accepted" else (mark.seq if mark else None)
    letter_id = outcome["evidence"].get("letter_id") or (track.letter_id if track else None)
    return [Evidence(letter=str(label), letter_id=letter_id, event=event, seq=seq)]


def _objective(
    objective_id: str, text: str, expectations: list[ExpectationResult]
) -> ObjectiveResult:
    counted = [e for e in expectations if e.outcome != "not fired"]
    weights = [e.score for e in counted]
    if not any(weights):
        weights = [1] * len(counted)  # every score 0: count the expectations instead
    met = sum(w for w, e in zip(weights, counted, strict=True) if e.outcome == "met")
    total = sum(weights)
    share = Fraction(met, total) if total else None
    return ObjectiveResult(
        id=objective_id,
        text=text,
        expectations=expectations,
        met_weight=met,
        total_weight=total,
        fraction=float(share) if share is not None else None,
        rating=rating(share),
    )


def rating(share: Fraction | None) -> Rating:
    """The HSEEP rating a share of expectations met suggests (see RATING_RULE)."""
    if share is None:
        return "not assessed"
    if share == 1:
        return "P"
    if share >= Fraction(2, 3):
        return "S"
    if share >= Fraction(1, 3):
        return "M"
    return "U"


def improvement_plan(objectives: list[ObjectiveResult]) -> list[PlanRow]:
    return [
        PlanRow(objective=f"{o.id}: {o.text}", rating=o.rating)
        for o in objectives
        if o.rating in {"S", "M", "U"}
    ]


# --- communications ------------------------------------------------------------------------------


def comms(start: Record, letters: list[LetterTrack]) -> Comms:
    """Who wrote to whom, how fast letters were opened and answered, overall and per move."""
    parties = [str(p["name"]) for p in start["data"].get("parties", [])]
    parties += sorted(
        {name for letter in letters for name in (letter.sender, letter.recipient)} - set(parties)
    )
    moves = start["data"].get("moves", [])
    titles = {int(move["id"]): str(move.get("title", "")) for move in moves}
    move_ids = sorted(set(titles) | {letter.move for letter in letters})
    return Comms(
        parties=parties,
        matrix=matrix(parties, letters),
        first_contact=first_contact(letters),
        totals=[party_comms(p, letters, letters) for p in parties],
        per_move=[_move_comms(m, titles.get(m, ""), parties, letters) for m in move_ids],
        letters=letters,
        rules=[OPEN_RULE, REPLY_RULE, UNANSWERED_RULE, MOVE_RULE],
    )


def _move_comms(move: int, title: str, parties: list[str], letters: list[LetterTrack]) -> MoveComms:
    mine = [letter for letter in letters if letter.move == move]
    return MoveComms(
        move=move,
        title=title,
        matrix=matrix(parties, mine),
        parties=[party_comms(p, mine, letters) for p in parties],
    )


def matrix(parties: list[str], letters: list[LetterTrack]) -> dict[str, dict[str, int]]:
    """matrix[sender][recipient]: how many letters."""
    counts = Counter((letter.sender, letter.recipient) for letter in letters)
    return {s: {r: counts[(s, r)] for r in parties} for s in parties}


def first_contact(letters: list[LetterTrack]) -> list[FirstContact]:
    """The first letter of each ordered pair that wrote at all, in the order contact was made."""
    seen: dict[tuple[str, str], FirstContact] = {}
    for letter in letters:
        seen.setdefault(
            (letter.sender, letter.recipient),
            FirstContact(
                sender=letter.sender,
                recipient=letter.recipient,
                letter=letter.label,
                t=letter.t,
                world=letter.world,
            ),
        )
    return list(seen.values())


def party_comms(
    party: str, letters: list[LetterTrack], everything: list[LetterTrack]
) -> PartyComms:
    """One party's letters among `letters`; replies are looked for among `everything`."""
    received = [letter for letter in letters if letter.recipient == party]
    opened = [(letter, mark) for letter in received if (mark := letter.mark(State.OPENED))]
    replies = first_replies(party, everything)
    counted = {letter.label for letter in letters}
    return PartyComms(
        party=party,
        sent=sum(letter.sender == party for letter in letters),
        received=len(received),
        opened=len(opened),
        returned_unopened=sum(bool(letter.mark(State.RETURNED_UNOPENED)) for letter in received),
        time_to_open=durations([_seconds(letter.world, mark.world) for letter, mark in opened]),
        time_to_reply=durations(
            [_reply_seconds(*pair) for pair in replies.values() if pair[1].label in counted]
        ),
        unanswered=[letter.label for letter, _ in opened if letter.label not in replies],
        undecided=[letter.label for letter in received if not letter.decided],
    )


def first_replies(
    party: str, everything: list[LetterTrack]
) -> dict[str, tuple[LetterTrack, LetterTrack]]:
    """Original label → (original, reply): the first letter `party` sent back to the original's
    sender in reply to it, in the order the replies were sent."""
    by_label = {letter.label: letter for letter in everything}
    replies: dict[str, tuple[LetterTrack, LetterTrack]] = {}
    for reply in sorted(everything, key=lambda letter: letter.t):
        original = by_label.get(reply.in_reply_to or "")
        if (
            reply.sender == party
            and original is not None
            and (original.recipient, original.sender) == (party, reply.recipient)
        ):
            replies.setdefault(original.label, (original, reply))
    return replies


def _reply_seconds(original: LetterTrack, reply: LetterTrack) -> float:
    opened = original.mark(State.OPENED)
    return _seconds(opened.world if opened else original.world, reply.world)


def durations(seconds: list[float]) -> Durations:
    return Durations(
        seconds=seconds,
        median=statistics.median(seconds) if seconds else None,
        max=max(seconds) if seconds else None,
    )


# --- integrity -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _TrustedKeys:
    """The keys run_started announced: the only keys the integrity checks trust."""

    courier: bytes | None
    signing: Mapping[str, bytes]


def _decode(value: Any) -> bytes | None:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return None


def _trusted_keys(start: Record) -> _TrustedKeys:
    evidence = start["evidence"]
    signing = {
        str(name): key
        for name, keys in evidence.get("party_keys", {}).items()
        if (key := _decode(keys.get("signing_key"))) is not None
    }
    courier = evidence.get("courier_key")
    return _TrustedKeys(_decode(courier) if courier else None, signing)


def integrity(records: Sequence[Record], letters: list[LetterTrack]) -> Integrity:
    """The log's chain head, and every letter's final status checked with run_started's keys."""
    start = records[0]
    keys = _trusted_keys(start)
    logged = _logged_receipts(records)
    sent = {letter.label: letter for letter in letters}
    finals = [r for r in records if r["kind"] == "letter_final"]
    checks = [
        check_final(final, sent.get(str(final["data"].get("letter"))), keys, logged)
        for final in finals
    ]
    finalised = {str(final["data"].get("letter")) for final in finals}
    return Integrity(
        scenario_digest=str(start["data"].get("scenario", {}).get("digest", "")),
        chain_head=str(records[-1]["hash"]),
        records=len(records),
        courier_key=start["evidence"].get("courier_key"),
        courier_url=start["evidence"].get("courier_url"),
        letters=checks,
        verified=sum(check.ok for check in checks),
        failed=sum(not check.ok for check in checks),
        missing_final=[letter.label for letter in letters if letter.label not in finalised],
    )


def _logged_receipts(records: Sequence[Record]) -> dict[str, list[Mapping[str, Any]]]:
    """The signed receipts the log recorded during the run, by letter label."""
    logged: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        receipt = record["evidence"].get("receipt")
        if record["kind"] in {"letter_sent", "receipt"} and receipt is not None:
            logged[str(record["data"].get("letter"))].append(receipt)
    return logged


def check_final(
    final: Record,
    sent: LetterTrack | None,
    keys: _TrustedKeys,
    logged: Mapping[str, list[Mapping[str, Any]]],
) -> LetterCheck:
    """Verify one letter_final's status; the reason names the first check that fails."""
    label = str(final["data"].get("letter"))
    try:
        status = LetterStatus.model_validate(final["evidence"].get("status"))
    except ValidationError:
        return LetterCheck(
            letter=label,
            letter_id=sent.letter_id if sent else None,
            sender=sent.sender if sent else None,
            recipient=sent.recipient if sent else None,
            ok=False,
            reason="the final status is missing or unreadable",
        )
    problem = _status_problem(status, sent, keys) or _logged_problem(status, logged.get(label, []))
    return LetterCheck(
        letter=label,
        letter_id=status.id,
        sender=status.envelope.sender,
        recipient=status.envelope.recipient,
        ok=problem is None,
        reason=problem or f"seal and {len(status.receipts)} receipts verify",
    )


def _status_problem(
    status: LetterStatus, sent: LetterTrack | None, keys: _TrustedKeys
) -> str | None:
    envelope = status.envelope
    if sent is None:
        return "the log never sent this letter"
    if status.id != envelope.id or status.id != sent.letter_id:
        return f"the status is for letter {status.id}, the log sent {sent.letter_id}"
    if (envelope.sender, envelope.recipient) != (sent.sender, sent.recipient):
        return f"the envelope says {envelope.sender} → {envelope.recipient}, the log otherwise"
    sender_key = keys.signing.get(envelope.sender)
    recipient_key = keys.signing.get(envelope.recipient)
    if keys.courier is None or sender_key is None or recipient_key is None:
        return "run_started does not announce the courier's or a party's key"
    if not verify_seal(envelope, status.seal, sender_key):
        return f"the seal does not verify with {envelope.sender}'s key from run_started"
    try:
        verify_chain(
            status.receipts, envelope, courier_key=keys.courier, recipient_key=recipient_key
        )
    except IntegrityError as exc:
        return f"receipt chain: {exc.detail}"
    if status.receipts[-1].event is not status.state:
        return f"the status says {status.state.value}, its last receipt otherwise"
    return None


def _logged_problem(status: LetterStatus, logged: list[Mapping[str, Any]]) -> str | None:
    """Receipts seen during the run must all be in the final chain, unchanged."""
    chain = {receipt.chain_hash() for receipt in status.receipts}
    for raw in logged:
        try:
            receipt = Receipt.model_validate(raw)
        except ValidationError:
            return "a receipt logged during the run is unreadable"
        if receipt.chain_hash() not in chain:
            return f"receipt {receipt.seq} logged during the run is not in the final chain"
    return None
