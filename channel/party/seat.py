"""A seat in an exercise, as its player's client sees it: what control told it, the world
clock, its deadlines and the run's letter labels. The CLI (`watch`, `inbox`) and the desk
(`channel.party.desk.notices`) both read the seat through this model.

A keyring home that holds an exercise (`channel.party.exercise`) makes a seat of each party in
it. Letters from the run's control party are opened as they arrive (`Seat.receive`: like any
letter the seat opens, the content is archived in the keyring and control gets the signed
`opened` receipt) and read as notices (`channel.protocol.notice`). A letter from control that
is not a notice of this run stays an ordinary letter.

The notices give the seat its clock: the world time of a wall-clock moment is the latest
notice's (sent by then) world time plus the wall seconds since it was sent times its rate (0
while paused, and once ended); and the taskings' deadlines, each due at a world time. That
arithmetic is pure.

Outside an exercise there is no seat (`Seat.of` is None) and the commands behave as always.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from channel.party.exercise import ExerciseSeats, label_of, load_labels
from channel.protocol.canonical import parse_time
from channel.protocol.models import LetterContent
from channel.protocol.notice import Deadline, Notice, NoticeKind

if TYPE_CHECKING:
    from channel.party.client import Client
    from channel.party.keyring import Keyring
    from channel.protocol.seal import PartyKeys

CLOCK_KINDS = frozenset(
    {NoticeKind.STARTED, NoticeKind.PAUSED, NoticeKind.RESUMED, NoticeKind.SPEED, NoticeKind.ENDED}
)


@dataclass(frozen=True)
class Heard:
    """A notice control sent this seat, and when (the letter's time, signed by control)."""

    letter_id: str
    sent: datetime
    notice: Notice

    @classmethod
    def of(cls, content: LetterContent, control: str) -> Heard | None:
        notice = Notice.from_letter(content, control)
        if notice is None:
            return None
        return cls(content.letter_id, parse_time(content.sent_at), notice)

    @property
    def is_status(self) -> bool:
        """Pause, resume, speed, start and end: one status line, not a block."""
        return self.notice.kind in CLOCK_KINDS


@dataclass(frozen=True)
class Clock:
    """The exercise clock as the latest notice set it: world time `world` at wall time `at`."""

    world: datetime
    at: datetime
    rate: float  # world seconds per wall second; 0 while paused or once ended
    status: str  # the status line: "Running: world time at 60x wall time", "paused", "ended"
    ended: bool

    def world_at(self, wall: datetime) -> datetime:
        return self.world + timedelta(
            seconds=max((wall - self.at).total_seconds(), 0.0) * self.rate
        )


@dataclass(frozen=True)
class Due:
    """One of the seat's deadlines, as of a moment."""

    deadline: Deadline
    inject: str | None
    world_left: timedelta  # negative once passed
    wall_left: timedelta | None  # at the current speed; None while the clock stands still

    @classmethod
    def of(cls, deadline: Deadline, inject: str | None, clock: Clock, now: datetime) -> Due:
        """The deadline as of wall time `now`, by `clock`."""
        left = deadline.due - clock.world_at(now)
        wall = timedelta(seconds=left.total_seconds() / clock.rate) if clock.rate > 0 else None
        return cls(deadline, inject, left, wall)

    @property
    def passed(self) -> bool:
        return self.world_left <= timedelta(0)


def clock_of(heard: list[Heard], wall: datetime | None = None) -> Clock | None:
    """The clock the latest notice (of those sent by `wall`, if given) gives; None before the
    first. `heard` is oldest first."""
    if wall is not None:
        heard = [h for h in heard if h.sent <= wall]
    if not heard:
        return None
    latest = heard[-1]
    notice = latest.notice
    ended = any(h.notice.kind is NoticeKind.ENDED for h in heard)
    rate = 0.0 if ended else notice.rate
    if ended:
        status = "The exercise has ended"
    elif rate == 0:
        status = "Paused: the exercise clock stands still"
    else:
        status = f"Running: world time at {notice.rate:g}× wall time"
    return Clock(notice.world, latest.sent, rate, status, ended)


def world_time(heard: list[Heard], wall: datetime) -> datetime | None:
    """The world time at `wall` by the notices sent before it (None before the first)."""
    clock = clock_of(heard, wall)
    return None if clock is None else clock.world_at(wall)


def deadlines_of(heard: list[Heard], clock: Clock | None, now: datetime) -> list[Due]:
    """The taskings' deadlines, soonest first; a later tasking's deadline replaces an earlier
    one for the same expectation."""
    found: dict[str, tuple[Deadline, str | None]] = {}
    for item in heard:
        if item.notice.kind is NoticeKind.TASKING:
            for deadline in item.notice.deadlines:
                found[deadline.expectation] = (deadline, item.notice.inject)
    if clock is None:
        return []
    dues = [Due.of(deadline, inject, clock, now) for deadline, inject in found.values()]
    return sorted(dues, key=lambda d: d.deadline.due)


@dataclass(frozen=True)
class Seat:
    """One party of a keyring home that holds an exercise."""

    ring: Keyring
    keys: PartyKeys
    exercise: ExerciseSeats

    @classmethod
    def of(cls, ring: Keyring, keys: PartyKeys) -> Seat | None:
        """The seat `keys` holds, or None outside an exercise."""
        exercise = ExerciseSeats.load(ring.home)
        return None if exercise is None else cls(ring, keys, exercise)

    @property
    def control(self) -> str:
        return self.exercise.control

    def from_control(self, sender: str) -> bool:
        return sender == self.control

    def label(self, letter_id: str) -> str | None:
        """The run's label for a letter (`L3`); read afresh, as the run adds labels as it goes."""
        return label_of(load_labels(self.ring.home), letter_id)

    def labels(self) -> dict[str, str]:
        """Letter id -> label, for a listing."""
        return {letter_id: label for label, letter_id in load_labels(self.ring.home).items()}

    def notice_of(self, content: LetterContent) -> Heard | None:
        """The letter as a notice of this run from its control; None for any other letter."""
        heard = Heard.of(content, self.control)
        return heard if heard is not None and heard.notice.run == self.exercise.run else None

    def heard(self) -> list[Heard]:
        """The notices in this seat's archive from this run's control, oldest first."""
        found = (self.notice_of(content) for content in self.received())
        return sorted((h for h in found if h is not None), key=lambda h: h.sent)

    def received(self) -> list[LetterContent]:
        return self.ring.received(self.keys.name)

    def ended(self) -> Heard | None:
        """The run's end, if this seat already heard it."""
        return next((h for h in self.heard() if h.notice.kind is NoticeKind.ENDED), None)

    async def receive(self, client: Client, letter_id: str) -> LetterContent:
        """A letter from control, opened once with the seat's keys and archived; later calls
        (or a letter the seat's CLI or desk opened already) read the archive."""
        kept = self.ring.read_letter(self.keys, letter_id)
        if kept is not None:
            return kept
        status = await client.status(letter_id)
        # Control's key is pinned in the run's keyring: a different key offered is refused.
        await self.ring.vouch(client, status.envelope.sender)
        signed, _ = await client.open_letter(letter_id)
        self.ring.save_received(self.keys.name, signed)
        return signed.content
