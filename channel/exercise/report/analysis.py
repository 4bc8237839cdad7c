"""The after-action report's content, computed from an event log's records alone (no I/O).

`analyse(records)` takes the records `read_log` returns (already chain-checked) and gives an
`AfterAction`: the overview, a timeline, each objective with its expectations and a suggested
HSEEP rating, the communications analysis (who wrote to whom, how fast letters were opened and
answered; `channel.exercise.report.comms`) and the integrity of every letter's final status, checked
with the keys `run_started` announced, never with keys a status carries
(`channel.exercise.report.integrity`). `channel.exercise.report.render` renders it.

Times: `t` is exercise milliseconds; durations between letters are world (story) seconds.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from fractions import Fraction
from itertools import pairwise
from typing import Any, Literal

from pydantic import Field

from channel.exercise.author.scenario import format_duration, format_offset
from channel.exercise.eventlog import (
    ActionFailed,
    ControlRecord,
    ExpectationOutcome,
    InjectControlled,
    InjectFired,
    InjectTasked,
    LetterSent,
    LogError,
    MoveStarted,
    NoticeSent,
    PlannedExpectation,
    ReceiptRecord,
    Record,
    RunEnded,
    RunStarted,
    decode_all,
)
from channel.exercise.eventlog import Seat as PlannedSeat
from channel.exercise.report.comms import (
    Comms,
    LetterTrack,
    Part,
    comms,
    letter_tracks,
    world_seconds,
)
from channel.exercise.report.feedback import Feedback
from channel.exercise.report.integrity import Integrity, integrity
from channel.exercise.report.notes import NOTES_FILE, Area, Notes, NotesError, ObjectiveNotes
from channel.exercise.tally import InjectTally, describe_ended
from channel.protocol.lifecycle import State

Outcome = Literal["met", "missed", "pending", "not fired"]
Rating = Literal["P", "S", "M", "U", "not assessed"]
Who = Callable[[str], str]

RATING_RULE = (
    "Suggested rating = the score-weighted share of an objective's expectations that were met "
    "(by count when every score is 0): all met → P (performed without challenges), at least 2/3 "
    "→ S (some challenges), at least 1/3 → M (major challenges), less → U (unable to be "
    "performed). Pending expectations count as not met; expectations of injects that never fired "
    "are left out; an objective with no expectations is not assessed. The evaluator decides."
)
STRENGTHS_HINT = (
    "Evaluator: what went well, with the evidence that shows it (notes.yaml: "
    "`channel exercise notes RUN`)."
)
AREAS_HINT = (
    "Evaluator: what to improve: the observation, its root cause and a recommendation (notes.yaml)."
)


# --- the overview --------------------------------------------------------------------------------


PERSON_TAG = "(person)"


class Seat(Part):
    name: str
    label: str
    play: str
    player: str

    @property
    def person(self) -> bool:
        """Played by a person: the report tags these seats."""
        return self.play == "human"


class NoticeRow(Part):
    """A notice control sent a person's seat (a sealed letter from the control party)."""

    t: int
    world: str
    wall: str
    kind: str
    inject: str | None
    party: str
    letter_id: str | None


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


class ControlAction(Part):
    """Something the control cell did by hand: pause, resume, speed, fire, skip, hold, release."""

    t: int
    world: str
    wall: str
    command: str
    argument: str | None
    text: str


class InjectCount(Part):
    """How far through the MSEL the run got (`channel.exercise.tally`): the one count."""

    fired: int
    contingencies: int
    scheduled_fired: int
    scheduled: int
    skipped: int
    text: str


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
    rating: Rating  # the evaluator's, when notes.yaml gives one; else the suggested one
    suggested_rating: Rating
    rated_by: Literal["evaluator", "suggested"] = "suggested"
    core_capability: str = ""
    strengths: list[str] = Field(default_factory=list)
    areas_for_improvement: list[Area] = Field(default_factory=list)
    strengths_hint: str = STRENGTHS_HINT
    areas_hint: str = AREAS_HINT


