"""The transcript of an exercise, where its policy allows one: what the letters said.

- `escrow`: every letter's signed content was sealed to the control cell's archive key
  (`archive.key` in the run folder); the transcript opens each one.
- `post_release`: the bots' opened letters are released into the log at the end; people release
  theirs afterwards with `channel exercise release`, which copies the contents they opened from
  their keyring into `released/<party>/` in the run folder.

Whatever its source, each content is checked against the log before it is believed: the letter
id, sender and recipient must match a letter the exercise saw, and the content must carry the
sender's signature (with the sender's key from `run_started`, not from the file itself). A letter
returned unopened never appears: its content was never released to anyone.
"""

from __future__ import annotations

import base64
import os
from dataclasses import dataclass
from pathlib import Path

from pydantic import ValidationError

from channel.exercise.escrow import ARCHIVE_KEY_FILE, read_escrow
from channel.exercise.eventlog import (
    LOG_FILE,
    Escrowed,
    LetterSent,
    LetterSentData,
    Record,
    Released,
    RunStarted,
    read_records,
)
from channel.party.keyring import Keyring
from channel.protocol.errors import BadRequest, IntegrityError
from channel.protocol.models import SignedContent
from channel.protocol.seal import verify_content

RELEASED_DIR = "released"


@dataclass(frozen=True)
class Entry:
    label: str
    letter_id: str
    sender: str
    recipient: str
    subject: str
    body: str
    source: str  # "escrow", "released by <party>"


@dataclass(frozen=True)
class Transcript:
    title: str
    entries: list[Entry]
    rejected: list[str]  # contents that did not check out, and why


def release(run_dir: Path, party: str) -> list[Path]:
    """Copy the contents `party` opened during the run from its keyring into the run folder."""
    records = read_records(run_dir / LOG_FILE)
    ours = {r.letter_id for r in records if isinstance(r, LetterSent) and r.data.to == party}
    received = Keyring(run_dir / "keyring").home / party / "received"
    target = run_dir / RELEASED_DIR / party
    target.mkdir(parents=True, exist_ok=True, mode=0o700)
    copied = []
    for path in sorted(received.glob("*.json")) if received.is_dir() else []:
        if path.stem in ours:
            copy = target / path.name
            copy.write_bytes(path.read_bytes())
            os.chmod(copy, 0o600)
            copied.append(copy)
    return copied


def transcript(run_dir: Path) -> Transcript:
    records = read_records(run_dir / LOG_FILE)
    started = records[0]
    if not isinstance(started, RunStarted):
        raise BadRequest(f"{run_dir / LOG_FILE} does not start with run_started")
    if started.data.scenario.transcript == "metadata_only":
        raise BadRequest("this exercise was metadata_only: there is no transcript to read")
    keys = {
        name: base64.b64decode(party["signing_key"])
        for name, party in started.evidence["party_keys"].items()
    }
    letters = {r.letter_id: r.data for r in records if isinstance(r, LetterSent) and r.letter_id}
    offered = _escrowed(run_dir, records) + _released(run_dir, records)
    entries: dict[str, Entry] = {}
    rejected = []
    for content, source in offered:
        problem = _problem(content, letters, keys)
        if problem is not None:
            rejected.append(f"{content.content.letter_id} ({source}): {problem}")
            continue
        inner, data = content.content, letters[content.content.letter_id]
        entry = Entry(
            data.letter, inner.letter_id, inner.sender, inner.recipient, inner.subject,
            inner.body, source,
        )  # fmt: skip
        entries.setdefault(inner.letter_id, entry)
    ordered = sorted(entries.values(), key=lambda e: int(e.label.removeprefix("L")))
    return Transcript(started.data.scenario.title, ordered, rejected)


def _escrowed(run_dir: Path, records: list[Record]) -> list[tuple[SignedContent, str]]:
    escrowed = [r for r in records if isinstance(r, Escrowed)]
    if not escrowed:
        return []
    if not (run_dir / ARCHIVE_KEY_FILE).is_file():
        raise BadRequest(
            f"the archive key is not in {run_dir}: only the control cell can read this"
        )
    ids = {r.data.letter: r.letter_id for r in records if isinstance(r, LetterSent) and r.letter_id}
    opened = []
    for record in escrowed:
        letter_id = ids[record.data.letter]
        blob = base64.b64decode(record.evidence["archive"])
        opened.append((read_escrow(run_dir, letter_id, blob), "escrow"))
    return opened


def _released(run_dir: Path, records: list[Record]) -> list[tuple[SignedContent, str]]:
    found = [
        (SignedContent.model_validate(r.evidence["content"]), f"released by {r.data.by}")
        for r in records
        if isinstance(r, Released)
    ]
    for path in sorted((run_dir / RELEASED_DIR).glob("*/*.json")):
        try:
            content = SignedContent.model_validate_json(path.read_bytes())
        except ValidationError:
            raise IntegrityError(f"{path} is not a released letter") from None
        found.append((content, f"released by {path.parent.name}"))
    return found


def _problem(
    content: SignedContent, letters: dict[str, LetterSentData], keys: dict[str, bytes]
) -> str | None:
    inner = content.content
    logged = letters.get(inner.letter_id)
    if logged is None:
        return "no such letter in this exercise"
    if (logged.sender, logged.to) != (inner.sender, inner.recipient):
        return "sender or recipient differ from the letter the exercise saw"
    if not verify_content(content, keys[inner.sender]):
        return f"not signed by {inner.sender}"
    return None


def render(result: Transcript) -> str:
    lines = [f"# Transcript: {result.title}", ""]
    for entry in result.entries:
        lines += [
            f"## {entry.label}: {entry.sender} → {entry.recipient}",
            "",
            f"*{entry.subject}* (letter `{entry.letter_id}`, {entry.source}; "
            "the sender's signature verified)",
            "",
            entry.body,
            "",
        ]
    if not result.entries:
        lines += ["(no letter content was escrowed or released)", ""]
    if result.rejected:
        lines += ["## Not included: these did not check out", ""]
        lines += [f"- {reason}" for reason in result.rejected] + [""]
    return "\n".join(lines)
