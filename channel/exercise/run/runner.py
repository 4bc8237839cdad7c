"""The exercise runner: plays a scenario through the real courier and writes the event log.

One loop, one queue. Everything that will happen at a known exercise time sits in the schedule
(schedule.py); everything that arrives from outside (a human's letter or receipt seen on the live
event stream, a control-cell command) comes through the queue. The loop takes one thing at a
time, so the log has one order, and at speed `max` with bots in every seat that order depends
only on the scenario and the seed.

The runner wires the parts and does the courier's side: the schedule (timed actions, clocks),
the bots' turns (turns.py), the inject book (injects.py), expectations in play (scoring.py) and
the evidence log (evidence.py). Letters are real: sealed by the sending party's key, relayed and
receipted by the courier, opened or returned by the recipient's key. The runner holds every
party's keys (it made the exercise keyring) but only ever opens letters for bot seats; a human
seat's letters stay theirs.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from pathlib import Path
from typing import Any

from channel.exercise.author.clock import Clocks
from channel.exercise.author.scenario import Channel, Inject, Scenario, format_offset
from channel.exercise.escrow import marked
from channel.exercise.eventlog import EventLog, b64
from channel.exercise.run.bots import Letter, Outgoing
from channel.exercise.run.command import BadCommand, Command, RunStatus, parse_speed
from channel.exercise.run.evidence import EvidenceLog, Tracked, receipt_json
from channel.exercise.run.expectations import letter_facts, receipt_fact
from channel.exercise.run.injects import InjectBook
from channel.exercise.run.notices import Notices
from channel.exercise.run.schedule import Schedule
from channel.exercise.run.scoring import Scoring
from channel.exercise.run.turns import BotTurns
from channel.party.client import Client
from channel.protocol.errors import ChannelError
from channel.protocol.lifecycle import is_terminal
from channel.protocol.models import (
    LetterContent,
    LetterStatus,
    LiveEvent,
    Precedence,
    Receipt,
)
from channel.protocol.names import new_letter_id
from channel.protocol.notice import CONTROL_PARTY, NoticeKind
from channel.protocol.seal import escrow_content, sign_content

__all__ = ["Command", "Runner", "Tracked"]


class Runner:
    def __init__(
        self,
        scenario: Scenario,
        seats: dict[str, str],
        clients: dict[str, Client],
        clocks: Clocks,
        events: EventLog,
        *,
        seed: int,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        archive_key: bytes | None = None,
        escrow_dir: Path | None = None,
        labels_home: Path | None = None,
    ) -> None:
        self.scenario = scenario
        self.seats = seats  # party → human | control | bot:<policy>
        self.clients = clients
        self.clocks = clocks
        self.archive_key = archive_key  # escrow transcripts: the control cell's X25519 key
        self.escrow_dir = escrow_dir  # where people's `channel exercise send` leaves escrows
        self.schedule = Schedule(clocks, scenario.latency, seed)
        self.evidence = EvidenceLog(events, self.schedule, on_record, labels_home)
        self.book = InjectBook(scenario)
        self.scoring = Scoring(self.book, self.schedule, self.evidence, self._fire)
        self.turns = BotTurns(scenario, seats, seed, self.schedule, self.evidence, self._bot_send)
        self.queue: asyncio.Queue[Command | tuple[str, LiveEvent] | None] = asyncio.Queue()
        self._stop: str | None = None
        self.notices: Notices | None = None  # what control tells the people's seats (play.py)

    def write(
        self, kind: str, data: dict[str, Any], evidence: dict[str, Any] | None = None
    ) -> None:
        self.evidence.write(kind, data, evidence)

    def failed(self, party: str, action: str, exc: ChannelError) -> None:
        self.evidence.failed(party, action, exc)

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> str:
        """Play the scenario to its end (or until stopped); returns why it ended."""
        if self.notices:
            await self.notices.clock(NoticeKind.STARTED, self.schedule.now)
        self._schedule_start()
        while self._stop is None:
            await self._step()
        return self._stop

    def stop(self, reason: str) -> None:
        self._stop = reason
        self.queue.put_nowait(None)  # wakes a loop that waits for the queue (say, paused)

    async def _step(self) -> None:
        if not self.queue.empty():
            await self._external(self.queue.get_nowait())
            return
        wait = self.schedule.wait()
        if wait is None or wait > 0:
            try:
                item = await asyncio.wait_for(self.queue.get(), wait)
            except TimeoutError:
                return
            await self._external(item)
            return
        due = self.schedule.pop()
        await due.action(*due.args)

    def _schedule_start(self) -> None:
        first, *later = self.clocks.spans
        self.write("move_started", {"id": first.move.id, "title": first.move.title})
        for span in later:
            self.schedule.at(span.move.at, self._move, span.move.id, span.move.title)
        for inject in self.scenario.injects:
            t = self.clocks.scheduled(inject)
            if t is not None:
                self.schedule.at(t, self._fire, inject, "scheduled")
        self.turns.schedule_times()
        self.schedule.at(self.scenario.clock.end, self._end)

    async def _move(self, move_id: int, title: str) -> None:
        self.write("move_started", {"id": move_id, "title": title})

    async def _end(self) -> None:
        self.stop("end")

    # --- injects --------------------------------------------------------------------------------

    async def _fire(self, inject: Inject, cause: str) -> None:
        if not self.book.admit(inject, cause):
            return
        sender_seat = self.seats.get(inject.from_ or "", "control")
        if inject.channel is Channel.LETTER and sender_seat == "human":
            self.write("inject_tasked", _inject_data(inject) | {"party": inject.from_})
            self.scoring.open_windows(inject)
        else:
            labels = (
                [self.evidence.label() for _ in inject.to]
                if inject.channel is Channel.LETTER
                else []
            )
            data = _inject_data(inject) | {"cause": cause, "letters": labels or None}
            if inject.channel is not Channel.LETTER:
                data["text"] = inject.text
            self.write("inject_fired", data)
            self.scoring.open_windows(inject)
            for label, to in zip(labels, inject.to, strict=True):
                await self._send(
                    inject.from_ or "",
                    to,
                    inject.subject,
                    inject.text or inject.subject,
                    precedence=inject.precedence,
                    label=label,
                    inject=inject.id,
                )
        if self.notices:
            await self.notices.inject(inject, self.schedule.now)
        self.scoring.chain("inject", inject.id, "fired")
        if inject.channel is Channel.LETTER:
            await self.turns.heard(inject)
            return
        # A communiqué or wire item reaches the bots after its channel's latency (world time).
        self.schedule.after_latency(inject.channel, self.turns.heard, inject)

    # --- letters through the courier ------------------------------------------------------------

    async def _send(
        self,
        sender: str,
        to: str,
        subject: str,
        body: str,
        *,
        precedence: Precedence = Precedence.ROUTINE,
        label: str | None = None,
        inject: str | None = None,
        in_reply_to: str | None = None,
        forwards: str | None = None,
    ) -> None:
        label = label or self.evidence.label()
        tracked = Tracked(
            label,
            new_letter_id(),
            sender,
            to,
            by="bot" if sender in self.turns.bots else "control",
            subject=subject,
            in_reply_to=in_reply_to,
            inject=inject,
            forwards=forwards,
        )
        self.evidence.track(tracked)  # before sending: its live events must find it
        replied = self.evidence.letters[in_reply_to] if in_reply_to else None
        try:
            sealed, receipt = await self.clients[sender].send_letter(
                to,
                body,
                subject=self._marked(subject),
                precedence=precedence,
                letter_id=tracked.letter_id,
                in_reply_to=replied.letter_id if replied else None,
            )
        except ChannelError as exc:
            self.evidence.untrack(tracked)
            self.evidence.failed(sender, f"send {label} to {to}", exc)
            return
        tracked.seen.add(0)
        evidence = {
            "letter_id": tracked.letter_id,
            "envelope": sealed.envelope.model_dump(mode="json", exclude_none=True),
            "seal": b64(sealed.seal),
            "receipt": receipt_json(receipt),
        }
        self._letter_sent(tracked, sealed.envelope.ciphertext_size, precedence, evidence)
        if self.archive_key is not None:
            content = LetterContent(
                letter_id=tracked.letter_id,
                sender=sender,
                recipient=to,
                sent_at=sealed.envelope.sent_at,
                subject=self._marked(subject),
                body=body,
            )
            signed = sign_content(self.clients[sender].me, content)
            self.evidence.escrowed(tracked, escrow_content(signed, self.archive_key))

    async def _bot_send(self, party: str, letter: Outgoing) -> None:
        await self._send(
            party,
            letter.to,
            letter.subject,
            letter.body,
            precedence=letter.precedence,
            in_reply_to=letter.in_reply_to,
            forwards=letter.forwards,
        )

    def _letter_sent(
        self, tracked: Tracked, size: int, precedence: Precedence, evidence: dict[str, Any]
    ) -> None:
        """Record a letter the exercise has seen sent; it meets expectations and, unless a
        person receives it, reaches its recipient after the courier's latency."""
        self.evidence.letter_sent(tracked, size, precedence, evidence)
        letters = self.evidence.letters
        replies_to = letters[tracked.in_reply_to].sender if tracked.in_reply_to else None
        for fact in letter_facts(tracked.label, tracked.sender, tracked.recipient, replies_to):
            self.scoring.seen(fact, tracked)
        if self.seats[tracked.recipient] != "human":
            self.schedule.after_latency(Channel.LETTER, self._arrive, tracked.label)

    def _marked(self, subject: str) -> str:
        return marked(self.scenario.marking, subject)

    def _unmarked(self, subject: str) -> str:
        return subject.removeprefix(f"{self.scenario.marking.strip()} — ")

    async def _arrive(self, label: str) -> None:
        """The simulated courier latency has passed: the recipient's inbox shows the envelope."""
        tracked = self.evidence.letters[label]
        if is_terminal(tracked.state):
            return
        client = self.clients[tracked.recipient]
        try:
            await client.inbox()
            status = await client.verified_status(tracked.letter_id)
        except ChannelError as exc:
            self.evidence.failed(tracked.recipient, f"receive {label}", exc)
            return
        await self._receipts(tracked, status.receipts)
        if tracked.recipient not in self.turns.bots:
            return  # a control seat: the envelope waits for the controllers
        self.turns.arrived(tracked, self._decide)

    async def _decide(self, label: str) -> None:
        tracked = self.evidence.letters[label]
        arrival = tracked.arrival
        if arrival is None or is_terminal(tracked.state):
            return
        choice = self.turns.decide(tracked, arrival)
        client = self.clients[tracked.recipient]
        try:
            if not choice.open:
                await self._receipts(
                    tracked, await client.return_letter(tracked.letter_id, choice.reason)
                )
                return
            content, opened = await client.open_letter(tracked.letter_id)
        except ChannelError as exc:
            self.evidence.failed(tracked.recipient, f"decide on {label}", exc)
            return
        tracked.opened = content
        await self._receipts(tracked, opened.receipts)
        letter = Letter(
            label,
            tracked.sender,
            tracked.recipient,
            subject=self._unmarked(content.content.subject),
            body=content.content.body,
        )
        self.turns.opened(tracked, arrival, letter)

    async def _receipts(self, tracked: Tracked, receipts: list[Receipt]) -> None:
        """Log each receipt not yet seen, in order, and let it meet expectations and move bots."""
        for receipt in sorted(receipts, key=lambda r: r.seq):
            if receipt.seq in tracked.seen:
                continue
            tracked.seen.add(receipt.seq)
            tracked.state = receipt.event
            if receipt.seq == 0:
                continue
            self.evidence.receipt(tracked, receipt)
            event = receipt.event.value
            fact = receipt_fact(tracked.label, event, tracked.sender, tracked.recipient)
            if fact is not None:
                self.scoring.seen(fact, tracked)
            self.turns.receipt(tracked, event)

    # --- the outside world: live events and control commands --------------------------------------

    async def _external(self, item: Command | tuple[str, LiveEvent] | None) -> None:
        if item is None:
            return
        self.schedule.catch_up()
        if isinstance(item, Command):
            await self._command(item)
        else:
            await self._observe(*item)

    async def _observe(self, party: str, event: LiveEvent) -> None:
        """A letter or receipt seen on a human or control seat's live event stream."""
        if CONTROL_PARTY in (event.sender, event.recipient):
            return  # a notice from control (run/notices.py), not an exercise letter
        tracked = self.evidence.by_id.get(event.letter_id)
        if tracked is not None and event.seq in tracked.seen:
            return
        try:
            status = await self.clients[party].verified_status(event.letter_id)
        except ChannelError as exc:
            self.evidence.failed(party, f"look up letter {event.letter_id}", exc)
            return
        if tracked is None:
            tracked = self._observed_letter(status)
        await self._receipts(tracked, status.receipts)

    def _observed_letter(self, status: LetterStatus) -> Tracked:
        env = status.envelope
        replied = self.evidence.by_id.get(env.in_reply_to) if env.in_reply_to else None
        tracked = Tracked(
            self.evidence.label(),
            env.id,
            env.sender,
            env.recipient,
            by=self.seats.get(env.sender, "outsider").split(":")[0],
            in_reply_to=replied.label if replied else None,
        )
        self.evidence.track(tracked)
        tracked.seen.add(0)
        evidence = {
            "letter_id": env.id,
            "envelope": env.model_dump(mode="json", exclude_none=True),
            "seal": b64(status.seal),
            "receipt": receipt_json(status.receipts[0]),
        }
        self._letter_sent(tracked, env.ciphertext_size, env.precedence, evidence)
        escrow = self.escrow_dir / f"{env.id}.bin" if self.escrow_dir else None
        if self.archive_key is not None and escrow is not None and escrow.is_file():
            self.evidence.escrowed(tracked, escrow.read_bytes())
        return tracked

    async def _command(self, command: Command) -> None:
        try:
            result = await self._apply_command(command.name, command.argument)
        except ChannelError as exc:
            if not command.reply.done():
                command.reply.set_exception(exc)
            return
        if not command.reply.done():
            command.reply.set_result(result)

    async def _apply_command(self, name: str, argument: str | None) -> RunStatus:
        if name == "status":
            return self.status()
        if name in ("pause", "resume"):
            changed = self.clocks.pause() if name == "pause" else self.clocks.resume()
            # The answer says when the command took effect, before the notices go out.
            status = self.status(changed=changed, at=self.schedule.now)
            if changed:
                self.write("control", {"command": name})
                if self.notices:
                    kind = NoticeKind.PAUSED if name == "pause" else NoticeKind.RESUMED
                    await self.notices.clock(kind, self.schedule.now)
            return status
        if name == "speed":
            speed = parse_speed(argument)
            self.clocks.set_speed(speed)
            self.write("control", {"command": "speed", "argument": argument})
            status = self.status(at=self.schedule.now)
            if self.notices:
                await self.notices.speed(self.schedule.now)
            return status
        inject = self.book.find(argument)
        return await self._inject_command(name, inject)

    async def _inject_command(self, name: str, inject: Inject) -> RunStatus:
        self.book.refuse_fired(inject)
        if name == "fire":
            self.write("control", {"command": "fire", "argument": inject.id})
            await self._fire(inject, "control")
        elif name == "skip":
            self.book.skip(inject)
            self.write("inject_skipped", {"inject": inject.id, "by": "control"})
        elif name == "hold":
            self.book.hold(inject)
            self.write("inject_held", {"inject": inject.id, "by": "control"})
        elif name == "release":
            due = self.book.release(inject)
            self.write("inject_released", {"inject": inject.id, "by": "control"})
            if due:
                await self._fire(inject, "control")
        else:
            raise BadCommand(f"unknown command {name!r}")
        return self.status(at=self.schedule.now)

    def status(self, *, changed: bool | None = None, at: float | None = None) -> RunStatus:
        """The run now, or, for a command's answer, `at` the moment it took effect (as logged)."""
        speed = self.clocks.speed
        now = self.clocks.now() if at is None else at
        return RunStatus(
            changed=changed,
            exercise=format_offset(now),
            world=self.clocks.stamp(now).world,
            move=self.clocks.span_at(now).move.id,
            paused=self.clocks.paused,
            speed="max" if speed is None else speed,
            fired=sorted(self.book.fired),
            held=sorted(self.book.held),
            skipped=sorted(self.book.skipped),
            next=self.book.pending(self.clocks)[:5],
            letters=len(self.evidence.letters),
        )

    # --- the end ----------------------------------------------------------------------------------

    async def finish(self, reason: str, releases: bool) -> None:
        """Close open windows, release (post_release), record every letter's final status."""
        self.schedule.settle()
        if self.notices:
            await self.notices.ended(reason, self.schedule.now)
        await self.scoring.close()
        if releases:
            self.evidence.released()
        for tracked in list(self.evidence.letters.values()):
            await self._final(tracked)
        counts = self.book.ended(len(self.evidence.letters))
        self.write("run_ended", {"reason": reason} | counts, {"head": self.evidence.log.head})

    async def _final(self, tracked: Tracked) -> None:
        try:
            status = await self.clients[tracked.sender].verified_status(tracked.letter_id)
        except ChannelError as exc:
            self.evidence.failed(tracked.sender, f"final status of {tracked.label}", exc)
            return
        await self._receipts(tracked, status.receipts)
        self.evidence.letter_final(tracked, status)


def _inject_data(inject: Inject) -> dict[str, Any]:
    return {
        "inject": inject.id,
        "channel": inject.channel.value,
        "from": inject.from_,
        "to": list(inject.to),
        "subject": inject.subject,
        "action": inject.action or None,
    }
