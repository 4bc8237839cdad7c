"""One count of the injects an exercise fired, the same on the live view, in the log and report.

An inject counts as fired once it fired or was tasked to a person, contingencies included; a
skipped inject that never fired counts as skipped. Everything that says how far through the MSEL
a run is uses `InjectTally`, so the room screen, `run_ended` and the report cannot disagree.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from channel.exercise.eventlog import (
    InjectControlled,
    InjectFired,
    InjectTasked,
    Record,
    RunStarted,
)

FIRED = frozenset({"inject_fired", "inject_tasked"})


@dataclass
class InjectTally:
    """Fed record by record (`see`); `scheduled` and `contingencies` are the MSEL's inject ids."""

    scheduled: frozenset[str]
    contingencies: frozenset[str]
    fired: dict[str, None] = field(default_factory=dict)  # in firing order
    skipped: dict[str, None] = field(default_factory=dict)

    @classmethod
    def of(cls, injects: Iterable[tuple[str, bool]]) -> InjectTally:
        """From (inject id, is a contingency) pairs."""
        listed = list(injects)
        return cls(
            scheduled=frozenset(i for i, contingency in listed if not contingency),
            contingencies=frozenset(i for i, contingency in listed if contingency),
        )

    @classmethod
    def from_records(cls, start: RunStarted, records: Sequence[Record]) -> InjectTally:
        """The tally of a whole (decoded) log; the MSEL comes from run_started."""
        tally = cls.of((i.id, i.contingency) for i in start.data.injects)
        for record in records:
            if isinstance(record, InjectFired | InjectTasked | InjectControlled):
                tally.see(record.kind, {"inject": record.data.inject})
        return tally

    def see(self, kind: str, data: Mapping[str, Any]) -> bool:
        """Count one record; True when it changed the tally."""
        inject = str(data.get("inject", ""))
        if kind in FIRED and inject not in self.fired:
            self.fired[inject] = None
            self.skipped.pop(inject, None)
            return True
        if kind == "inject_skipped" and inject not in self.fired:
            self.skipped[inject] = None
            return True
        return False

    @property
    def contingencies_fired(self) -> int:
        return sum(inject in self.contingencies for inject in self.fired)

    @property
    def scheduled_fired(self) -> int:
        return sum(inject in self.scheduled for inject in self.fired)

    @property
    def expected(self) -> int:
        """What the MSEL now holds to fire: the scheduled injects not skipped, and every
        contingency that fired."""
        return len(self.scheduled - set(self.skipped)) + self.contingencies_fired

    def text(self) -> str:
        """`11 injects fired (2 contingencies): 9 of 10 scheduled, 1 skipped`."""
        return describe(
            len(self.fired),
            self.contingencies_fired,
            self.scheduled_fired,
            len(self.scheduled),
            len(self.skipped),
        )


def describe(
    fired: int, contingencies: int, scheduled_fired: int, scheduled: int, skipped: int
) -> str:
    """The one sentence every view prints for the count."""
    text = f"{fired} inject{'' if fired == 1 else 's'} fired"
    if contingencies:
        text += f" ({contingencies} {'contingency' if contingencies == 1 else 'contingencies'})"
    text += f": {scheduled_fired} of {scheduled} scheduled"
    return text + (f", {skipped} skipped" if skipped else "")


def describe_ended(data: Mapping[str, Any]) -> str:
    """The count a `run_ended` record carries, in the same words."""
    return describe(
        int(data.get("injects_fired", 0)),
        int(data.get("contingencies_fired", 0)),
        int(data.get("injects_fired", 0)) - int(data.get("contingencies_fired", 0)),
        int(data.get("injects_total", 0)),
        int(data.get("injects_skipped", 0)),
    )