class PlanRow(Part):
    """One improvement-plan row (HSEEP IP): from an area for improvement in the notes, or, for
    an objective rated S, M or U that has none yet, an empty row for the evaluator."""

    objective: str
    rating: Rating
    capability: str = ""
    issue: str = ""
    corrective_action: str = ""
    organisation: str = ""
    point_of_contact: str = ""
    start: str = ""
    end: str = ""


class FeedbackSummary(Part):
    """The participants' hot-wash answers, per seat."""

    answers: list[Feedback]
    seats: int  # how many seats the exercise had
    mean_rating: float | None


class MselRow(Part):
    """One inject as planned (run_started) and as played (the log)."""

    id: str
    move: int | None
    channel: str
    sender: str | None
    to: list[str]
    subject: str
    contingency: bool
    planned_t: int | None
    played_t: int | None
    status: str  # fired, tasked, skipped, held, not fired
    cause: str  # scheduled, control, contingency:EXP, after:X


class KeyFigures(Part):
    """Page one's numbers."""

    injects: str
    letters: int  # exercise letters: notices from the control cell are not among them
    notices: int = 0  # notices the control cell sent people's seats
    expectations_met: int
    expectations_missed: int
    expectations_pending: int
    people: int
    bots: int
    control_actions: int
    letters_verified: str


class AfterAction(Part):
    overview: Overview
    control_actions: list[ControlAction]
    inject_count: InjectCount
    timeline: list[TimelineEntry]
    injects: list[InjectMark]
    msel: list[MselRow]
    objectives: list[ObjectiveResult]
    rating_rule: str
    improvement_plan: list[PlanRow]
    comms: Comms
    integrity: Integrity
    key_figures: KeyFigures
    evaluators: list[str] = Field(default_factory=list)
    assessment: str = ""  # the evaluators' overall summary
    feedback: FeedbackSummary | None = None
    notices: list[NoticeRow] = Field(default_factory=list)

    def who(self, name: str) -> str:
        """A party as the report names it: its label, or its name when it has none."""
        return next((p.label for p in self.overview.parties if p.name == name and p.label), name)

    def person(self, name: str) -> bool:
        return any(p.name == name and p.person for p in self.overview.parties)

    def tagged(self, name: str) -> str:
        """A party as the tables name it: a seat a person played says so."""
        return f"{self.who(name)} {PERSON_TAG}" if self.person(name) else self.who(name)


# --- the analysis --------------------------------------------------------------------------------


def analyse(
    raw: Sequence[Mapping[str, Any] | Record],
    notes: Notes | None = None,
    feedback: Sequence[Feedback] = (),
) -> AfterAction:
    """The whole report from a log's records (chain already checked: `read_records`, or the raw
    ones `read_log` gives, decoded here once), with the evaluators' notes and the participants'
    feedback merged in when there are any."""
    if not raw or _kind(raw[0]) != "run_started":
        raise LogError("the event log does not start with run_started")
    records = decode_all(raw)
    start = records[0]
    assert isinstance(start, RunStarted)  # the kind was checked above
    who = _namer(start.data.parties)
    tracks = letter_tracks(records, start.data.people)
    letters = [letter for letter in tracks if not letter.control]  # notices are not letters
    notes = notes or Notes()
    _check_notes(notes, [o.id for o in start.data.objectives])
    objectives = [
        _with_notes(o, notes.objectives.get(o.id))
        for o in objective_results(start, records, letters)
    ]
    checked = integrity(start, records, tracks)
    injects = inject_count(start, records)
    notices = notice_rows(records)
    return AfterAction(
        overview=overview(start, records, letters),
        control_actions=control_actions(records),
        inject_count=injects,
        timeline=timeline(records, who),
        injects=inject_marks(records),
        msel=msel_rows(start, records),
        objectives=objectives,
        rating_rule=RATING_RULE,
        improvement_plan=improvement_plan(objectives),
        comms=comms(start, letters),
        integrity=checked,
        key_figures=key_figures(start, records, letters, checked, injects, len(notices)),
        evaluators=notes.evaluators,
        assessment=notes.summary,
        feedback=feedback_summary(feedback, len(start.data.parties)) if feedback else None,
        notices=notices,
    )


