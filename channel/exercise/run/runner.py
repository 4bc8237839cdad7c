"""The exercise runner: plays a scenario through the real courier and writes the event log.

One loop, one queue. Everything that will happen at a known exercise time (a move, an inject, a
letter reaching a bot, a bot's decision, a deadline) sits in a schedule ordered by time and then
by the order it was scheduled; everything that arrives from outside (a human's letter or receipt
seen on the live event stream, a control-cell command) comes through the queue. The loop takes
one thing at a time, so the log has one order, and at speed `max` with bots in every seat that
order depends only on the scenario and the seed.

Letters are real: sealed by the sending party's key, relayed and receipted by the courier, opened
or returned by the recipient's key. The runner holds every party's keys (it made the exercise
keyring) but only ever opens letters for bot seats; a human seat's letters stay theirs.
"""

from __future__ import annotations

import asyncio
import heapq
import random
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from channel.exercise.author.clock import Clocks
from channel.exercise.author.scenario import Channel, Inject, Scenario, format_offset
from channel.exercise.escrow import marked
from channel.exercise.eventlog import EventLog, b64
from channel.exercise.run.bots import Arrival, Bot, Letter, Outgoing, Reaction, sample
from channel.exercise.run.expectations import (
    Expectations,
    Outcome,
    Window,
    letter_facts,
    receipt_fact,
)
from channel.exercise.run.notices import Notices
from channel.party.client import Client
from channel.protocol.errors import ChannelError
from channel.protocol.lifecycle import State, is_terminal
from channel.protocol.models import (
    LetterContent,
    LetterStatus,
    LiveEvent,
    Precedence,
    Receipt,
    SignedContent,
)
from channel.protocol.names import new_letter_id
from channel.protocol.notice import CONTROL_PARTY, NoticeKind
from channel.protocol.seal import escrow_content, sign_content

log = structlog.get_logger("channel.exercise")
Action = Callable[..., Awaitable[None]]


@dataclass
class Tracked:
    """A letter the exercise has seen, by label."""

    label: str
    letter_id: str
    sender: str
    recipient: str
    by: str
    subject: str | None = None
    in_reply_to: str | None = None
    inject: str | None = None
    forwards: str | None = None  # the label of the letter this one passes on
    state: State = State.ACCEPTED
    seen: set[int] = field(default_factory=set)
    arrival: Arrival | None = None
    opened: SignedContent | None = None  # once a bot opened it (post_release publishes it)


@dataclass(order=True)
class _Due:
    t: float
    order: int
    action: Action = field(compare=False)
    args: tuple[Any, ...] = field(compare=False)


