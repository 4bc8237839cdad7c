"""Tell the people's seats what control says: notices as sealed letters from the control cell.

Every run has a control party of its own (`exercise.control`, `channel.protocol.notice`). Its
private keys stay in the run folder (`RUN/control/`), outside the keyring home the players use
(`RUN/keyring`), where only its public key is pinned, so a player's client verifies every
notice and no player can write one.

What goes to whom (bots and control seats get none: bots hear injects from the runner):

- a `letter` inject from a seat a person plays: a *tasking* to that seat (the action and body,
  with each expectation's deadline in world time);
- a communiqué or wire item: every people's seat it addresses (`to` empty: all of them);
- the run's start, pause, resume, speed changes and end: every people's seat.

Each notice sent is logged as a `notice_sent` record. Notices are not exercise letters: the
runner ignores them on the people's streams and the report does not count them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from datetime import timedelta
from pathlib import Path
from typing import Any

import structlog

from channel.exercise.author.clock import Clocks
from channel.exercise.author.scenario import Channel, Check, Inject, Scenario
from channel.exercise.eventlog import b64
from channel.party.client import Client
from channel.party.exercise import ExerciseSeats
from channel.party.keyring import Keyring
from channel.protocol.errors import ChannelError, NameTaken
from channel.protocol.models import LetterContent
from channel.protocol.names import new_letter_id
from channel.protocol.notice import CONTROL_PARTY, Deadline, Notice, NoticeKind
from channel.protocol.seal import escrow_content, sign_content

log = structlog.get_logger("channel.exercise")
CONTROL_DIR = "control"  # in the run folder: the control party's own keyring (0700, files 0600)
Write = Callable[[str, dict[str, Any], dict[str, Any] | None], None]

_CLOCK_TEXT = {
    NoticeKind.STARTED: "The exercise has started.",
    NoticeKind.PAUSED: "Control paused the exercise: world time stands still until it resumes.",
    NoticeKind.RESUMED: "Control resumed the exercise: world time runs again.",
}
_ENDED_TEXT = {
    "end": "The exercise has ended: the clock reached its end.",
    "interrupted": "Control ended the exercise early.",
}


def people(seats: dict[str, str]) -> tuple[str, ...]:
    """The seats people play, in the scenario's order."""
    return tuple(name for name, seat in seats.items() if seat == "human")


async def cast_control(
    base: Client, out: Path, players: Keyring, courier_key: bytes, url: str
) -> Client:
    """Make and register the control party; pin its public key in the players' keyring.

    Its private keys go to `RUN/control/`, never to the players' keyring home.
    """
    keys = Keyring(out / CONTROL_DIR).new(CONTROL_PARTY)
    players.pin_contact(keys.public())
    control = base.as_party(keys)
    control.trust_courier(courier_key)
    for name in players.names():
        control.trust(players.public(name))
    try:
        await control.register()
    except NameTaken:
        raise NameTaken(
            f"{CONTROL_PARTY} is already registered on {url} with other keys: "
            "each exercise needs a courier where the control cell's party is its own"
        ) from None
    return control


def save_seats(home: Path, run: str, scenario: Scenario, seats: dict[str, str]) -> None:
    """`exercise.json` in the players' keyring home: the run, its marking, control, people."""
    ExerciseSeats(
        run=run, title=scenario.title, marking=scenario.marking, people=people(seats)
    ).save(home)


