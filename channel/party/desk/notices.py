"""What the exercise's control cell told this seat, as the desk files and shows it.

In a keyring home that holds an exercise (`channel.party.exercise.ExerciseSeats`), letters
from the run's control party are opened as they arrive, with the seat's own keys (control gets
the signed `opened` receipt, the content is archived in the keyring as for any letter opened),
and read as notices (`channel.protocol.notice`). They are filed apart from the letters: the
inbox leaves them out, the "From control" page lists them. A letter from control that is not a
notice of this run stays an ordinary letter; one the desk could not open is listed with why.

The notices also give the seat its clock: world time now is the latest notice's world time
plus the wall seconds since it was sent times its rate (0 while paused, and once ended), and
the taskings' deadlines, each due at a world time.

`ControlDesk.receive` (open a letter from control and archive it, once) is the shared helper
the desk uses; the clock and deadline arithmetic below it is pure.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import structlog

from channel.party.client import Client
from channel.party.exercise import ExerciseSeats, load_labels
from channel.party.keyring import Keyring
from channel.protocol.canonical import parse_time
from channel.protocol.errors import ChannelError
from channel.protocol.lifecycle import State
from channel.protocol.models import LetterContent
from channel.protocol.notice import INJECT_KINDS, Deadline, Notice, NoticeKind
from channel.protocol.seal import PartyKeys

log = structlog.get_logger("channel.party.desk.notices")
_SCAN = 500  # letters from the courier's inbox listing looked at per sweep
CLOCK_KINDS = frozenset(
    {NoticeKind.STARTED, NoticeKind.PAUSED, NoticeKind.RESUMED, NoticeKind.SPEED, NoticeKind.ENDED}
)


@dataclass(frozen=True)
class Heard:
    """A notice control sent this seat, and when (the letter's time, signed by control)."""

    letter_id: str
    sent: datetime
    notice: Notice

    @property
    def is_status(self) -> bool:
        """Pause, resume, speed, start and end: one status line, not a block."""
        return self.notice.kind in CLOCK_KINDS

    @property
    def is_inject(self) -> bool:
        return self.notice.kind in INJECT_KINDS


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

    @property
    def passed(self) -> bool:
        return self.world_left <= timedelta(0)


def clock_of(heard: list[Heard]) -> Clock | None:
    """The clock the latest notice gives (None before the first)."""
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
    world_now = clock.world_at(now)
    dues = []
    for deadline, inject in found.values():
        left = deadline.due - world_now
        wall = timedelta(seconds=left.total_seconds() / clock.rate) if clock.rate > 0 else None
        dues.append(Due(deadline, inject, left, wall))
    return sorted(dues, key=lambda d: d.deadline.due)


def span(delta: timedelta) -> str:
    """`45s`, `4m10s`, `2h05m`, `3d4h`: an interval for people."""
    whole = round(abs(delta.total_seconds()))
    if whole < 60:
        return f"{whole}s"
    if whole < 3600:
        return f"{whole // 60}m{whole % 60:02d}s"
    if whole < 86400:
        return f"{whole // 3600}h{whole % 3600 // 60:02d}m"
    return f"{whole // 86400}d{whole % 86400 // 3600}h"


@dataclass
class ControlDesk:
    """The notices of one seat: opened as they come, kept in memory for the pages."""

    ring: Keyring
    keys: PartyKeys
    exercise: ExerciseSeats
    heard: list[Heard] = field(default_factory=list)  # oldest first
    ordinary: set[str] = field(default_factory=set)  # letters from control that are no notice
    failed: dict[str, str] = field(default_factory=dict)  # letter id -> why it was not opened
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def control(self) -> str:
        return self.exercise.control

    def labels(self) -> dict[str, str]:
        """Letter id -> the run's label (`L3`); read afresh, as the run adds labels."""
        return {letter_id: label for label, letter_id in load_labels(self.ring.home).items()}

    def files_apart(self, sender: str, letter_id: str) -> bool:
        """Whether the inbox leaves this letter out (a notice, or one being filed)."""
        return (
            sender == self.control
            and letter_id not in self.ordinary
            and letter_id not in self.failed
        )

    async def sweep(self, client: Client) -> bool:
        """Open every letter from control not yet read; whether anything new was filed."""
        async with self._lock:
            known = {h.letter_id for h in self.heard} | self.ordinary
            new = False
            for letter in await client.inbox(_SCAN):
                if letter.sender != self.control or letter.id in known:
                    continue
                if letter.state not in (State.ACCEPTED, State.DELIVERED, State.OPENED):
                    continue
                try:
                    content = await self.receive(client, letter.id)
                except ChannelError as exc:  # e.g. control's key differs from the one pinned
                    if self.failed.get(letter.id) != exc.detail:
                        log.warning("notice_not_opened", letter=letter.id, error=exc.detail)
                        self.failed[letter.id] = exc.detail
                        new = True
                    continue
                self.failed.pop(letter.id, None)
                self._file(content)
                new = True
            self.heard.sort(key=lambda h: h.sent)
            return new

    async def receive(self, client: Client, letter_id: str) -> LetterContent:
        """A letter from control, opened once with the seat's keys and archived; later calls
        (or a letter the seat's CLI opened already) read the archive."""
        kept = self.ring.read_letter(self.keys, letter_id)
        if kept is not None:
            return kept
        status = await client.status(letter_id)
        # Control's key is pinned in the run's keyring: a different key offered is refused.
        await self.ring.vouch(client, status.envelope.sender)
        signed, _ = await client.open_letter(letter_id)
        self.ring.save_received(self.keys.name, signed)
        return signed.content

    def _file(self, content: LetterContent) -> None:
        notice = Notice.from_letter(content, self.control)
        if notice is None or notice.run != self.exercise.run:
            self.ordinary.add(content.letter_id)
            return
        self.heard.append(Heard(content.letter_id, parse_time(content.sent_at), notice))
