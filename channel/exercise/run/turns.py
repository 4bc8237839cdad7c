"""The bots' turns: what each bot does when time passes, an inject is heard, a letter arrives or is
opened, or a receipt comes back, and the letters it sends as a result (after their delays).

The bots' logic is bots.py (pure, seeded); this part schedules their reactions and records their
state changes. Sending goes through the runner's `send` (the courier is the runner's).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from channel.exercise.author.scenario import Inject, Scenario
from channel.exercise.run.bots import Arrival, Bot, Choice, Letter, Outgoing, Reaction
from channel.exercise.run.evidence import EvidenceLog, Tracked
from channel.exercise.run.schedule import Action, Schedule

Send = Callable[[str, Outgoing], Awaitable[None]]


class BotTurns:
    def __init__(
        self,
        scenario: Scenario,
        seats: dict[str, str],
        seed: int,
        schedule: Schedule,
        evidence: EvidenceLog,
        send: Send,
    ) -> None:
        self.bots = {
            name: Bot(name, scenario.policies[seat.removeprefix("bot:")], seed)
            for name, seat in seats.items()
            if seat.startswith("bot:")
        }
        self.schedule = schedule
        self.evidence = evidence
        self._send = send

    def schedule_times(self) -> None:
        """Each bot's `times:` rules, at their exercise times."""
        for name, bot in self.bots.items():
            for index, rule in enumerate(bot.policy.times):
                self.schedule.at(rule.at, self._time, name, index)

    async def _time(self, name: str, index: int) -> None:
        self.react(name, self.bots[name].time(index))

    async def heard(self, inject: Inject) -> None:
        """The bots' `injects:` rules for this inject."""
        for name, bot in self.bots.items():
            self.react(name, bot.inject(inject.id))

    def arrived(self, tracked: Tracked, decide: Action) -> None:
        """A letter reached a bot's inbox: it reacts, and decides after thinking (`decide`)."""
        bot = self.bots[tracked.recipient]
        arrival, reaction = bot.arrive(Letter(tracked.label, tracked.sender, tracked.recipient))
        tracked.arrival = arrival
        self.react(tracked.recipient, reaction)
        self.schedule.after_world(arrival.think, decide, tracked.label)

    def decide(self, tracked: Tracked, arrival: Arrival) -> Choice:
        """Open or return, and the record saying why."""
        choice = self.bots[tracked.recipient].decide(arrival)
        self.evidence.write(
            "decision",
            {
                "party": tracked.recipient,
                "letter": tracked.label,
                "choice": "open" if choice.open else "return",
                "p_open": f"{choice.p_open:.4f}",
                "draw": f"{choice.draw:.4f}",
                "think": round(arrival.think),
            },
        )
        return choice

    def opened(self, tracked: Tracked, arrival: Arrival, letter: Letter) -> None:
        self.react(tracked.recipient, self.bots[tracked.recipient].opened(arrival, letter))

    def receipt(self, tracked: Tracked, event: str) -> None:
        """A receipt on a letter a bot sent."""
        sender_bot = self.bots.get(tracked.sender)
        if sender_bot is not None:
            letter = Letter(tracked.label, tracked.sender, tracked.recipient, tracked.subject or "")
            self.react(tracked.sender, sender_bot.receipt(event, letter))

    def react(self, party: str, reaction: Reaction) -> None:
        for change in reaction.changes:
            self.evidence.write(
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
            self.schedule.after_world(outgoing.delay, self._send, party, outgoing)
