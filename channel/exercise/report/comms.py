"""The communications analysis: every letter's track, and who wrote to whom and how fast.

`letter_tracks(records)` follows each letter the log sent through its receipts to its final
state; the rest of the after-action analysis (`channel.exercise.report.analysis`, and the integrity
checks in `report.integrity`) is built on those tracks. `comms(start, letters)` gives
the sender-by-recipient matrix, first contact between each pair, and per party (overall and per
move) how many letters were sent, received, opened and returned, and how long opening and
replying took. `Part`, the base of every report model, lives here because this is the module the
others build on.

Times: `t` is exercise milliseconds; durations between letters are world (story) seconds.
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Mapping, Sequence

from pydantic import BaseModel, ConfigDict

from channel.exercise.eventlog import LetterFinal, LetterSent, ReceiptRecord, Record, RunStarted
from channel.protocol.canonical import to_millis
from channel.protocol.lifecycle import State
from channel.protocol.notice import CONTROL_PARTY

OPEN_RULE = "Time to open: from the letter's sending to its opened receipt, world time."
REPLY_RULE = (
    "Time to reply: from the original's opened receipt (its sending, if it was never opened) to "
    "the reply's sending, world time; a reply is a letter back to the original's sender in reply "
    "to it, and only the first reply counts."
)
MOVE_RULE = "Per move, a letter and everything that happens to it count in the move it was sent in."
UNANSWERED_RULE = (
    "Relayed: opened by the recipient, who passed it on in a new letter (an intermediary's "
    "forward). Unanswered: opened by the recipient, who neither replied nor relayed it. "
    "Undecided: neither opened nor returned by the recipient nor withdrawn by the sender by the "
    "end (expired letters included)."
)
DWELL_RULE = (
    "For a letter to a seat a person played, courier latency (sent to delivered) is kept apart "
    "from dwell (delivered to opened, returned, withdrawn or expired, or to the end of the run if "
    "none came: the letter waited in the person's inbox), each in exercise and wall time. The "
    "runner simulates no latency to a person's seat, so there delivered is when the person's "
    "client first listed the inbox. Time to open above counts both, in world time."
)
DWELL_ENDS = frozenset({State.OPENED, State.RETURNED_UNOPENED, State.WITHDRAWN, State.EXPIRED})
DECIDED = frozenset({State.OPENED, State.RETURNED_UNOPENED, State.WITHDRAWN})


class Part(BaseModel):
    """Every report part is a frozen record that refuses unknown fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")


# --- the models ----------------------------------------------------------------------------------


class Mark(Part):
    """One receipt in a letter's life, as the log recorded it."""

    event: str
    t: int
    world: str
    wall: str | None = None
    seq: int | None
    by: str | None
    reason: str | None


class Span(Part):
    """One stretch of a letter's life, on two clocks (seconds)."""

    exercise_s: float
    wall_s: float | None


class Timing(Part):
    """A letter to a person's seat: latency and dwell apart (None while a step never came)."""

    latency: Span | None = None
    dwell: Span | None = None
    dwell_until: str | None = None  # opened, returned_unopened, withdrawn, expired or end


class LetterTrack(Part):
    label: str
    letter_id: str | None
    sender: str
    recipient: str
    t: int
    world: str
    wall: str | None = None
    move: int
    by: str | None
    subject: str | None
    in_reply_to: str | None
    forwards: str | None = None  # the label of the letter this one relays
    precedence: str | None
    marks: list[Mark]
    final_state: str | None
    person: bool = False  # the recipient's seat was played by a person
    timing: Timing | None = None  # only when `person`

    @property
    def control(self) -> bool:
        """A notice from (or a letter to) the control cell: not an exercise letter."""
        return CONTROL_PARTY in (self.sender, self.recipient)

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


class Dwell(Part):
    """How long letters waited in a person's inbox, on both clocks (seconds)."""

    wall: Durations
    exercise: Durations


class PartyComms(Part):
    party: str
    person: bool = False
    dwell: Dwell | None = None  # only for a person's seat
    sent: int
    received: int
    opened: int
    returned_unopened: int
    time_to_open: Durations
    time_to_reply: Durations
    relayed: list[str]
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

    @property
    def people(self) -> list[str]:
        """The seats people played, as the totals list them."""
        return [p.party for p in self.totals if p.person]


def world_seconds(earlier: str, later: str) -> float:
    """World seconds from one timestamp to a later one."""
    return (to_millis(later) - to_millis(earlier)) / 1000


# --- letters -------------------------------------------------------------------------------------


def letter_tracks(
    records: Sequence[Record], people: frozenset[str] = frozenset()
) -> list[LetterTrack]:
    """Every letter the log sent, with its receipts and final state, in sending order; letters to
    a seat in `people` carry their latency and dwell, measured up to the run's last record."""
    marks: dict[str, list[Mark]] = defaultdict(list)
    finals: dict[str, str] = {}
    for record in records:
        if isinstance(record, ReceiptRecord):
            marks[record.data.letter].append(_mark(record))
        elif isinstance(record, LetterFinal):
            finals[record.data.letter] = record.data.state
    end = records[-1] if records else None
    return [
        _track(record, marks[record.data.letter], finals, people, end)
        for record in records
        if isinstance(record, LetterSent)
    ]


