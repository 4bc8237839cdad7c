"""What an exercise run leaves in its keyring home for the players' own clients.

An exercise run gives its players a keyring home (`RUN/keyring`). Beside the parties' keys the
runner keeps two small files there, which the CLI and the desk read when they find them:

- `exercise.json` (`ExerciseSeats`): the run, its marking, the control cell's party (the only
  sender whose letters are taken for notices, `channel.protocol.notice`) and the seats people
  play. Written once at the start.
- `labels.json`: the exercise's letter labels (`L3`) and the courier ids they stand for, as the
  report numbers them, rewritten (atomically) as letters are sent. A label works wherever a
  letter id does (`resolve_letter`).

Outside an exercise neither file exists and nothing changes.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from pathlib import Path
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from channel.protocol.errors import UnknownLetter
from channel.protocol.notice import CONTROL_PARTY

SEATS_FILE = "exercise.json"
LABELS_FILE = "labels.json"
_LABEL = re.compile(r"^[Ll][1-9][0-9]{0,5}$")


class ExerciseSeats(BaseModel):
    """The run a keyring home belongs to."""

    model_config = ConfigDict(frozen=True, extra="ignore")

    run: Annotated[str, Field(min_length=1)]
    title: str = ""
    marking: str = ""
    control: str = CONTROL_PARTY
    people: tuple[str, ...] = ()

    @classmethod
    def load(cls, home: Path) -> ExerciseSeats | None:
        """The run's description, or None outside an exercise (or when the file is unreadable)."""
        try:
            return cls.model_validate_json((home / SEATS_FILE).read_bytes())
        except (OSError, ValidationError):
            return None

    def save(self, home: Path) -> None:
        _write_atomic(home / SEATS_FILE, self.model_dump_json(indent=2).encode())


def load_labels(home: Path) -> dict[str, str]:
    """`{"L3": letter id}` for the run whose keyring `home` is; empty outside an exercise."""
    try:
        document = json.loads((home / LABELS_FILE).read_bytes())
    except (OSError, ValueError):
        return {}
    if not isinstance(document, dict):
        return {}
    return {str(k): str(v) for k, v in document.items()}


def save_labels(home: Path, labels: dict[str, str]) -> None:
    _write_atomic(home / LABELS_FILE, json.dumps(labels, indent=0).encode())


def label_of(labels: dict[str, str], letter_id: str) -> str | None:
    """The label of a letter, when the exercise numbered it."""
    for label, known in labels.items():
        if known == letter_id:
            return label
    return None


def resolve_letter(home: Path, reference: str) -> str:
    """A letter id from an id or, in an exercise, a label such as `L3` (any case)."""
    if not _LABEL.match(reference):
        return reference
    labels = load_labels(home)
    found = labels.get(reference.upper())
    if found is None:
        known = f" (this run has L1–L{len(labels)})" if labels else " (no letters labelled here)"
        raise UnknownLetter(f"no letter labelled {reference.upper()}{known}")
    return found


def _write_atomic(path: Path, data: bytes) -> None:
    """Readers never see half a file: write beside it, then rename over it."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "wb") as out:
            out.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
