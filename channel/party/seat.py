"""A seat in an exercise, as its player's client sees it: control's notices, the world clock
and the run's letter labels.

A keyring home that holds an exercise (`channel.party.exercise`) makes a seat of each party in
it. Letters from the run's control party are opened as they arrive (like any letter the seat
opens: the content is archived in the keyring and control gets the signed `opened` receipt) and
read as notices (`channel.protocol.notice`). The notices in the seat's archive give its world
clock: the world time of any wall-clock moment is worked out from the latest notice sent before
it, at that notice's rate.

Outside an exercise there is no seat (`Seat.of` is None) and the commands behave as always.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from channel.party.exercise import ExerciseSeats, label_of, load_labels
from channel.protocol.canonical import parse_time
from channel.protocol.models import LetterContent
from channel.protocol.notice import Notice, NoticeKind

if TYPE_CHECKING:
    from channel.party.client import Client
    from channel.party.keyring import Keyring
    from channel.protocol.seal import PartyKeys


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

    def world_at(self, wall: datetime) -> datetime:
        """World time at the wall-clock moment `wall`, by this notice's clock."""
        return self.notice.world_at((wall - self.sent).total_seconds())


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

    def from_control(self, sender: str) -> bool:
        return sender == self.exercise.control

    def label(self, letter_id: str) -> str | None:
        """The run's label for a letter (`L3`); read afresh, as the run adds labels as it goes."""
        return label_of(load_labels(self.ring.home), letter_id)

    def labels(self) -> dict[str, str]:
        """Letter id -> label, for a listing."""
        return {letter_id: label for label, letter_id in load_labels(self.ring.home).items()}

    def heard(self) -> list[Heard]:
        """The notices in this seat's archive from this run's control, oldest first."""
        found = (Heard.of(content, self.exercise.control) for content in self.received())
        return sorted(
            (h for h in found if h is not None and h.notice.run == self.exercise.run),
            key=lambda h: h.sent,
        )

    def received(self) -> list[LetterContent]:
        return self.ring.received(self.keys.name)

    def ended(self) -> Heard | None:
        """The run's end, if this seat already heard it."""
        return next((h for h in self.heard() if h.notice.kind is NoticeKind.ENDED), None)

    async def receive(self, client: Client, letter_id: str) -> LetterContent:
        """A letter from control, opened (once: later calls read the archive) and archived."""
        kept = self.ring.read_letter(self.keys, letter_id)
        if kept is not None:
            return kept
        status = await client.status(letter_id)
        # Control's key is pinned in the run's keyring: a different key offered is refused.
        await self.ring.vouch(client, status.envelope.sender)
        signed, _ = await client.open_letter(letter_id)
        self.ring.save_received(self.keys.name, signed)
        return signed.content


def world_time(heard: list[Heard], wall: datetime) -> datetime | None:
    """The world time at `wall` by the latest notice sent before it (None before the first)."""
    latest = None
    for item in heard:
        if item.sent <= wall:
            latest = item
    return None if latest is None else latest.world_at(wall)
