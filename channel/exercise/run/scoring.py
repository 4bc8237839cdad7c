"""Expectations in play: the windows an inject opens, met or missed, the contingency a miss fires,
and the injects chained (`after:`) to an inject or an outcome.

Matching is expectations.py (pure); this part schedules deadlines and chains on the run's
schedule, records outcomes in the evidence log, and fires through the runner's `fire`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from channel.exercise.author.scenario import Inject
from channel.exercise.run.evidence import EvidenceLog, Tracked
from channel.exercise.run.expectations import Expectations, Fact, Outcome, Window
from channel.exercise.run.injects import InjectBook
from channel.exercise.run.schedule import Schedule

Fire = Callable[[Inject, str], Awaitable[None]]


class Scoring:
    def __init__(
        self, book: InjectBook, schedule: Schedule, evidence: EvidenceLog, fire: Fire
    ) -> None:
        self.expectations = Expectations()
        self.book = book
        self.schedule = schedule
        self.evidence = evidence
        self._fire = fire

    def open_windows(self, inject: Inject) -> None:
        for expectation in inject.expect:
            now = self.schedule.now
            deadline = now + self.schedule.clocks.exercise_seconds(expectation.within)
            self.expectations.open(inject, expectation, now, deadline)
            self.schedule.at(deadline, self._deadline, expectation.id)

    def chain(self, kind: str, anchor: str, outcome: str) -> None:
        """Schedule the injects that wait for this (`after:`), after their delays."""
        for inject, delay in self.book.chained(kind, anchor, outcome):
            self.schedule.after_world(delay, self._fire, inject, f"after:{anchor}")

    def seen(self, fact: Fact, tracked: Tracked) -> None:
        """A letter or receipt: the windows it meets are met (and their chains scheduled)."""
        for window in self.expectations.meet(fact, self.schedule.now):
            self.evidence.expectation_met(window, tracked)
            self.chain("expectation", window.expectation.id, "met")

    async def _deadline(self, expectation_id: str) -> None:
        window = self.expectations.expire(expectation_id)
        if window is not None:
            await self.missed(window, "deadline")

    async def missed(self, window: Window, reason: str) -> None:
        exp = window.expectation
        self.evidence.expectation_missed(window, reason)
        if reason != "deadline":
            return
        if exp.contingency is not None:
            await self._fire(self.book.scenario.inject(exp.contingency), f"contingency:{exp.id}")
        self.chain("expectation", exp.id, "missed")

    async def close(self) -> None:
        """The exercise ended: every window still open is missed."""
        for window in self.expectations.still_open():
            window.outcome = Outcome.MISSED
            await self.missed(window, "exercise ended")
