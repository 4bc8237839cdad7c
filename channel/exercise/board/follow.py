"""What the board knows of a live run: the log's records folded into MSEL, expectations and
letters (pure), the log tailed as it grows, and the one adapter to the run's control API."""

from __future__ import annotations

import json
from collections import deque
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from channel.exercise.author.clock import Clocks
from channel.exercise.author.scenario import Inject, Scenario, format_offset
from channel.exercise.eventlog import LogError, record_hash
from channel.exercise.run.control import NoLiveRun, send_command
from channel.protocol.canonical import ZERO_HASH

LATEST = 12  # events kept for the "latest" lists


@dataclass(frozen=True)
class Status:
    """The run's clocks and inject states as its control API reports them."""

    exercise_s: int
    world: str
    move: int
    paused: bool
    speed: str  # a number as text, or "max"
    fired: frozenset[str]
    held: frozenset[str]
    skipped: frozenset[str]


@dataclass(frozen=True)
class Answer:
    """A command's outcome: the run's status after it, or why it was refused."""

    status: Status | None
    refusal: str | None = None


def _offset_seconds(text: str) -> int:
    hours, minutes, seconds = text.removeprefix("T+").split(":")
    return int(hours) * 3600 + int(minutes) * 60 + int(seconds)


async def control(run_dir: Path, name: str, argument: str | None = None) -> Answer:
    """The board's one call into the control API (`status` or a command), so a change of the
    API's shape is adjusted here only."""
    try:
        result = await send_command(run_dir, name, argument)
    except NoLiveRun as exc:
        return Answer(None, exc.detail)
    if not result.get("ok"):
        return Answer(None, str(result.get("detail") or result.get("error") or "refused"))
    return Answer(
        Status(
            exercise_s=_offset_seconds(str(result["exercise"])),
            world=str(result["world"]),
            move=int(result["move"]),
            paused=bool(result["paused"]),
            speed=str(result["speed"]),
            fired=frozenset(result.get("fired", ())),
            held=frozenset(result.get("held", ())),
            skipped=frozenset(result.get("skipped", ())),
        )
    )


@dataclass
class MselRow:
    id: str
    move: int
    at: str  # T+ offset, or the trigger it waits for
    world: str
    channel: str
    subject: str
    to: str
    due_s: float | None  # exercise seconds, None for one fired by a trigger
    status: str = "pending"  # pending | held | waiting (held past its time) | fired | skipped


@dataclass
class ExpectationRow:
    id: str
    inject: str
    check: str
    who: str
    within_s: float
    deadline: str = ""  # world time, once its inject fired
    status: str = "not open"  # not open | pending | met | missed


@dataclass
class Letter:
    label: str
    sender: str
    recipient: str
    t: int  # exercise ms
    subject: str
    receipts: list[tuple[str, int]] = field(default_factory=list)  # (event, exercise ms)


@dataclass
class Event:
    t: str
    world: str
    kind: str
    summary: str


