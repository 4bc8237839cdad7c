"""The exercise's event log: append-only JSON lines, each record hash-chained to the one before.

    {"seq": 3, "prev": "<hash of record 2>", "kind": "letter_sent", "t": 90000,
     "world": "2017-11-20T10:30:00.000Z", "wall": "2026-11-25T10:00:01.234Z", "move": 1,
     "data": {...}, "evidence": {...}, "hash": "<sha256>"}

- `t` is exercise time in milliseconds, `world` is story time, `wall` is when it was written.
- `data` is what happened, in exercise terms (letters by label: L1, L2, ...). Given the same
  scenario and seed, bots-only runs write the same `kind`, `t`, `world`, `move` and `data`,
  record for record: `projection` is that part, and replay compares it.
- `evidence` is what proves it and differs every run: letter ids, envelopes, seals, receipts.
- `hash` = sha256(prev + "\\n" + canonical JSON of the record without `hash`), so editing,
  dropping or reordering any line breaks the chain from there on; the report prints the head.

No floats anywhere (canonical JSON refuses them): probabilities and draws are written as text.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from channel.protocol.canonical import ZERO_HASH, canonical_json, format_time, now_utc, sha256_hex
from channel.protocol.errors import ChannelError

LOG_FILE = "events.jsonl"  # in every run folder
VOLATILE = ("wall", "evidence", "hash", "prev")


class LogError(ChannelError):
    """The event log is unreadable or its hash chain is broken."""

    code = "invalid-event-log"
    exit_code = 3


@dataclass(frozen=True)
class Stamp:
    """The three clocks at one moment (exercise ms, world time as text, move)."""

    t: int
    world: str
    move: int


def b64(data: bytes) -> str:
    """Bytes in a record (keys, seals, escrowed contents) are standard base64 text."""
    return base64.b64encode(data).decode()


def record_hash(prev: str, record: Mapping[str, Any]) -> str:
    body = {key: value for key, value in record.items() if key != "hash"}
    return sha256_hex(prev.encode() + b"\n" + canonical_json(body))


class EventLog:
    """Append records to a log file, chaining each to the last. Flushed per record, fsynced on
    close: a crashed run keeps everything up to its last line."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.seq = 0
        self.head = ZERO_HASH
        self._file: IO[str] | None = None

    def __enter__(self) -> EventLog:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        # "x": a log is never appended to across runs, so one file is one run.
        self._file = self.path.open("x", encoding="utf-8")
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._file is not None:
            self._file.flush()
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None

    def write(
        self,
        kind: str,
        stamp: Stamp,
        data: Mapping[str, Any],
        evidence: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        if self._file is None:
            raise LogError("the event log is closed")
        record: dict[str, Any] = {
            "seq": self.seq,
            "prev": self.head,
            "kind": kind,
            "t": stamp.t,
            "world": stamp.world,
            "wall": format_time(now_utc()),
            "move": stamp.move,
            "data": _clean(data),
            "evidence": _clean(evidence or {}),
        }
        record["hash"] = record_hash(self.head, record)
        self._file.write(json.dumps(record, ensure_ascii=False, separators=(",", ":")) + "\n")
        self._file.flush()
        self.seq, self.head = self.seq + 1, record["hash"]
        return record


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every record as written, the chain checked: LogError names the first line that does not
    fit. Replay compares these raw records; readers want `read_records`."""
    return list(_verified(path))


def read_records(path: Path) -> list[Record]:
    """Every record, the chain checked and each decoded to its typed model (see `decode`)."""
    return decode_all(_verified(path))


def run_started(path: Path) -> dict[str, Any]:
    """The first record of a log (safe to read while a live run appends to it)."""
    try:
        with path.open(encoding="utf-8") as handle:
            record = json.loads(handle.readline())
    except (OSError, ValueError):
        raise LogError(f"{path} is missing or unreadable: no exercise run there") from None
    if not isinstance(record, dict) or record.get("kind") != "run_started":
        raise LogError(f"{path} does not start with run_started")
    return record


def _verified(path: Path) -> Iterator[dict[str, Any]]:
    prev = ZERO_HASH
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as exc:
        raise LogError(f"cannot read the event log {path}: {exc.strerror}") from None
    if not lines:
        raise LogError(f"{path} is empty: not an event log")
    for number, line in enumerate(lines, start=1):
        try:
            record = json.loads(line)
        except ValueError:
            raise LogError(f"{path}:{number}: not a JSON record") from None
        if not isinstance(record, dict) or record.get("seq") != number - 1:
            raise LogError(f"{path}:{number}: record out of sequence")
        if record.get("prev") != prev or record_hash(prev, record) != record.get("hash"):
            raise LogError(f"{path}:{number}: the hash chain is broken (edited or reordered?)")
        prev = record["hash"]
        yield record


def projection(record: Mapping[str, Any]) -> dict[str, Any]:
    """The part of a record that the same scenario and seed reproduce exactly."""
    return {key: value for key, value in record.items() if key not in VOLATILE}


def first_divergence(
    left: list[dict[str, Any]], right: list[dict[str, Any]]
) -> tuple[int, dict[str, Any] | None, dict[str, Any] | None] | None:
    """Where two runs' projections first differ, or None if they are identical."""
    for index in range(max(len(left), len(right))):
        a = projection(left[index]) if index < len(left) else None
        b = projection(right[index]) if index < len(right) else None
        if a != b:
            return index, a, b
    return None


def _clean(value: Any) -> Any:
    """Drop None values (canonical JSON omits absent fields) all the way down."""
    if isinstance(value, Mapping):
        return {str(k): _clean(v) for k, v in value.items() if v is not None}
    if isinstance(value, list | tuple):
        return [_clean(v) for v in value]
    return value


# --- typed records: the log decoded once, at the boundary ---------------------------------------
#
# Readers (the report, the tally) take these instead of raw dicts. `data` models allow extra
# fields, so a writer adding a field never breaks an older reader; a field a reader relies on that
# is missing or of the wrong type is a LogError naming the record. A kind this reader does not know
# (a log written by a newer runner) is kept as a `GenericRecord` and ignored by every figure.


class _Data(BaseModel):
    model_config = ConfigDict(frozen=True, extra="allow", populate_by_name=True)


class ScenarioInfo(_Data):
    title: str = ""
    revision: str | int | None = None
    digest: str = ""
    file: str = ""
    marking: str = ""
    summary: str = ""
    transcript: str = ""


class Seat(_Data):
    name: str
    label: str | None = None
    play: str = ""
    player: str | None = None

    @property
    def person(self) -> bool:
        """A seat a person plays (not a bot, not control)."""
        return self.play == "human"


class PlannedObjective(_Data):
    id: str
    text: str = ""


class PlannedMove(_Data):
    id: int
    title: str = ""
    t: int | None = None
    world: str | None = None


class PlannedExpectation(_Data):
    id: str
    check: str = ""
    sender: str | None = Field(None, alias="from")
    to: str | None = None
    within: int | None = None
    score: int | None = None
    contingency: str | bool | None = None  # the inject a miss fires (old logs: a flag)
    objectives: list[str] = []
    text: str = ""


class PlannedInject(_Data):
    id: str
    move: int | None = None
    channel: str = "letter"
    sender: str | None = Field(None, alias="from")
    to: list[str] = []
    subject: str = ""
    objectives: list[str] = []
    contingency: bool = False
    t: int | None = None
    expect: list[PlannedExpectation] = []


class RunStartedData(_Data):
    scenario: ScenarioInfo = ScenarioInfo()
    seed: int | None = None
    speed: str | None = None
    rehearse: bool = False
    parties: list[Seat] = []
    objectives: list[PlannedObjective] = []
    moves: list[PlannedMove] = []
    injects: list[PlannedInject] = []
    end: int | None = None
    world_speed: str | None = None
    latency: dict[str, str] = {}

    def seat(self, name: str) -> Seat | None:
        return next((seat for seat in self.parties if seat.name == name), None)

    @property
    def people(self) -> frozenset[str]:
        """The seats played by people."""
        return frozenset(seat.name for seat in self.parties if seat.person)


class MoveStartedData(_Data):
    id: int
    title: str = ""


class InjectFiredData(_Data):
    inject: str
    channel: str = "letter"
    sender: str | None = Field(None, alias="from")
    to: list[str] = []
    subject: str = ""
    cause: str = "scheduled"
    text: str | None = None
    letters: list[str] = []


class InjectTaskedData(_Data):
    inject: str
    party: str
    channel: str = "letter"
    to: list[str] = []
    subject: str = ""
    action: str = ""


class InjectControlData(_Data):
    inject: str
    by: str = "control"


class LetterSentData(_Data):
    letter: str
    sender: str = Field(alias="from")
    to: str
    precedence: str | None = None
    in_reply_to: str | None = None
    subject: str | None = None
    inject: str | None = None
    by: str | None = None
    size: int | None = None
    forwards: str | None = None


class ReceiptData(_Data):
    letter: str
    event: str
    by: str | None = None
    seq: int | None = None
    reason: str | None = None


class DecisionData(_Data):
    party: str
    letter: str
    choice: str
    p_open: str | None = None
    draw: str | None = None
    think: int | None = None


class StateChangedData(_Data):
    party: str
    variable: str
    old: Any = None
    new: Any = None
    cause: str | None = None


class ExpectationData(_Data):
    expectation: str
    inject: str | None = None
    check: str = ""
    sender: str | None = Field(None, alias="from")
    to: str | None = None
    score: int | None = None
    letter: str | None = None
    contingency: str | bool | None = None  # the inject a miss fires (old logs: a flag)


class ActionFailedData(_Data):
    party: str
    action: str
    error: str = ""


class ControlData(_Data):
    command: str
    argument: Any = None


class EscrowedData(_Data):
    letter: str


class ReleasedData(_Data):
    letter: str
    by: str | None = None


class LetterFinalData(_Data):
    letter: str
    state: str
    receipts: int | None = None


class NoticeSentData(_Data):
    """A notice control sent a person's seat (a sealed letter from the control party)."""

    kind: str = ""
    inject: str | None = None
    party: str = ""
    letter_id: str | None = None


class RunEndedData(_Data):
    reason: str = "end"
    injects_fired: int | None = None
    contingencies_fired: int | None = None
    injects_skipped: int | None = None
    injects_total: int | None = None
    letters: int | None = None


class _Record(BaseModel):
    """The envelope every record shares; `data` is typed per kind in the subclasses."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    seq: int
    prev: str
    t: int
    world: str
    wall: str
    move: int
    evidence: dict[str, Any] = {}
    hash: str

    @property
    def letter_id(self) -> str | None:
        value = self.evidence.get("letter_id")
        return str(value) if value is not None else None


class RunStarted(_Record):
    kind: Literal["run_started"]
    data: RunStartedData


class MoveStarted(_Record):
    kind: Literal["move_started"]
    data: MoveStartedData


class InjectFired(_Record):
    kind: Literal["inject_fired"]
    data: InjectFiredData


class InjectTasked(_Record):
    kind: Literal["inject_tasked"]
    data: InjectTaskedData


class InjectControlled(_Record):
    kind: Literal["inject_skipped", "inject_held", "inject_released"]
    data: InjectControlData


class LetterSent(_Record):
    kind: Literal["letter_sent"]
    data: LetterSentData


class ReceiptRecord(_Record):
    kind: Literal["receipt"]
    data: ReceiptData


class Decision(_Record):
    kind: Literal["decision"]
    data: DecisionData


class StateChanged(_Record):
    kind: Literal["state_changed"]
    data: StateChangedData


class ExpectationOutcome(_Record):
    kind: Literal["expectation_met", "expectation_missed"]
    data: ExpectationData


class ActionFailed(_Record):
    kind: Literal["action_failed"]
    data: ActionFailedData


class ControlRecord(_Record):
    kind: Literal["control"]
    data: ControlData


class Escrowed(_Record):
    kind: Literal["escrowed"]
    data: EscrowedData


class Released(_Record):
    kind: Literal["released"]
    data: ReleasedData


class LetterFinal(_Record):
    kind: Literal["letter_final"]
    data: LetterFinalData


class NoticeSent(_Record):
    kind: Literal["notice_sent"]
    data: NoticeSentData


class RunEnded(_Record):
    kind: Literal["run_ended"]
    data: RunEndedData


class GenericRecord(_Record):
    """A kind this reader does not know: kept (the chain covers it) but counted nowhere."""

    kind: str
    data: dict[str, Any] = {}


KnownRecord = Annotated[
    RunStarted
    | MoveStarted
    | InjectFired
    | InjectTasked
    | InjectControlled
    | LetterSent
    | ReceiptRecord
    | Decision
    | StateChanged
    | ExpectationOutcome
    | ActionFailed
    | ControlRecord
    | Escrowed
    | Released
    | LetterFinal
    | NoticeSent
    | RunEnded,
    Field(discriminator="kind"),
]
Record = KnownRecord | GenericRecord
KINDS: frozenset[str] = frozenset(
    kind
    for model in get_args(get_args(KnownRecord)[0])
    for kind in get_args(model.model_fields["kind"].annotation)
)
_KNOWN: TypeAdapter[KnownRecord] = TypeAdapter(KnownRecord)


def decode(raw: Mapping[str, Any] | Record) -> Record:
    """One record, typed; LogError names its seq and kind when a field a reader needs is wrong."""
    if isinstance(raw, _Record):
        return raw
    try:
        if raw.get("kind") in KINDS:
            return _KNOWN.validate_python(raw)
        return GenericRecord.model_validate(raw)
    except ValidationError as exc:
        problem = exc.errors()[0]
        where = ".".join(str(part) for part in problem["loc"][1:])
        raise LogError(
            f"record {raw.get('seq')} ({raw.get('kind')}): {where}: {problem['msg']}"
        ) from None


def decode_all(records: Iterable[Mapping[str, Any] | Record]) -> list[Record]:
    return [decode(record) for record in records]