def _kind(record: Mapping[str, Any] | Record) -> object:
    return record.get("kind") if isinstance(record, Mapping) else record.kind


def notice_rows(records: Sequence[Record]) -> list[NoticeRow]:
    """What control told the seats, in the order it was sent."""
    return [
        NoticeRow(
            t=r.t,
            world=r.world,
            wall=r.wall,
            kind=r.data.kind,
            inject=r.data.inject,
            party=r.data.party,
            letter_id=r.data.letter_id or r.letter_id,
        )
        for r in records
        if isinstance(r, NoticeSent)
    ]


def _check_notes(notes: Notes, objectives: list[str]) -> None:
    """Notes on an objective the run does not have would be lost without a word."""
    for name in notes.objectives:
        if name not in objectives:
            raise NotesError(
                f"{NOTES_FILE} has notes on objective {name!r}, which this exercise does not have "
                f"(objectives: {', '.join(objectives) or 'none'})"
            )


def _with_notes(objective: ObjectiveResult, notes: ObjectiveNotes | None) -> ObjectiveResult:
    if notes is None:
        return objective
    update: dict[str, Any] = {
        "core_capability": notes.core_capability,
        "strengths": notes.strengths,
        "areas_for_improvement": notes.areas_for_improvement,
    }
    if notes.rating:
        update |= {"rating": notes.rating, "rated_by": "evaluator"}
    return objective.model_copy(update=update)


def feedback_summary(answers: Sequence[Feedback], seats: int) -> FeedbackSummary:
    ratings = [answer.rating for answer in answers if answer.rating is not None]
    return FeedbackSummary(
        answers=list(answers),
        seats=seats,
        mean_rating=sum(ratings) / len(ratings) if ratings else None,
    )


def key_figures(
    start: RunStarted,
    records: Sequence[Record],
    letters: list[LetterTrack],
    checked: Integrity,
    injects: InjectCount,
    notices: int,
) -> KeyFigures:
    outcomes = Counter(e.outcome for e in expectation_results(start, records, letters))
    plays = [seat.play for seat in start.data.parties]
    total = checked.verified + checked.failed
    return KeyFigures(
        injects=injects.text,
        letters=len(letters),
        notices=notices,
        expectations_met=outcomes["met"],
        expectations_missed=outcomes["missed"],
        expectations_pending=outcomes["pending"],
        people=plays.count("human"),
        bots=sum(play.startswith("bot:") for play in plays),
        control_actions=len(control_actions(records)),
        letters_verified=f"{checked.verified} of {total}"
        + (f" ({checked.failed} FAILED)" if checked.failed else ""),
    )


def msel_rows(start: RunStarted, records: Sequence[Record]) -> list[MselRow]:
    """The MSEL as planned against as played: when each inject was due and when it went out."""
    played: dict[str, tuple[str, int | None, str]] = {}  # inject → (status, t, cause)
    for record in records:
        if not isinstance(record, InjectFired | InjectTasked | InjectControlled):
            continue
        inject, kind = record.data.inject, record.kind
        before = played.get(inject, ("not fired", None, ""))[0]
        if before in {"fired", "tasked"}:
            continue
        if isinstance(record, InjectFired):
            played[inject] = ("fired", record.t, record.data.cause)
        elif isinstance(record, InjectTasked):
            played[inject] = ("tasked", record.t, "scheduled")
        elif kind in {"inject_skipped", "inject_held"}:
            played[inject] = (kind.removeprefix("inject_"), None, "")
    rows = []
    for plan in start.data.injects:
        status, t, cause = played.get(plan.id, ("not fired", None, ""))
        rows.append(
            MselRow(
                id=plan.id,
                move=plan.move,
                channel=plan.channel,
                sender=plan.sender,
                to=plan.to,
                subject=plan.subject,
                contingency=plan.contingency,
                planned_t=plan.t,
                played_t=t,
                status=status,
                cause=cause,
            )
        )
    return rows


