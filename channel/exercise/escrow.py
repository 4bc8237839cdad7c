"""Escrow transcripts: a letter's content also sealed to the control cell's archive key.

The runner escrows the letters bots and control write. A person in an escrow exercise sends with
`channel exercise send`, which seals the same signed content to the archive key announced in the
run's log and leaves it in the run folder *before* sending, so the runner finds it as soon as the
letter appears. The courier still sees only the envelope; the control cell, holding the archive
key, can read the transcript after the exercise, each content signed by its sender.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey

from channel.exercise.eventlog import LOG_FILE, run_started
from channel.party.client import Client
from channel.party.keyring import Keyring
from channel.protocol.errors import BadRequest
from channel.protocol.models import LetterContent, Precedence, SignedContent
from channel.protocol.seal import escrow_content, open_escrow, sign_content

ARCHIVE_KEY_FILE = "archive.key"
ESCROW_DIR = "escrow"


def marked(marking: str, subject: str) -> str:
    marking = marking.strip()
    return f"{marking} — {subject}" if marking else subject


async def send_escrowed(
    run_dir: Path,
    name: str,
    to: str,
    body: str,
    subject: str,
    precedence: Precedence,
    in_reply_to: str | None = None,
) -> str:
    """Send as `name` in the run in `run_dir`, escrowing first; returns the letter id."""
    started = run_started(run_dir / LOG_FILE)
    evidence = started["evidence"]
    if "archive_key" not in evidence:
        raise BadRequest("this exercise does not escrow letters: send with `channel send`")
    archive_key = base64.b64decode(evidence["archive_key"])
    ring = Keyring(run_dir / "keyring")
    keys = ring.load(name)
    subject = marked(started["data"]["scenario"]["marking"], subject)
    async with Client(evidence["courier_url"], keys) as client:
        client.trust_courier(base64.b64decode(evidence["courier_key"]))
        sealed = await client.seal(
            to, body, subject=subject, precedence=precedence, in_reply_to=in_reply_to
        )
        env = sealed.envelope
        content = LetterContent(
            letter_id=env.id,
            sender=name,
            recipient=to,
            sent_at=env.sent_at,
            subject=subject,
            body=body,
        )
        blob = escrow_content(sign_content(keys, content), archive_key)
        _write_private(run_dir / ESCROW_DIR / f"{env.id}.bin", blob)
        ring.save_sent(name, sealed)
        ring.keep_copy(keys, sealed, subject, body)  # the player's outbox shows its subject
        await client.send_sealed(sealed)
    return env.id


def read_escrow(run_dir: Path, letter_id: str, blob: bytes) -> SignedContent:
    """For the control cell after the exercise: the content, with the archive key in run_dir."""
    raw = (run_dir / ARCHIVE_KEY_FILE).read_bytes()
    return open_escrow(blob, X25519PrivateKey.from_private_bytes(raw), letter_id)


def _write_private(path: Path, data: bytes) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)