class Notices:
    """Builds each notice from an inject and the clocks, and sends it to the seats it concerns."""

    def __init__(
        self,
        control: Client,
        scenario: Scenario,
        seats: dict[str, str],
        clocks: Clocks,
        write: Write,
        *,
        run: str,
        archive_key: bytes | None = None,
    ) -> None:
        self.control = control
        self.scenario = scenario
        self.people = people(seats)
        self.clocks = clocks
        self.write = write
        self.run = run
        self.archive_key = archive_key  # escrow transcripts: notices are sealed to it too

    # --- what the runner calls --------------------------------------------------------------------

    async def inject(self, inject: Inject, now: float) -> None:
        """An inject fired: a tasking, communiqué or wire item for the people's seats concerned."""
        if inject.channel is Channel.LETTER:
            if inject.from_ not in self.people:
                return  # a bot's or control seat's letter: a real letter, no notice
            text = "\n\n".join(part for part in (inject.action, inject.text) if part)
            world = self.clocks.world_at(now)
            deadlines = tuple(
                Deadline(
                    expectation=exp.id, due=world + timedelta(seconds=exp.within), text=exp.text
                )
                for exp in inject.expect
                # The seat's own deadlines: what it must write, open, return or answer.
                if (exp.from_ if exp.check is Check.SENT else exp.to) == inject.from_
            )
            notice = self.notice(NoticeKind.TASKING, now, inject, text=text, deadlines=deadlines)
            await self._send(notice, (inject.from_,))
            return
        kind = NoticeKind.COMMUNIQUE if inject.channel is Channel.COMMUNIQUE else NoticeKind.NEWS
        seats = [seat for seat in self.people if not inject.to or seat in inject.to]
        author = inject.from_ if kind is NoticeKind.COMMUNIQUE else None
        notice = self.notice(kind, now, inject, text=inject.text, author=author)
        await self._send(notice, seats)

    async def clock(self, kind: NoticeKind, now: float, *, text: str = "") -> None:
        """The run started, paused, resumed or changed speed: every people's seat hears it."""
        title = self.scenario.title if kind is NoticeKind.STARTED else ""
        await self._send(
            self.notice(kind, now, title=title, text=text or _CLOCK_TEXT.get(kind, "")),
            self.people,
        )

    async def speed(self, now: float) -> None:
        speed = self.clocks.speed
        said = "as fast as events allow" if speed is None else f"{speed:g}× the wall clock"
        await self.clock(NoticeKind.SPEED, now, text=f"Exercise time now runs at {said}.")

    async def ended(self, reason: str, now: float) -> None:
        """The run ends (any way it ends): sent before the courier stops."""
        text = _ENDED_TEXT.get(reason, f"The exercise has ended ({reason}).")
        await self.clock(NoticeKind.ENDED, now, text=text)

    # --- building and sending ---------------------------------------------------------------------

    def notice(
        self,
        kind: NoticeKind,
        now: float,
        inject: Inject | None = None,
        *,
        title: str = "",
        text: str = "",
        author: str | None = None,
        deadlines: tuple[Deadline, ...] = (),
    ) -> Notice:
        """The notice with the clocks as they stand at exercise time `now` (the runner's time,
        so a notice's world time is the world time its inject's log record shows)."""
        return Notice(
            kind=kind,
            run=self.run,
            world=self.clocks.world_at(now),
            offset=now,
            rate=self.rate(),
            marking=self.scenario.marking.strip(),
            inject=inject.id if inject else None,
            author=author,
            deadlines=deadlines,
            title=inject.subject if inject else title,
            text=text,
        )

    def rate(self) -> float:
        """World seconds per wall second: 0 while paused, and at speed max, where world time
        jumps from one event to the next (no client can extrapolate it)."""
        speed = self.clocks.speed
        if self.clocks.paused or speed is None:
            return 0.0
        return self.scenario.clock.speed * speed

    async def _send(self, notice: Notice, seats: Iterable[str]) -> None:
        for seat in seats:
            await self._send_one(notice, seat)

    async def _send_one(self, notice: Notice, seat: str) -> None:
        letter_id = new_letter_id()
        subject, body = notice.subject(), notice.body()
        try:
            sealed, receipt = await self.control.send_letter(
                seat, body, subject=subject, letter_id=letter_id
            )
        except ChannelError as exc:
            action = f"send the {notice.kind.value} notice to {seat}"
            log.warning("exercise_notice_failed", party=seat, action=action, error=exc.detail)
            self.write(
                "action_failed",
                {"party": CONTROL_PARTY, "action": action, "error": exc.detail},
                None,
            )
            return
        evidence: dict[str, Any] = {
            "letter_id": letter_id,
            "envelope": sealed.envelope.model_dump(mode="json", exclude_none=True),
            "seal": b64(sealed.seal),
            "receipt": receipt.model_dump(mode="json", exclude_none=True),
        }
        if self.archive_key is not None:
            content = LetterContent(
                letter_id=letter_id,
                sender=CONTROL_PARTY,
                recipient=seat,
                sent_at=sealed.envelope.sent_at,
                subject=subject,
                body=body,
            )
            signed = sign_content(self.control.me, content)
            evidence["archive"] = b64(escrow_content(signed, self.archive_key))
        data = {
            "kind": notice.kind.value,
            "inject": notice.inject,
            "party": seat,
            "subject": notice.heading,
        }
        self.write("notice_sent", data, evidence)
