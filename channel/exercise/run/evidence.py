"""The run's evidence: every record it writes to the event log, and the letters it tracks by label.

The runner decides what happened; this part says it in the log's terms (kinds, data, evidence)
and keeps the letters the exercise has seen (`L1`, `L2`, ... in the order they appear). Its only
I/O is the event log itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import structlog

from channel.exercise.eventlog import EventLog, b64
from channel.exercise.run.bots import Arrival
from channel.exercise.run.expectations import Window
from channel.exercise.run.schedule import Schedule
from channel.party.exercise import save_labels
from channel.protocol.errors import ChannelError
from channel.protocol.lifecycle import State
from channel.protocol.models import LetterStatus, Precedence, Receipt, SignedContent

log = structlog.get_logger("channel.exercise")


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


class EvidenceLog:
    """Writes the run's records, stamped with the schedule's clocks; labels and tracks letters."""

    def __init__(
        self,
        events: EventLog,
        schedule: Schedule,
        on_record: Callable[[dict[str, Any]], None] | None = None,
        labels_home: Path | None = None,
    ) -> None:
        self.log = events
        self.schedule = schedule
        self.on_record = on_record
        self.letters: dict[str, Tracked] = {}
        self.by_id: dict[str, Tracked] = {}
        self._labels = 0
        # People's clients read the labels from their keyring home, so `L3` works for them too.
        self.labels_home = labels_home

    def write(
        self, kind: str, data: dict[str, Any], evidence: dict[str, Any] | None = None
    ) -> None:
        record = self.log.write(kind, self.schedule.stamp(), data, evidence)
        if self.on_record is not None:
            self.on_record(record)

    # --- letters by label ---------------------------------------------------------------------

    def label(self) -> str:
        """The next letter label (`L1`, `L2`, ...)."""
        self._labels += 1
        return f"L{self._labels}"

    def track(self, tracked: Tracked) -> None:
        self.letters[tracked.label] = tracked
        self.by_id[tracked.letter_id] = tracked
        self._publish_labels()

    def untrack(self, tracked: Tracked) -> None:
        del self.letters[tracked.label]
        del self.by_id[tracked.letter_id]
        self._publish_labels()

    def _publish_labels(self) -> None:
        if self.labels_home is not None:
            save_labels(self.labels_home, {t.label: t.letter_id for t in self.letters.values()})

    # --- records --------------------------------------------------------------------------------

    def letter_sent(
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

    def escrowed(self, tracked: Tracked, blob: bytes) -> None:
        self.write("escrowed", {"letter": tracked.label}, {"archive": b64(blob)})

    def receipt(self, tracked: Tracked, receipt: Receipt) -> None:
        data = {
            "letter": tracked.label,
            "event": receipt.event.value,
            "by": _caused_by(receipt.event, tracked),
            "seq": receipt.seq,
            "reason": receipt.reason,
        }
        self.write(
            "receipt", data, {"letter_id": tracked.letter_id, "receipt": receipt_json(receipt)}
        )

    def expectation_met(self, window: Window, tracked: Tracked) -> None:
        data = window_data(window) | {"letter": tracked.label}
        self.write("expectation_met", data, {"letter_id": tracked.letter_id})

    def expectation_missed(self, window: Window, reason: str) -> None:
        contingency = window.expectation.contingency
        data = window_data(window) | {"contingency": contingency, "reason": reason}
        self.write("expectation_missed", data)

    def released(self) -> None:
        """post_release: publish every letter a bot opened."""
        for tracked in self.letters.values():
            if tracked.opened is not None:
                self.write(
                    "released",
                    {"letter": tracked.label, "by": tracked.recipient},
                    {"content": tracked.opened.model_dump(mode="json", exclude_none=True)},
                )

    def letter_final(self, tracked: Tracked, status: LetterStatus) -> None:
        self.write(
            "letter_final",
            {
                "letter": tracked.label,
                "state": status.state.value,
                "receipts": len(status.receipts),
            },
            {"status": status.model_dump(mode="json", exclude_none=True)},
        )

    def failed(self, party: str, action: str, exc: ChannelError) -> None:
        log.warning("exercise_action_failed", party=party, action=action, error=exc.detail)
        self.write("action_failed", {"party": party, "action": action, "error": exc.detail})


def window_data(window: Window) -> dict[str, Any]:
    exp = window.expectation
    return {
        "expectation": exp.id,
        "inject": window.inject.id,
        "check": exp.check.value,
        "from": exp.from_,
        "to": exp.to,
        "score": exp.score,
    }


def receipt_json(receipt: Receipt) -> dict[str, Any]:
    return receipt.model_dump(mode="json", exclude_none=True)


def _caused_by(event: State, tracked: Tracked) -> str:
    if event is State.WITHDRAWN:
        return tracked.sender
    if event is State.EXPIRED:
        return "courier"
    return tracked.recipient
