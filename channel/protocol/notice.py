"""Exercise notices: what an exercise's control cell tells the seats, as ordinary sealed letters.

During an exercise the control cell is a party of its own (`CONTROL_PARTY`). Taskings,
communiqués, wire news, and the run's pause, resume, speed changes and end reach each person's
seat as letters from it: sealed to the seat and signed by control like any letter, so a player
can prove what control told them and when, and the courier still reads nothing.

A notice's body is a block of `Name: value` header lines, a blank line, then the text, so it
reads well in any client (`channel open`) and parses exactly here. Only a letter whose sender is
the seat's exercise control party is ever taken for a notice (`Notice.from_letter`): any other
party can write the same lines, and they stay an ordinary letter.

Each notice carries the exercise clock as it stood when it was sent (world time, exercise
offset, and how fast world time runs against the wall: 0 while paused), so a client can show
the world time now without asking control (`channel.party.seat.clock_of`).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from channel.protocol.canonical import format_time
from channel.protocol.models import LetterContent

CONTROL_PARTY = "exercise.control"  # the control cell's party in every run
FORMAT = "1"  # the value of the `Backchannel-Notice` header this module writes and reads


class NoticeKind(StrEnum):
    STARTED = "started"
    TASKING = "tasking"  # a letter inject from the person's own seat: what control expects
    COMMUNIQUE = "communique"  # a public statement by a party in the story
    NEWS = "news"  # a wire item
    PAUSED = "paused"
    RESUMED = "resumed"
    SPEED = "speed"
    ENDED = "ended"


_TITLES = {
    NoticeKind.STARTED: "Exercise started",
    NoticeKind.TASKING: "Tasking",
    NoticeKind.COMMUNIQUE: "Communiqué",
    NoticeKind.NEWS: "News",
    NoticeKind.PAUSED: "Exercise paused",
    NoticeKind.RESUMED: "Exercise resumed",
    NoticeKind.SPEED: "Exercise speed changed",
    NoticeKind.ENDED: "Exercise ended",
}


class Deadline(BaseModel):
    """An expectation a tasking opens: what to do, by when in world time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    expectation: Annotated[str, Field(min_length=1, max_length=64, pattern=r"^\S+$")]
    due: datetime  # world time
    text: str = ""


class Notice(BaseModel):
    """One notice, as control wrote it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: NoticeKind
    run: Annotated[str, Field(min_length=1, max_length=200)]
    world: datetime  # world (story) time when sent
    offset: Annotated[float, Field(ge=0)]  # exercise seconds since T+0 when sent
    rate: Annotated[float, Field(ge=0)]  # world seconds per wall second now; 0 while paused
    marking: str = ""
    inject: str | None = None  # the MSEL control number, for taskings, communiqués and news
    author: str | None = None  # the party in the story a communiqué is from
    deadlines: tuple[Deadline, ...] = ()
    title: str = ""
    text: str = ""

    @property
    def heading(self) -> str:
        """`Tasking INJ-02: Ask the Swiss`: the line lists and live views show."""
        head = _TITLES[self.kind]
        if self.inject:
            head = f"{head} {self.inject}"
        return f"{head}: {self.title}" if self.title else head

    def subject(self) -> str:
        return f"{self.marking} — {self.heading}" if self.marking else self.heading

    def body(self) -> str:
        lines = [
            f"Backchannel-Notice: {FORMAT}",
            f"Kind: {self.kind.value}",
            f"Run: {self.run}",
            f"World-Time: {format_time(self.world)}",
            f"Exercise-Offset: {self.offset:.3f}",
            f"World-Rate: {self.rate:g}",
        ]
        if self.marking:
            lines.append(f"Marking: {_one_line(self.marking)}")
        if self.inject:
            lines.append(f"Inject: {self.inject}")
        if self.author:
            lines.append(f"Author: {self.author}")
        for deadline in self.deadlines:
            text = f" {_one_line(deadline.text)}" if deadline.text else ""
            lines.append(f"Deadline: {deadline.expectation} {format_time(deadline.due)}{text}")
        if self.title:
            lines.append(f"Title: {_one_line(self.title)}")
        return "\n".join(lines) + "\n\n" + self.text

    @classmethod
    def parse(cls, body: str) -> Notice | None:
        """The notice a body holds, or None when it is not one (or not one this version reads)."""
        head, _, text = body.partition("\n\n")
        fields: dict[str, str] = {}
        deadlines: list[Deadline] = []
        try:
            for line in head.split("\n"):
                name, sep, value = line.partition(": ")
                if not sep:
                    return None
                if name == "Deadline":
                    expectation, _, rest = value.partition(" ")
                    due, _, what = rest.partition(" ")
                    deadlines.append(
                        Deadline(
                            expectation=expectation, due=datetime.fromisoformat(due), text=what
                        )
                    )
                elif name in fields:
                    return None
                else:
                    fields[name] = value
            if fields.pop("Backchannel-Notice", None) != FORMAT:
                return None
            notice = cls(
                kind=NoticeKind(fields.pop("Kind")),
                run=fields.pop("Run"),
                world=datetime.fromisoformat(fields.pop("World-Time")),
                offset=float(fields.pop("Exercise-Offset")),
                rate=float(fields.pop("World-Rate")),
                marking=fields.pop("Marking", ""),
                inject=fields.pop("Inject", None),
                author=fields.pop("Author", None),
                title=fields.pop("Title", ""),
                deadlines=tuple(deadlines),
                text=text,
            )
        except (KeyError, ValueError, ValidationError):
            return None
        # A header this version does not know means a newer format: better unread than misread.
        return None if fields else notice

    @classmethod
    def from_letter(cls, content: LetterContent, control: str = CONTROL_PARTY) -> Notice | None:
        """The notice in a letter, only if the exercise's control party sent it."""
        if content.sender != control:
            return None
        return cls.parse(content.body)


def _one_line(text: str) -> str:
    return " ".join(text.split())