def _mark(record: ReceiptRecord) -> Mark:
    data = record.data
    return Mark(
        event=data.event,
        t=record.t,
        world=record.world,
        wall=record.wall,
        seq=data.seq,
        by=data.by,
        reason=data.reason,
    )


def _track(
    record: LetterSent,
    marks: list[Mark],
    finals: Mapping[str, str],
    people: frozenset[str],
    end: Record | None,
) -> LetterTrack:
    data = record.data
    track = LetterTrack(
        label=data.letter,
        letter_id=record.letter_id,
        sender=data.sender,
        recipient=data.to,
        t=record.t,
        world=record.world,
        wall=record.wall,
        move=record.move,
        by=data.by,
        subject=data.subject,
        in_reply_to=data.in_reply_to,
        forwards=data.forwards,
        precedence=data.precedence,
        marks=marks,
        final_state=finals.get(data.letter),
    )
    if data.to in people:
        return track.model_copy(update={"person": True, "timing": _timing(track, end)})
    return track


def _timing(track: LetterTrack, end: Record | None) -> Timing:
    """Courier latency (sent → delivered) apart from the person's dwell (delivered → opened,
    returned, or the end of the log if they never decided)."""
    delivered = track.mark(State.DELIVERED)
    if delivered is None:
        return Timing()
    latency = Span(
        exercise_s=(delivered.t - track.t) / 1000, wall_s=wall_seconds(track.wall, delivered.wall)
    )
    decided = next((m for m in track.marks if m.event in DWELL_ENDS), None)
    if decided is not None:
        until, t, wall = decided.event, decided.t, decided.wall
    elif end is not None:
        until, t, wall = "end", end.t, end.wall
    else:
        return Timing(latency=latency)
    dwell = Span(exercise_s=(t - delivered.t) / 1000, wall_s=wall_seconds(delivered.wall, wall))
    return Timing(latency=latency, dwell=dwell, dwell_until=until)


def wall_seconds(earlier: str | None, later: str | None) -> float | None:
    if earlier is None or later is None:
        return None
    return (to_millis(later) - to_millis(earlier)) / 1000


# --- who wrote to whom, and how fast -------------------------------------------------------------


def comms(start: RunStarted, letters: list[LetterTrack]) -> Comms:
    """Who wrote to whom, how fast letters were opened and answered, overall and per move."""
    people = start.data.people
    parties = [seat.name for seat in start.data.parties]
    parties += sorted(
        {name for letter in letters for name in (letter.sender, letter.recipient)} - set(parties)
    )
    titles = {move.id: move.title for move in start.data.moves}
    move_ids = sorted(set(titles) | {letter.move for letter in letters})
    return Comms(
        parties=parties,
        matrix=matrix(parties, letters),
        first_contact=first_contact(letters),
        totals=[party_comms(p, letters, letters, p in people) for p in parties],
        per_move=[_move_comms(m, titles.get(m, ""), parties, letters, people) for m in move_ids],
        letters=letters,
        rules=[OPEN_RULE, REPLY_RULE, UNANSWERED_RULE, DWELL_RULE, MOVE_RULE],
    )


def _move_comms(
    move: int, title: str, parties: list[str], letters: list[LetterTrack], people: frozenset[str]
) -> MoveComms:
    mine = [letter for letter in letters if letter.move == move]
    return MoveComms(
        move=move,
        title=title,
        matrix=matrix(parties, mine),
        parties=[party_comms(p, mine, letters, p in people) for p in parties],
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
    party: str, letters: list[LetterTrack], everything: list[LetterTrack], person: bool = False
) -> PartyComms:
    """One party's letters among `letters`; replies are looked for among `everything`."""
    received = [letter for letter in letters if letter.recipient == party]
    opened = [(letter, mark) for letter in received if (mark := letter.mark(State.OPENED))]
    replies = first_replies(party, everything)
    relayed = {letter.forwards for letter in everything if letter.sender == party}
    counted = {letter.label for letter in letters}
    return PartyComms(
        party=party,
        person=person,
        dwell=dwell(received) if person else None,
        sent=sum(letter.sender == party for letter in letters),
        received=len(received),
        opened=len(opened),
        returned_unopened=sum(bool(letter.mark(State.RETURNED_UNOPENED)) for letter in received),
        time_to_open=durations(
            [world_seconds(letter.world, mark.world) for letter, mark in opened]
        ),
        time_to_reply=durations(
            [_reply_seconds(*pair) for pair in replies.values() if pair[1].label in counted]
        ),
        relayed=[letter.label for letter, _ in opened if letter.label in relayed],
        unanswered=[
            letter.label
            for letter, _ in opened
            if letter.label not in replies and letter.label not in relayed
        ],
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
    return world_seconds(opened.world if opened else original.world, reply.world)


def dwell(received: list[LetterTrack]) -> Dwell:
    """Dwell of the letters a person received that reached their inbox."""
    spans = [t.dwell for letter in received if (t := letter.timing) and t.dwell]
    return Dwell(
        wall=durations([span.wall_s for span in spans if span.wall_s is not None]),
        exercise=durations([span.exercise_s for span in spans]),
    )


def durations(seconds: list[float]) -> Durations:
    return Durations(
        seconds=seconds,
        median=statistics.median(seconds) if seconds else None,
        max=max(seconds) if seconds else None,
    )
