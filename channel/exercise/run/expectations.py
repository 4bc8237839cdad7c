"""Expectations: what the control cell expects players to do once an inject has fired.

Pure bookkeeping. A window opens when its inject fires and closes at its deadline (exercise
time). Letters and receipts seen while it is open can meet it; the runner asks for the windows a
fact meets, and at the deadline whether it was missed.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum

from channel.exercise.author.scenario import Check, Expectation, Inject


class Outcome(StrEnum):
    OPEN = "open"
    MET = "met"
    MISSED = "missed"


@dataclass
class Window:
    inject: Inject
    expectation: Expectation
    opened: float
    deadline: float
    outcome: Outcome = Outcome.OPEN
    letter: str | None = None  # the label of the letter that met it


@dataclass(frozen=True)
class Fact:
    """Something that can meet an expectation: a letter sent, or a receipt on one."""

    check: Check
    sender: str
    recipient: str
    letter: str


def letter_facts(label: str, sender: str, recipient: str, replies_to: str | None) -> list[Fact]:
    """A new letter: `sent`, and `replied` if it answers a letter from its recipient."""
    facts = [Fact(Check.SENT, sender, recipient, label)]
    if replies_to == recipient:
        # `replied` reads "to answers from": the original's sender is `from`.
        facts.append(Fact(Check.REPLIED, recipient, sender, label))
    return facts


def receipt_fact(label: str, event: str, sender: str, recipient: str) -> Fact | None:
    checks = {"opened": Check.OPENED, "returned_unopened": Check.RETURNED}
    check = checks.get(event)
    return Fact(check, sender, recipient, label) if check else None


class Expectations:
    def __init__(self) -> None:
        self.windows: dict[str, Window] = {}

    def open(self, inject: Inject, expectation: Expectation, now: float, deadline: float) -> Window:
        window = Window(inject, expectation, now, deadline)
        self.windows[expectation.id] = window
        return window

    def meet(self, fact: Fact, now: float) -> list[Window]:
        """The open windows this fact meets (now marked met), in the order they opened."""
        met = []
        for window in self.windows.values():
            exp = window.expectation
            if window.outcome is not Outcome.OPEN or now > window.deadline:
                continue
            if (exp.check, exp.from_, exp.to) == (fact.check, fact.sender, fact.recipient):
                window.outcome, window.letter = Outcome.MET, fact.letter
                met.append(window)
        return met

    def expire(self, expectation_id: str) -> Window | None:
        """At the deadline: the window, now missed, or None if it was met (or never opened)."""
        window = self.windows.get(expectation_id)
        if window is None or window.outcome is not Outcome.OPEN:
            return None
        window.outcome = Outcome.MISSED
        return window

    def still_open(self) -> list[Window]:
        return [w for w in self.windows.values() if w.outcome is Outcome.OPEN]
