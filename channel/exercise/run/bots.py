"""Automated parties: a scenario's policy played with a seeded random generator.

A bot is pure decision logic. The runner tells it what happened (a letter arrived, a receipt came
back, an inject fired, a time came) and gets back what to do (decisions, state changes, letters
to write after a delay). Every random draw comes from the bot's own generator, seeded with the run
seed and the party's name, and the runner asks in a fixed order, so the same seed replays the
same choices.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from string import Template

from channel.exercise.author.scenario import (
    Distribution,
    Exponential,
    Fixed,
    LogNormal,
    OnLetter,
    Policy,
    Send,
    Uniform,
)
from channel.protocol.models import Precedence


def sample(distribution: Distribution, rng: random.Random) -> float:
    """A world-time delay in seconds."""
    if isinstance(distribution, Fixed):
        return distribution.fixed
    if isinstance(distribution, Uniform):
        low, high = sorted(distribution.uniform)
        return rng.uniform(low, high)
    if isinstance(distribution, Exponential):
        return rng.expovariate(1 / distribution.exponential) if distribution.exponential else 0.0
    if isinstance(distribution, LogNormal):
        shape = distribution.lognormal
        if shape.median <= 0:
            return 0.0
        return rng.lognormvariate(math.log(shape.median), shape.sigma)
    raise TypeError(f"unknown distribution {distribution!r}")


def _unstacked(subject: str) -> str:
    """`Re: Re: x` → `Re: x`: bots answering each other should not grow their subjects."""
    while subject.startswith("Re: Re: "):
        subject = subject[4:]
    return subject


def render(template: str, values: dict[str, str]) -> str:
    """`$name` substitution; unknown names stay as written, so a typo shows in the letter."""
    return Template(template).safe_substitute(values)


@dataclass(frozen=True)
class Letter:
    """What a bot knows about a letter it received (the content only once it opened it)."""

    label: str
    sender: str
    recipient: str
    subject: str = ""
    body: str = ""


@dataclass(frozen=True)
class Outgoing:
    """A letter the bot will write `delay` world seconds from now."""

    to: str
    subject: str
    body: str
    delay: float
    precedence: Precedence = Precedence.ROUTINE
    in_reply_to: str | None = None
    forwards: str | None = None
    cause: str = ""


@dataclass(frozen=True)
class Change:
    variable: str
    old: int
    new: int
    cause: str


@dataclass(frozen=True)
class Arrival:
    """A letter has arrived: which rule applies and how long the bot thinks before deciding."""

    rule: OnLetter
    think: float


@dataclass(frozen=True)
class Choice:
    open: bool
    p_open: float
    draw: float
    reason: str | None


@dataclass
class Reaction:
    """The consequences of one event: state changes, and letters to write."""

    changes: list[Change] = field(default_factory=list)
    letters: list[Outgoing] = field(default_factory=list)

    def extend(self, other: Reaction) -> None:
        self.changes += other.changes
        self.letters += other.letters


_DEFAULT_RULE = OnLetter()


class Bot:
    def __init__(self, name: str, policy: Policy, seed: int) -> None:
        self.name = name
        self.policy = policy
        self.rng = random.Random(f"{seed}:{name}")
        self.state = dict(policy.state)
        self._crossed: set[int] = set()

    # --- letters received -----------------------------------------------------------------------

    def arrive(self, letter: Letter) -> tuple[Arrival, Reaction]:
        rule = self._rule_for(letter.sender)
        arrival = Arrival(rule, sample(rule.think, self.rng))
        return arrival, self.escalate(rule.escalate, f"letter {letter.label}")

    def decide(self, arrival: Arrival) -> Choice:
        draw = self.rng.random()
        opens = draw < arrival.rule.open
        return Choice(opens, arrival.rule.open, draw, None if opens else arrival.rule.reason)

    def opened(self, arrival: Arrival, letter: Letter) -> Reaction:
        """Replies and forwards for a letter just opened (each with its own draw)."""
        reaction = Reaction()
        values = self._values(letter)
        reply = arrival.rule.reply
        if reply is not None and self.rng.random() < reply.probability:
            reaction.letters.append(
                Outgoing(
                    to=reply.to or letter.sender,
                    subject=_unstacked(render(reply.subject, values)),
                    body=render(reply.body, values),
                    delay=sample(reply.after, self.rng),
                    precedence=reply.precedence or Precedence.ROUTINE,
                    in_reply_to=letter.label,
                    cause=f"reply to {letter.label}",
                )
            )
        forward = arrival.rule.forward
        if forward is not None:
            reaction.letters.append(
                Outgoing(
                    to=forward.to,
                    subject=render(forward.subject, values),
                    body=render(forward.body, values),
                    delay=sample(forward.after, self.rng),
                    forwards=letter.label,
                    cause=f"forward of {letter.label}",
                )
            )
        return reaction

    # --- other events ---------------------------------------------------------------------------

    def receipt(self, event: str, letter: Letter) -> Reaction:
        """A letter this bot sent reached `event` (opened, returned_unopened, ...)."""
        reaction = Reaction()
        for rule in self.policy.receipts:
            if rule.event != event or (rule.to and letter.recipient not in rule.to):
                continue
            cause = f"{event} {letter.label}"
            reaction.extend(self.escalate(rule.escalate, cause))
            reaction.extend(self._send(rule.send, cause, self._values(letter)))
        return reaction

    def inject(self, inject_id: str) -> Reaction:
        reaction = Reaction()
        for rule in self.policy.injects:
            if rule.inject == inject_id:
                reaction.extend(self.escalate(rule.escalate, f"inject {inject_id}"))
                reaction.extend(self._send(rule.send, f"inject {inject_id}", self._values()))
        return reaction

    def time(self, index: int) -> Reaction:
        rule = self.policy.times[index]
        cause = f"time rule {index + 1}"
        reaction = self.escalate(rule.escalate, cause)
        reaction.extend(self._send(rule.send, cause, self._values()))
        return reaction

    def escalate(self, deltas: dict[str, int], cause: str) -> Reaction:
        """Change state variables; a threshold crossed for the first time sends its letter."""
        reaction = Reaction()
        for variable, delta in sorted(deltas.items()):
            old = self.state.get(variable, 0)
            self.state[variable] = old + delta
            reaction.changes.append(Change(variable, old, old + delta, cause))
        for index, rule in enumerate(self.policy.thresholds):
            if index in self._crossed or self.state.get(rule.variable, 0) < rule.at_least:
                continue
            self._crossed.add(index)
            why = f"{rule.variable} reached {rule.at_least}"
            reaction.extend(self._send(rule.send, why, self._values()))
        return reaction

    # --- helpers --------------------------------------------------------------------------------

    def _rule_for(self, sender: str) -> OnLetter:
        for rule in self.policy.letters:
            if not rule.from_ or sender in rule.from_:
                return rule
        return _DEFAULT_RULE

    def _send(self, send: Send | None, cause: str, values: dict[str, str]) -> Reaction:
        if send is None or self.rng.random() >= send.probability:
            return Reaction()
        delay = sample(send.after, self.rng)
        letter = Outgoing(
            to=send.to,
            subject=render(send.subject, values),
            body=render(send.body, values),
            delay=delay,
            precedence=send.precedence,
            cause=cause,
        )
        return Reaction(letters=[letter])

    def _values(self, letter: Letter | None = None) -> dict[str, str]:
        values = {name: str(value) for name, value in self.state.items()}
        values["party"] = self.name
        if letter is not None:
            values |= {
                "sender": letter.sender,
                "recipient": letter.recipient,
                "subject": letter.subject,
                "body": letter.body,
            }
        return values