def _namer(parties: Iterable[PlannedSeat]) -> Who:
    """Names as the report shows them: the party's label when the scenario gives one."""
    labels = {p.name: p.label or p.name for p in parties}
    return lambda name: labels.get(name, name)


# --- overview ------------------------------------------------------------------------------------


def overview(start: RunStarted, records: Sequence[Record], letters: list[LetterTrack]) -> Overview:
    data, scenario, last = start.data, start.data.scenario, records[-1]
    moves = [
        MoveInfo(id=m.id, title=m.title, t=m.t or 0, world=m.world or start.world)
        for m in data.moves
    ]
    return Overview(
        title=scenario.title,
        revision=str(scenario.revision if scenario.revision is not None else ""),
        digest=scenario.digest,
        file=scenario.file,
        marking=scenario.marking,
        summary=scenario.summary,
        transcript=scenario.transcript,
        seed=str(data.seed if data.seed is not None else ""),
        speed=data.speed or "",
        rehearse=data.rehearse,
        wall_start=start.wall,
        wall_end=last.wall,
        world_start=start.world,
        world_end=last.world,
        duration_ms=last.t,
        end_ms=data.end if data.end is not None else last.t,
        end_reason=last.data.reason if isinstance(last, RunEnded) else None,
        parties=[_seat(party) for party in data.parties],
        objectives=[ObjectiveText(id=o.id, text=o.text) for o in data.objectives],
        moves=moves,
        artificialities=artificialities(start, records, moves, letters),
    )


def _seat(party: PlannedSeat) -> Seat:
    return Seat(
        name=party.name, label=party.label or "", play=party.play, player=party.player or ""
    )


def artificialities(
    start: RunStarted, records: Sequence[Record], moves: list[MoveInfo], letters: list[LetterTrack]
) -> list[str]:
    """Where the exercise differs from the world it plays, in plain sentences."""
    data = start.data
    rate = world_rate(start)
    actions = control_actions(records)
    found = [
        *_seat_sentences(data.parties, data.rehearse),
        _speed_sentence(data.speed or "1", actions),
        f"world clock runs {_times(rate)} exercise time" if rate and rate != 1 else None,
        _latency_sentence(data.latency, letters),
        _jump_sentence(moves, rate),
        *(f"{_offset(a.t)}: {a.text}" for a in actions),
    ]
    return [sentence for sentence in found if sentence]


def _seat_sentences(parties: list[PlannedSeat], rehearse: bool) -> list[str]:
    plays = [party.play for party in parties]
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


def _speed_sentence(speed: str, actions: list[ControlAction]) -> str | None:
    changes = [a for a in actions if a.command == "speed"]
    if speed == "max":
        text = "run at speed max: exercise time compressed (waits skipped)"
    elif speed in {"1", "1.0", ""} and not changes:
        return None
    else:
        text = f"run at speed {speed}: exercise time ran {speed}× wall time"
    if changes:
        listed = ", ".join(f"to {a.argument} at {_offset(a.t)}" for a in changes)
        text += f"; the control cell changed the speed {len(changes)}× ({listed})"
    return text


def _offset(t_ms: int) -> str:
    return format_offset(t_ms / 1000)


def _times(rate: float) -> str:
    return f"{rate:.3g}×"


def world_rate(start: RunStarted) -> float | None:
    """World seconds per exercise second (run_started's `world_speed`), if the log says."""
    try:
        return float(start.data.world_speed or "")
    except ValueError:
        return None


