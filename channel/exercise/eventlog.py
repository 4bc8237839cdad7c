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
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

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
    """Every record, the chain checked: LogError names the first line that does not fit."""
    return list(_verified(path))


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