@dataclass(frozen=True)
class Command:
    """A control-cell command, answered through `reply`."""

    name: str
    argument: str | None
    reply: asyncio.Future[dict[str, Any]]


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
    ) -> None:
        self.scenario = scenario
        self.seats = seats  # party → human | control | bot:<policy>
        self.clients = clients
        self.clocks = clocks
        self.log = events
        self.seed = seed
        self.on_record = on_record
        self.archive_key = archive_key  # escrow transcripts: the control cell's X25519 key
        self.escrow_dir = escrow_dir  # where people's `channel exercise send` leaves escrows
        self.bots = {
            name: Bot(name, scenario.policies[seat.removeprefix("bot:")], seed)
            for name, seat in seats.items()
            if seat.startswith("bot:")
        }
        self.courier_rng = random.Random(f"{seed}:courier")
        self.expectations = Expectations()
        self.queue: asyncio.Queue[Command | tuple[str, LiveEvent] | None] = asyncio.Queue()
        self.now = 0.0
        self.letters: dict[str, Tracked] = {}
        self.by_id: dict[str, Tracked] = {}
        self.fired: set[str] = set()
        self.skipped: set[str] = set()
        self.held: set[str] = set()
        self.waiting: set[str] = set()  # held injects whose time has come
        self._due: list[_Due] = []
        self._order = 0
        self._labels = 0
        self._stop: str | None = None
        self.notices: Notices | None = None  # what control tells the people's seats (play.py)

    # --- the loop -------------------------------------------------------------------------------

    async def run(self) -> str:
        """Play the scenario to its end (or until stopped); returns why it ended."""
        if self.notices:
            await self.notices.clock(NoticeKind.STARTED, self.now)
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
        wait = self.clocks.wall_until(self._due[0].t) if self._due else None
        if wait is None or wait > 0:
            try:
                item = await asyncio.wait_for(self.queue.get(), wait)
            except TimeoutError:
                return
            await self._external(item)
            return
        due = heapq.heappop(self._due)
        if self.clocks.speed is None:
            self.clocks.advance_to(due.t)
            self.now = due.t
        else:
            self.now = max(self.now, self.clocks.now())
        await due.action(*due.args)

    def _at(self, t: float, action: Action, *args: Any) -> None:
        self._order += 1
        heapq.heappush(self._due, _Due(max(t, self.now), self._order, action, args))

    def _after_world(self, world_seconds: float, action: Action, *args: Any) -> None:
        self._at(self.now + self.clocks.exercise_seconds(world_seconds), action, *args)

    def write(
        self, kind: str, data: dict[str, Any], evidence: dict[str, Any] | None = None
    ) -> None:
        record = self.log.write(kind, self.clocks.stamp(self.now), data, evidence)
        if self.on_record is not None:
            self.on_record(record)

    # --- the schedule ---------------------------------------------------------------------------

    def _schedule_start(self) -> None:
        first, *later = self.clocks.spans
        self.write("move_started", {"id": first.move.id, "title": first.move.title})
        for span in later:
            self._at(span.move.at, self._move, span.move.id, span.move.title)
        for inject in self.scenario.injects:
            t = self.clocks.scheduled(inject)
            if t is not None:
                self._at(t, self._fire, inject, "scheduled")
        for name, bot in self.bots.items():
            for index, rule in enumerate(bot.policy.times):
                self._at(rule.at, self._bot_time, name, index)
        self._at(self.scenario.clock.end, self._end)

    async def _move(self, move_id: int, title: str) -> None:
        self.write("move_started", {"id": move_id, "title": title})

    async def _end(self) -> None:
        self.stop("end")

    async def _bot_time(self, name: str, index: int) -> None:
        self._react(name, self.bots[name].time(index))

    # --- injects --------------------------------------------------------------------------------

    async def _fire(self, inject: Inject, cause: str) -> None:
        if inject.id in self.fired or (inject.id in self.skipped and cause != "control"):
            return
        if inject.id in self.held and cause != "control":
            self.waiting.add(inject.id)
            return
        self.fired.add(inject.id)
        self.held.discard(inject.id)
        self.waiting.discard(inject.id)
        sender_seat = self.seats.get(inject.from_ or "", "control")
        if inject.channel is Channel.LETTER and sender_seat == "human":
            self.write("inject_tasked", self._inject_data(inject) | {"party": inject.from_})
            self._open_windows(inject)
        else:
            labels = [self._label() for _ in inject.to] if inject.channel is Channel.LETTER else []
            data = self._inject_data(inject) | {"cause": cause, "letters": labels or None}
            if inject.channel is not Channel.LETTER:
                data["text"] = inject.text
            self.write("inject_fired", data)
            self._open_windows(inject)
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
            await self.notices.inject(inject, self.now)
        self._chain("inject", inject.id, "fired")
        if inject.channel is Channel.LETTER:
            await self._heard(inject)
            return
        # A communiqué or wire item reaches the bots after its channel's latency (world time).
        delay = sample(self.scenario.latency.of(inject.channel), self.courier_rng)
        self._after_world(delay, self._heard, inject)

    async def _heard(self, inject: Inject) -> None:
        """The bots' `injects:` rules for this inject."""
        for name, bot in self.bots.items():
            self._react(name, bot.inject(inject.id))

    def _inject_data(self, inject: Inject) -> dict[str, Any]:
        return {
            "inject": inject.id,
            "channel": inject.channel.value,
            "from": inject.from_,
            "to": list(inject.to),
            "subject": inject.subject,
            "action": inject.action or None,
        }

    def _open_windows(self, inject: Inject) -> None:
        for expectation in inject.expect:
            deadline = self.now + self.clocks.exercise_seconds(expectation.within)
            self.expectations.open(inject, expectation, self.now, deadline)
            self._at(deadline, self._deadline, expectation.id)

    def _chain(self, kind: str, anchor: str, outcome: str) -> None:
        """Schedule the injects that wait for this (`after:`), after their delays."""
        for inject in self.scenario.injects:
            after = inject.after
            if after is None or after.outcome != outcome:
                continue
            if (kind == "inject" and after.inject == anchor) or (
                kind == "expectation" and after.expectation == anchor
            ):
                self._after_world(after.delay, self._fire, inject, f"after:{anchor}")

    async def _deadline(self, expectation_id: str) -> None:
        window = self.expectations.expire(expectation_id)
        if window is not None:
            await self._missed(window, "deadline")

    async def _missed(self, window: Window, reason: str) -> None:
        exp = window.expectation
        self.write(
            "expectation_missed",
            self._window_data(window) | {"contingency": exp.contingency, "reason": reason},
        )
        if reason != "deadline":
            return
        if exp.contingency is not None:
            await self._fire(self.scenario.inject(exp.contingency), f"contingency:{exp.id}")
        self._chain("expectation", exp.id, "missed")

    def _met(self, windows: list[Window], tracked: Tracked) -> None:
        for window in windows:
            data = self._window_data(window) | {"letter": tracked.label}
            self.write("expectation_met", data, {"letter_id": tracked.letter_id})
            self._chain("expectation", window.expectation.id, "met")

    def _window_data(self, window: Window) -> dict[str, Any]:
        exp = window.expectation
        return {
            "expectation": exp.id,
            "inject": window.inject.id,
            "check": exp.check.value,
            "from": exp.from_,
            "to": exp.to,
            "score": exp.score,
        }

    # --- letters --------------------------------------------------------------------------------

    def _label(self) -> str:
        self._labels += 1
        return f"L{self._labels}"

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
        label = label or self._label()
        tracked = Tracked(
            label,
            new_letter_id(),
            sender,
            to,
            by="bot" if sender in self.bots else "control",
            subject=subject,
            in_reply_to=in_reply_to,
            inject=inject,
            forwards=forwards,
        )
        self._track(tracked)  # before sending: its live events must find it
        replied = self.letters[in_reply_to] if in_reply_to else None
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
            self._untrack(tracked)
            self.failed(sender, f"send {label} to {to}", exc)
            return
        tracked.seen.add(0)
        evidence = {
            "letter_id": tracked.letter_id,
            "envelope": sealed.envelope.model_dump(mode="json", exclude_none=True),
            "seal": b64(sealed.seal),
            "receipt": _receipt(receipt),
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
            self._escrowed(tracked, escrow_content(signed, self.archive_key))

    def _escrowed(self, tracked: Tracked, blob: bytes) -> None:
        self.write("escrowed", {"letter": tracked.label}, {"archive": b64(blob)})

    def _letter_sent(
        self, tracked: Tracked, size: int, precedence: Precedence, evidence: dict[str, Any]
    ) -> None:
        data = {
            "letter": tracked.label,
            "from": tracked.sender,
            "to": tracked.recipient,
            "precedence": precedence.value,
            "in_reply_to": tracked.in_reply_to,
            "subject": tracked.subject,
            "inject": tracked.inject,
            "by": tracked.by,
            "size": size,
        } | ({"forwards": tracked.forwards} if tracked.forwards else {})
        self.write("letter_sent", data, evidence)
        replies_to = self.letters[tracked.in_reply_to].sender if tracked.in_reply_to else None
        for fact in letter_facts(tracked.label, tracked.sender, tracked.recipient, replies_to):
            self._met(self.expectations.meet(fact, self.now), tracked)
        if self.seats[tracked.recipient] != "human":
            delay = sample(self.scenario.latency.of(Channel.LETTER), self.courier_rng)
            self._after_world(delay, self._arrive, tracked.label)

    def _track(self, tracked: Tracked) -> None:
        self.letters[tracked.label] = tracked
        self.by_id[tracked.letter_id] = tracked

    def _untrack(self, tracked: Tracked) -> None:
        del self.letters[tracked.label]
        del self.by_id[tracked.letter_id]

    def _marked(self, subject: str) -> str:
        return marked(self.scenario.marking, subject)

    def _unmarked(self, subject: str) -> str:
        return subject.removeprefix(f"{self.scenario.marking.strip()} — ")

    async def _arrive(self, label: str) -> None:
        """The simulated courier latency has passed: the recipient's inbox shows the envelope."""
        tracked = self.letters[label]
        if is_terminal(tracked.state):
            return
        client = self.clients[tracked.recipient]
        try:
            await client.inbox()
            status = await client.verified_status(tracked.letter_id)
        except ChannelError as exc:
            self.failed(tracked.recipient, f"receive {label}", exc)
            return
        await self._receipts(tracked, status.receipts)
        bot = self.bots.get(tracked.recipient)
        if bot is None:
            return  # a control seat: the envelope waits for the controllers
        arrival, reaction = bot.arrive(Letter(label, tracked.sender, tracked.recipient))
        tracked.arrival = arrival
        self._react(tracked.recipient, reaction)
        self._after_world(arrival.think, self._decide, label)

    async def _decide(self, label: str) -> None:
        tracked = self.letters[label]
        bot, arrival = self.bots[tracked.recipient], tracked.arrival
        if arrival is None or is_terminal(tracked.state):
            return
        choice = bot.decide(arrival)
        self.write(
            "decision",
            {
                "party": tracked.recipient,
                "letter": label,
                "choice": "open" if choice.open else "return",
                "p_open": f"{choice.p_open:.4f}",
                "draw": f"{choice.draw:.4f}",
                "think": round(arrival.think),
            },
        )
        client = self.clients[tracked.recipient]
        try:
            if not choice.open:
                await self._receipts(
                    tracked, await client.return_letter(tracked.letter_id, choice.reason)
                )
                return
            content, opened = await client.open_letter(tracked.letter_id)
        except ChannelError as exc:
            self.failed(tracked.recipient, f"decide on {label}", exc)
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
        self._react(tracked.recipient, bot.opened(arrival, letter))

    async def _receipts(self, tracked: Tracked, receipts: list[Receipt]) -> None:
        """Log each receipt not yet seen, in order, and let it meet expectations and move bots."""
        for receipt in sorted(receipts, key=lambda r: r.seq):
            if receipt.seq in tracked.seen:
                continue
            tracked.seen.add(receipt.seq)
            tracked.state = receipt.event
            if receipt.seq == 0:
                continue
            event = receipt.event.value
            data = {
                "letter": tracked.label,
                "event": event,
                "by": _caused_by(receipt.event, tracked),
                "seq": receipt.seq,
                "reason": receipt.reason,
            }
            evidence = {"letter_id": tracked.letter_id, "receipt": _receipt(receipt)}
            self.write("receipt", data, evidence)
            fact = receipt_fact(tracked.label, event, tracked.sender, tracked.recipient)
            if fact is not None:
                self._met(self.expectations.meet(fact, self.now), tracked)
            sender_bot = self.bots.get(tracked.sender)
            if sender_bot is not None:
                letter = Letter(
                    tracked.label, tracked.sender, tracked.recipient, tracked.subject or ""
                )
                self._react(tracked.sender, sender_bot.receipt(event, letter))

    def _react(self, party: str, reaction: Reaction) -> None:
        for change in reaction.changes:
            self.write(
                "state_changed",
                {
                    "party": party,
                    "variable": change.variable,
                    "old": change.old,
                    "new": change.new,
                    "cause": change.cause,
                },
            )
        for outgoing in reaction.letters:
            self._after_world(outgoing.delay, self._bot_send, party, outgoing)

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

    def failed(self, party: str, action: str, exc: ChannelError) -> None:
        log.warning("exercise_action_failed", party=party, action=action, error=exc.detail)
        self.write("action_failed", {"party": party, "action": action, "error": exc.detail})

    # --- the outside world: live events and control commands --------------------------------------

    async def _external(self, item: Command | tuple[str, LiveEvent] | None) -> None:
        if item is None:
            return
        self.now = self.clocks.now() if self.clocks.speed is not None else self.now
        if isinstance(item, Command):
            await self._command(item)
        else:
            await self._observe(*item)

    async def _observe(self, party: str, event: LiveEvent) -> None:
        """A letter or receipt seen on a human or control seat's live event stream."""
        if CONTROL_PARTY in (event.sender, event.recipient):
            return  # a notice (or a letter to control's party): not an exercise letter
        tracked = self.by_id.get(event.letter_id)
        if tracked is not None and event.seq in tracked.seen:
            return
        try:
            status = await self.clients[party].verified_status(event.letter_id)
        except ChannelError as exc:
            self.failed(party, f"look up letter {event.letter_id}", exc)
            return
        if tracked is None:
            tracked = self._observed_letter(status)
        await self._receipts(tracked, status.receipts)

    def _observed_letter(self, status: LetterStatus) -> Tracked:
        env = status.envelope
        replied = self.by_id.get(env.in_reply_to) if env.in_reply_to else None
        tracked = Tracked(
            self._label(),
            env.id,
            env.sender,
            env.recipient,
            by=self.seats.get(env.sender, "outsider").split(":")[0],
            in_reply_to=replied.label if replied else None,
        )
        self._track(tracked)
        tracked.seen.add(0)
        evidence = {
            "letter_id": env.id,
            "envelope": env.model_dump(mode="json", exclude_none=True),
            "seal": b64(status.seal),
            "receipt": _receipt(status.receipts[0]),
        }
        self._letter_sent(tracked, env.ciphertext_size, env.precedence, evidence)
        escrow = self.escrow_dir / f"{env.id}.bin" if self.escrow_dir else None
        if self.archive_key is not None and escrow is not None and escrow.is_file():
            self._escrowed(tracked, escrow.read_bytes())
        return tracked

    async def _command(self, command: Command) -> None:
        try:
            result = await self._apply_command(command.name, command.argument)
        except (KeyError, ValueError) as exc:
            result = {"ok": False, "error": str(exc).strip("'\"")}
        if not command.reply.done():
            command.reply.set_result(result)

    async def _apply_command(self, name: str, argument: str | None) -> dict[str, Any]:
        if name == "status":
            return {"ok": True} | self.status()
        if name in ("pause", "resume"):
            changed = self.clocks.pause() if name == "pause" else self.clocks.resume()
            if changed:
                self.write("control", {"command": name})
                if self.notices:
                    kind = NoticeKind.PAUSED if name == "pause" else NoticeKind.RESUMED
                    await self.notices.clock(kind, self.now)
            return {"ok": True, "changed": changed} | self.status()
        if name == "speed":
            speed = _parse_speed(argument)
            self.clocks.set_speed(speed)
            self.write("control", {"command": "speed", "argument": argument})
            if self.notices:
                await self.notices.speed(self.now)
            return {"ok": True} | self.status()
        inject = self._inject_argument(argument)
        return await self._inject_command(name, inject)

    async def _inject_command(self, name: str, inject: Inject) -> dict[str, Any]:
        if inject.id in self.fired:
            raise ValueError(f"inject {inject.id} has already fired")
        if name == "fire":
            self.write("control", {"command": "fire", "argument": inject.id})
            await self._fire(inject, "control")
        elif name == "skip":
            self.skipped.add(inject.id)
            self.write("inject_skipped", {"inject": inject.id, "by": "control"})
        elif name == "hold":
            self.held.add(inject.id)
            self.write("inject_held", {"inject": inject.id, "by": "control"})
        elif name == "release":
            if inject.id not in self.held:
                raise ValueError(f"inject {inject.id} is not held")
            self.held.discard(inject.id)
            self.write("inject_released", {"inject": inject.id, "by": "control"})
            if inject.id in self.waiting:
                await self._fire(inject, "control")
        else:
            raise ValueError(f"unknown command {name!r}")
        return {"ok": True} | self.status()

    def _inject_argument(self, argument: str | None) -> Inject:
        if not argument:
            raise ValueError("name the inject, e.g. INJ-03")
        try:
            return self.scenario.inject(argument)
        except KeyError:
            raise ValueError(f"no inject {argument!r} in this scenario") from None

    def status(self) -> dict[str, Any]:
        speed = self.clocks.speed
        pending = [
            {"inject": inject.id, "at": format_offset(t)}
            for inject in self.scenario.injects
            if inject.id not in self.fired | self.skipped
            and (t := self.clocks.scheduled(inject)) is not None
        ]
        return {
            "exercise": format_offset(self.clocks.now()),
            "world": self.clocks.stamp(self.clocks.now()).world,
            "move": self.clocks.span_at(self.clocks.now()).move.id,
            "paused": self.clocks.paused,
            "speed": "max" if speed is None else speed,
            "fired": sorted(self.fired),
            "held": sorted(self.held),
            "skipped": sorted(self.skipped),
            "next": pending[:5],
            "letters": len(self.letters),
        }

    # --- the end ----------------------------------------------------------------------------------

    async def finish(self, reason: str, releases: bool) -> None:
        """Close open windows, release (post_release), record every letter's final status."""
        if self.clocks.speed is not None:
            self.now = max(self.now, self.clocks.now())
        if self.notices:
            await self.notices.ended(reason, self.now)
        for window in self.expectations.still_open():
            window.outcome = Outcome.MISSED
            await self._missed(window, "exercise ended")
        if releases:
            self._release()
        for tracked in list(self.letters.values()):
            await self._final(tracked)
        scheduled = {inject.id for inject in self.scenario.injects if not inject.contingency}
        self.write(
            "run_ended",
            {
                "reason": reason,
                "injects_fired": len(self.fired),  # contingencies included
                "contingencies_fired": len(self.fired - scheduled),
                "injects_skipped": len(self.skipped - self.fired),
                "injects_total": len(scheduled),
                "letters": len(self.letters),
            },
            {"head": self.log.head},
        )

    def _release(self) -> None:
        for tracked in self.letters.values():
            if tracked.opened is not None:
                self.write(
                    "released",
                    {"letter": tracked.label, "by": tracked.recipient},
                    {"content": tracked.opened.model_dump(mode="json", exclude_none=True)},
                )

    async def _final(self, tracked: Tracked) -> None:
        try:
            status = await self.clients[tracked.sender].verified_status(tracked.letter_id)
        except ChannelError as exc:
            self.failed(tracked.sender, f"final status of {tracked.label}", exc)
            return
        await self._receipts(tracked, status.receipts)
        self.write(
            "letter_final",
            {
                "letter": tracked.label,
                "state": status.state.value,
                "receipts": len(status.receipts),
            },
            {"status": status.model_dump(mode="json", exclude_none=True)},
        )


def _caused_by(event: State, tracked: Tracked) -> str:
    if event is State.WITHDRAWN:
        return tracked.sender
    if event is State.EXPIRED:
        return "courier"
    return tracked.recipient


def _receipt(receipt: Receipt) -> dict[str, Any]:
    return receipt.model_dump(mode="json", exclude_none=True)


def _parse_speed(argument: str | None) -> float | None:
    if argument == "max":
        return None
    try:
        speed = float(argument or "")
    except ValueError:
        raise ValueError(f"speed must be a number or max, not {argument!r}") from None
    if not 0 < speed <= 10_000:
        raise ValueError("speed must be between 0 and 10000 (or max)")
    return speed