def _latency_sentence(declared: Mapping[str, str] | None, letters: list[LetterTrack]) -> str | None:
    # A letter to a person's seat is left out: the runner simulates no latency to it, and its
    # `delivered` comes when the person's client lists the inbox (their dwell, reported apart).
    lags = [
        world_seconds(letter.world, delivered.world)
        for letter in letters
        if (delivered := letter.mark(State.DELIVERED)) and not letter.person
    ]
    observed = (
        f"letters took up to {format_duration(max(lags))} (world time) to be delivered"
        if any(lags)
        else ""
    )
    simulated = {channel: delay for channel, delay in (declared or {}).items() if delay != "none"}
    if simulated:
        table = ", ".join(f"{channel} {delay}" for channel, delay in simulated.items())
        return f"courier and wire latency simulated (world time): {table}" + (
            f"; {observed}" if observed else ""
        )
    return f"courier latency simulated: {observed}" if observed else None


def _jump_sentence(moves: list[MoveInfo], rate: float | None) -> str | None:
    if rate is None:
        return None
    jumps = [
        f"move {after.id} starts at {after.world}"
        for before, after in pairwise(moves)
        if abs(world_seconds(before.world, after.world) - rate * (after.t - before.t) / 1000) >= 1
    ]
    return f"moves jump world time ({'; '.join(jumps)})" if jumps else None


_BY_HAND = {
    "inject_skipped": "skip",
    "inject_held": "hold",
    "inject_released": "release",
}


def control_actions(records: Sequence[Record]) -> list[ControlAction]:
    """Every command the control cell gave, in order, each with its time and what it did."""
    actions: list[ControlAction] = []
    paused: Record | None = None
    for record in records:
        argument: object
        if isinstance(record, ControlRecord):
            command, argument = record.data.command, record.data.argument
        elif isinstance(record, InjectControlled) and record.data.by == "control":
            command, argument = _BY_HAND[record.kind], record.data.inject
        else:
            continue
        text = _ACTION_TEXT.get(command, "the control cell: {command} {argument}").format(
            command=command, argument=argument
        )
        if command == "pause":
            paused = record
        elif command == "resume" and paused is not None:
            stopped = world_seconds(paused.wall, record.wall)
            text += f" after {format_duration(stopped)} of wall time"
            paused = None
        actions.append(
            ControlAction(
                t=record.t,
                world=record.world,
                wall=record.wall,
                command=command,
                argument=str(argument) if argument is not None else None,
                text=text,
            )
        )
    return actions


_ACTION_TEXT = {
    "pause": "the control cell paused the exercise",
    "resume": "the control cell resumed the exercise",
    "speed": "the control cell set the speed to {argument}",
    "fire": "the control cell fired {argument} by hand",
    "skip": "the control cell skipped {argument}",
    "hold": "the control cell held {argument}",
    "release": "the control cell released {argument}",
}


def inject_count(start: RunStarted, records: Sequence[Record]) -> InjectCount:
    tally = InjectTally.from_records(start, records)
    return InjectCount(
        fired=len(tally.fired),
        contingencies=tally.contingencies_fired,
        scheduled_fired=tally.scheduled_fired,
        scheduled=len(tally.scheduled),
        skipped=len(tally.skipped),
        text=tally.text(),
    )


# --- timeline ------------------------------------------------------------------------------------


def _listed(who: Who, names: Iterable[str]) -> str:
    return ", ".join(who(name) for name in names) or "everyone"


def _run_started(record: RunStarted, who: Who) -> str:
    data, scenario = record.data, record.data.scenario
    return (
        f"Exercise started: {scenario.title} (revision {scenario.revision or ''}),"
        f" seed {data.seed if data.seed is not None else ''}, speed {data.speed or ''}"
    )


def _move_started(record: MoveStarted, who: Who) -> str:
    return f"Move {record.data.id} begins: {record.data.title}"