class Board:
    """The run as the log tells it, record by record (`feed`), merged with the latest status."""

    def __init__(self, scenario: Scenario) -> None:
        self.scenario = scenario
        clocks = Clocks(scenario.clock, 1.0)
        self.msel: dict[str, MselRow] = {}
        self.expectations: dict[str, ExpectationRow] = {}
        for inject in scenario.injects:
            t = clocks.scheduled(inject)
            self.msel[inject.id] = MselRow(
                id=inject.id,
                move=clocks.span_at(t).move.id if t is not None else 0,
                at=format_offset(t) if t is not None else _trigger(inject),
                world=_minute(clocks.world_at(t)) if t is not None else "",
                channel=inject.channel.value,
                subject=inject.subject,
                to=", ".join(inject.to),
                due_s=t,
            )
            for exp in inject.expect:
                self.expectations[exp.id] = ExpectationRow(
                    exp.id, inject.id, exp.check.value, f"{exp.from_} → {exp.to}", exp.within
                )
        self.parties = [party.name for party in scenario.parties]
        self.letters: dict[str, Letter] = {}
        self.latest: deque[Event] = deque(maxlen=LATEST)
        self.now_ms = 0
        self.ended = False
        self.status: Status | None = None

    def feed(self, record: dict[str, Any]) -> None:
        kind, data = record["kind"], record.get("data", {})
        self.now_ms = max(self.now_ms, int(record["t"]))
        inject = data.get("inject")
        if kind in ("inject_fired", "inject_tasked"):
            self._set(inject, "fired")
            for exp in self.scenario.inject(inject).expect:
                row = self.expectations[exp.id]
                row.status = "pending"
                fired_at = datetime.fromisoformat(record["world"])
                row.deadline = _minute(fired_at + timedelta(seconds=exp.within))
        elif kind == "inject_skipped":
            self._set(inject, "skipped")
        elif kind == "inject_held":
            self._set(inject, "held")
        elif kind == "inject_released":
            self._set(inject, "pending")
        elif kind in ("expectation_met", "expectation_missed"):
            outcome = self.expectations.get(data["expectation"])
            if outcome is not None:
                outcome.status = kind.removeprefix("expectation_")
        elif kind == "letter_sent":
            self.letters[data["letter"]] = Letter(
                data["letter"], data["from"], data["to"], int(record["t"]), data.get("subject", "")
            )
        elif kind == "receipt" and data.get("letter") in self.letters:
            self.letters[data["letter"]].receipts.append((data["event"], int(record["t"])))
        elif kind == "run_ended":
            self.ended = True
        self.latest.appendleft(
            Event(format_offset(record["t"] / 1000), record["world"][:16], kind, _summary(data))
        )

    def _set(self, inject: str | None, status: str) -> None:
        if inject in self.msel:
            self.msel[inject].status = status

    def observe(self, status: Status | None) -> bool:
        """Take the latest status; True when it changed what the board shows."""
        changed = _shown(status) != _shown(self.status)  # the clocks tick in the page itself
        self.status = status
        if status is not None:
            for row in self.msel.values():
                if row.id in status.fired:
                    row.status = "fired"
                elif row.id in status.skipped:
                    row.status = "skipped"
                elif row.id in status.held:
                    due = row.due_s is not None and row.due_s <= status.exercise_s
                    row.status = "waiting" if due else "held"
                elif row.status in ("held", "waiting"):  # released
                    row.status = "pending"
        return changed

    def progress(self) -> tuple[int, int]:
        """(injects done: fired or skipped, injects in the MSEL)."""
        done = sum(row.status in ("fired", "skipped") for row in self.msel.values())
        return done, len(self.msel)


def _shown(status: Status | None) -> tuple[Any, ...] | None:
    if status is None:
        return None
    return (status.move, status.paused, status.speed, status.fired, status.held, status.skipped)


def _trigger(inject: Inject) -> str:
    """When an inject without a time of its own fires."""
    after = inject.after
    if after is None:
        return "contingency"
    return f"after {after.inject or after.expectation} {after.outcome}"


def _minute(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%d %H:%M")


def _summary(data: dict[str, Any]) -> str:
    parts = [
        f"{key} {data[key]}"
        for key in ("command", "argument", "inject", "letter", "from", "to", "event", "expectation")
        if isinstance(data.get(key), str | int)
    ]
    return ", ".join(parts) or str(data.get("title", ""))


class LogTail:
    """The run's event log read as it grows: complete lines only, each decoded once and its
    hash chain checked against the one before."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._offset = 0
        self._head = ZERO_HASH
        self._seq = 0

    def new_records(self) -> list[dict[str, Any]]:
        try:
            with self.path.open("rb") as handle:
                handle.seek(self._offset)
                chunk = handle.read()
        except OSError:
            return []
        complete = chunk[: chunk.rfind(b"\n") + 1]
        self._offset += len(complete)
        records = []
        for line in complete.splitlines():
            record = json.loads(line)
            if record.get("seq") != self._seq or record_hash(self._head, record) != record.get(
                "hash"
            ):
                raise LogError(f"{self.path}: record {self._seq} breaks the hash chain")
            self._seq, self._head = self._seq + 1, record["hash"]
            records.append(record)
        return records
