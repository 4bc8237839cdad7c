"""Where each inject of the MSEL stands: fired, skipped, held (and waiting), and what it unlocks.

Pure state: the runner asks whether an inject may fire now (`admit`), applies control's skip,
hold and release (`control`), and finds the injects chained after an inject or an expectation's
outcome (`chained`).
"""

from __future__ import annotations

from channel.exercise.author.clock import Clocks
from channel.exercise.author.scenario import Inject, Scenario, format_offset
from channel.exercise.run.command import CommandRefused, NextInject, UnknownInject


class InjectBook:
    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        self.fired: set[str] = set()
        self.skipped: set[str] = set()
        self.held: set[str] = set()
        self.waiting: set[str] = set()  # held injects whose time has come

    def admit(self, inject: Inject, cause: str) -> bool:
        """Whether `inject` fires now (and if so, it counts as fired); control overrides skip
        and hold, and a held inject whose time comes waits for its release."""
        if inject.id in self.fired or (inject.id in self.skipped and cause != "control"):
            return False
        if inject.id in self.held and cause != "control":
            self.waiting.add(inject.id)
            return False
        self.fired.add(inject.id)
        self.held.discard(inject.id)
        self.waiting.discard(inject.id)
        return True

    def find(self, argument: str | None) -> Inject:
        """The inject a control command names."""
        if not argument:
            raise UnknownInject("name the inject, e.g. INJ-03")
        try:
            return self.scenario.inject(argument)
        except KeyError:
            raise UnknownInject(f"no inject {argument!r} in this scenario") from None

    def refuse_fired(self, inject: Inject) -> None:
        if inject.id in self.fired:
            raise CommandRefused(f"inject {inject.id} has already fired")

    def skip(self, inject: Inject) -> None:
        self.skipped.add(inject.id)

    def hold(self, inject: Inject) -> None:
        self.held.add(inject.id)

    def release(self, inject: Inject) -> bool:
        """Release a held inject; True when its time has already come (fire it now)."""
        if inject.id not in self.held:
            raise CommandRefused(f"inject {inject.id} is not held")
        self.held.discard(inject.id)
        return inject.id in self.waiting

    def chained(self, kind: str, anchor: str, outcome: str) -> list[tuple[Inject, float]]:
        """The injects that wait for this (`after:`), in MSEL order, with their world delays."""
        found = []
        for inject in self.scenario.injects:
            after = inject.after
            if after is None or after.outcome != outcome:
                continue
            if (kind == "inject" and after.inject == anchor) or (
                kind == "expectation" and after.expectation == anchor
            ):
                found.append((inject, after.delay))
        return found

    def pending(self, clocks: Clocks) -> list[NextInject]:
        """The timed injects not yet fired or skipped, with their planned times."""
        return [
            NextInject(inject=inject.id, at=format_offset(t))
            for inject in self.scenario.injects
            if inject.id not in self.fired | self.skipped
            and (t := clocks.scheduled(inject)) is not None
        ]

    def ended(self, letters: int) -> dict[str, int]:
        """The run_ended counts: one count of injects fired, contingencies included."""
        scheduled = {inject.id for inject in self.scenario.injects if not inject.contingency}
        return {
            "injects_fired": len(self.fired),  # contingencies included
            "contingencies_fired": len(self.fired - scheduled),
            "injects_skipped": len(self.skipped - self.fired),
            "injects_total": len(scheduled),
            "letters": letters,
        }