def _inject_fired(record: InjectFired, who: Who) -> str:
    data = record.data
    sender = who(data.sender) if data.sender else "the wires"
    text = (
        f"Inject {data.inject} ({data.channel}) from {sender} to "
        f"{_listed(who, data.to)}: {data.subject}"
    )
    if data.cause != "scheduled":
        text += f" [{data.cause}]"
    if data.letters:
        text += f" → {', '.join(data.letters)}"
    return text


def _inject_tasked(record: InjectTasked, who: Who) -> str:
    data = record.data
    return f"Inject {data.inject} tasked to {who(data.party)}: {data.action or data.subject}"


def _inject_by(record: InjectControlled, who: Who) -> str:
    verb = record.kind.removeprefix("inject_")
    return f"Inject {record.data.inject} {verb} by {record.data.by}"


def _letter_sent(record: LetterSent, who: Who) -> str:
    data = record.data
    text = (
        f"{data.letter} {who(data.sender)} → {who(data.to)}"
        f" ({data.precedence or 'routine'}, by {data.by or '?'})"
    )
    if data.subject:
        text += f": {data.subject}"
    if data.in_reply_to:
        text += f", in reply to {data.in_reply_to}"
    return text


def _receipt(record: ReceiptRecord, who: Who) -> str:
    data = record.data
    text = f"{data.letter} {data.event.replace('_', ' ')} by {who(data.by or 'courier')}"
    text += f" (receipt {data.seq})" if data.seq is not None else ""
    return text + (f': "{data.reason}"' if data.reason else "")


def _expectation(record: ExpectationOutcome, who: Who) -> str:
    data, outcome = record.data, record.kind.removeprefix("expectation_")
    text = (
        f"Expectation {data.expectation} {outcome}: {data.check} "
        f"{who(str(data.sender))} → {who(str(data.to))}"
    )
    return text + (f" by {data.letter}" if data.letter else "")


def _control(record: ControlRecord, who: Who) -> str:
    argument = f" {record.data.argument}" if record.data.argument else ""
    return f"Control: {record.data.command}{argument}"


def _action_failed(record: ActionFailed, who: Who) -> str:
    data = record.data
    return f"Failed: {who(data.party)} could not {data.action}: {data.error}"


def _run_ended(record: RunEnded, who: Who) -> str:
    data = record.data
    count = describe_ended(data.model_dump(exclude_none=True))
    return f"Exercise ended ({data.reason}): {count}, {data.letters} letters"


def _describe(record: Record, who: Who) -> str | None:
    """A record in words for the timeline; None for what a reader does not follow the
    exercise by (decisions, bot state, escrow, final statuses)."""
    match record:
        case RunStarted():
            return _run_started(record, who)
        case MoveStarted():
            return _move_started(record, who)
        case InjectFired():
            return _inject_fired(record, who)
        case InjectTasked():
            return _inject_tasked(record, who)
        case InjectControlled():
            return _inject_by(record, who)
        case LetterSent():
            return _letter_sent(record, who)
        case ReceiptRecord():
            return _receipt(record, who)
        case ExpectationOutcome():
            return _expectation(record, who)
        case ControlRecord():
            return _control(record, who)
        case ActionFailed():
            return _action_failed(record, who)
        case RunEnded():
            return _run_ended(record, who)
    return None


def timeline(records: Sequence[Record], who: Who) -> list[TimelineEntry]:
    """One line per record a reader follows the exercise by (not decisions or bot state)."""
    return [
        TimelineEntry(t=record.t, world=record.world, move=record.move, kind=record.kind, text=text)
        for record in records
        if (text := _describe(record, who)) is not None
    ]


def inject_marks(records: Sequence[Record]) -> list[InjectMark]:
    return [
        InjectMark(
            id=record.data.inject,
            kind=record.kind,
            t=record.t,
            world=record.world,
            move=record.move,
            channel=record.data.channel,
            subject=record.data.subject,
        )
        for record in records
        if isinstance(record, InjectFired | InjectTasked)
    ]


# --- objectives ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Expected:
    """An expectation from run_started, with the objectives it inherits from its inject."""

    spec: PlannedExpectation
    inject: str
    objectives: tuple[str, ...]


def _expected(start: RunStarted) -> list[_Expected]:
    found = []
    for inject in start.data.injects:
        for spec in inject.expect:
            tags = [*spec.objectives, *inject.objectives]
            found.append(_Expected(spec, inject.id, tuple(dict.fromkeys(tags))))
    return found


def objective_results(
    start: RunStarted, records: Sequence[Record], letters: list[LetterTrack]
) -> list[ObjectiveResult]:
    """Each objective with its expectations' outcomes and a suggested rating."""
    expectations = expectation_results(start, records, letters)
    return [
        _objective(
            objective.id,
            objective.text,
            [e for e in expectations if objective.id in e.objectives],
        )
        for objective in start.data.objectives
    ]


def expectation_results(
    start: RunStarted, records: Sequence[Record], letters: list[LetterTrack]
) -> list[ExpectationResult]:
    outcomes = {r.data.expectation: r for r in records if isinstance(r, ExpectationOutcome)}
    fired = {r.data.inject for r in records if isinstance(r, InjectFired | InjectTasked)}
    tracks = {track.label: track for track in letters}
    return [
        _expectation_result(expected, outcomes.get(expected.spec.id), fired, tracks)
        for expected in _expected(start)
    ]


def _expectation_result(
    expected: _Expected,
    outcome: ExpectationOutcome | None,
    fired: set[str],
    tracks: Mapping[str, LetterTrack],
) -> ExpectationResult:
    spec = expected.spec
    return ExpectationResult(
        id=spec.id,
        inject=expected.inject,
        check=spec.check,
        sender=spec.sender or "",
        recipient=spec.to or "",
        text=spec.text,
        score=spec.score if spec.score is not None else 1,
        objectives=list(expected.objectives),
        outcome=_outcome(outcome, expected.inject in fired),
        t=outcome.t if outcome else None,
        evidence=_evidence(outcome, tracks) if outcome else [],
    )


def _outcome(outcome: ExpectationOutcome | None, fired: bool) -> Outcome:
    if outcome is not None:
        return "met" if outcome.kind == "expectation_met" else "missed"
    return "pending" if fired else "not fired"


# The receipt that proves each check: a letter sent (or a reply) is proved by its accepted receipt.
_PROOF = {"sent": "accepted", "replied": "accepted"}


def _evidence(outcome: ExpectationOutcome, tracks: Mapping[str, LetterTrack]) -> list[Evidence]:
    label = outcome.data.letter
    if outcome.kind != "expectation_met" or label is None:
        return []
    track = tracks.get(label)
    check = outcome.data.check
    event = _PROOF.get(check, check)
    mark = track.mark(event) if track else None
    # The accepted receipt rides on letter_sent, not a receipt record; it is always number 0.
    seq = 0 if event == "accepted" else (mark.seq if mark else None)
    letter_id = outcome.letter_id or (track.letter_id if track else None)
    return [Evidence(letter=label, letter_id=letter_id, event=event, seq=seq)]


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
        suggested_rating=rating(share),
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
    """A row per area for improvement; an empty row for an S, M or U objective with none."""
    rows = []
    for o in objectives:
        name = f"{o.id}: {o.text}"
        for area in o.areas_for_improvement:
            rows.append(
                PlanRow(
                    objective=name,
                    rating=o.rating,
                    capability=o.core_capability,
                    issue=area.observation,
                    corrective_action=area.corrective_action or area.recommendation,
                    organisation=area.organisation,
                    point_of_contact=area.point_of_contact,
                    start=area.start,
                    end=area.end,
                )
            )
        if not o.areas_for_improvement and o.rating in {"S", "M", "U"}:
            rows.append(PlanRow(objective=name, rating=o.rating, capability=o.core_capability))
    return rows
