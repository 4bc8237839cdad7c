"""The integrity of an exercise's record: every letter's final status, verified.

`integrity(records, letters)` checks each `letter_final` status with the keys `run_started`
announced, never with keys a status carries: the seal with the sender's signing key, the receipt
chain with the courier's and the recipient's, and every receipt logged during the run must be in
the final chain unchanged. It also reports the log's chain head and any letter with no final
status.
"""

from __future__ import annotations

import base64
import binascii
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from channel.exercise.eventlog import LetterFinal, LetterSent, ReceiptRecord, Record, RunStarted
from channel.exercise.report.comms import LetterTrack, Part
from channel.protocol.errors import IntegrityError
from channel.protocol.models import LetterStatus, Receipt
from channel.protocol.seal import verify_status


class LetterCheck(Part):
    letter: str
    letter_id: str | None
    sender: str | None
    recipient: str | None
    ok: bool
    reason: str


class Integrity(Part):
    scenario_digest: str
    chain_head: str
    records: int
    courier_key: str | None
    courier_url: str | None
    letters: list[LetterCheck]
    verified: int
    failed: int
    missing_final: list[str]

    @property
    def ok(self) -> bool:
        return self.failed == 0 and not self.missing_final


@dataclass(frozen=True)
class _TrustedKeys:
    """The keys run_started announced: the only keys the integrity checks trust."""

    courier: bytes | None
    signing: Mapping[str, bytes]


def _decode(value: Any) -> bytes | None:
    try:
        return base64.b64decode(str(value), validate=True)
    except (binascii.Error, ValueError):
        return None


def _trusted_keys(start: RunStarted) -> _TrustedKeys:
    evidence = start.evidence
    signing = {
        str(name): key
        for name, keys in evidence.get("party_keys", {}).items()
        if (key := _decode(keys.get("signing_key"))) is not None
    }
    courier = evidence.get("courier_key")
    return _TrustedKeys(_decode(courier) if courier else None, signing)


def integrity(
    start: RunStarted, records: Sequence[Record], letters: list[LetterTrack]
) -> Integrity:
    """The log's chain head, and every letter's final status checked with run_started's keys."""
    keys = _trusted_keys(start)
    logged = _logged_receipts(records)
    sent = {letter.label: letter for letter in letters}
    finals = [r for r in records if isinstance(r, LetterFinal)]
    checks = [check_final(final, sent.get(final.data.letter), keys, logged) for final in finals]
    finalised = {final.data.letter for final in finals}
    return Integrity(
        scenario_digest=start.data.scenario.digest,
        chain_head=records[-1].hash,
        records=len(records),
        courier_key=start.evidence.get("courier_key"),
        courier_url=start.evidence.get("courier_url"),
        letters=checks,
        verified=sum(check.ok for check in checks),
        failed=sum(not check.ok for check in checks),
        missing_final=[letter.label for letter in letters if letter.label not in finalised],
    )


def _logged_receipts(records: Sequence[Record]) -> dict[str, list[Mapping[str, Any]]]:
    """The signed receipts the log recorded during the run, by letter label."""
    logged: dict[str, list[Mapping[str, Any]]] = defaultdict(list)
    for record in records:
        receipt = record.evidence.get("receipt")
        if isinstance(record, LetterSent | ReceiptRecord) and receipt is not None:
            logged[record.data.letter].append(receipt)
    return logged


def check_final(
    final: LetterFinal,
    sent: LetterTrack | None,
    keys: _TrustedKeys,
    logged: Mapping[str, list[Mapping[str, Any]]],
) -> LetterCheck:
    """Verify one letter_final's status; the reason names the first check that fails."""
    label = final.data.letter
    try:
        status = LetterStatus.model_validate(final.evidence.get("status"))
    except ValidationError:
        return LetterCheck(
            letter=label,
            letter_id=sent.letter_id if sent else None,
            sender=sent.sender if sent else None,
            recipient=sent.recipient if sent else None,
            ok=False,
            reason="the final status is missing or unreadable",
        )
    problem = _status_problem(status, sent, keys) or _logged_problem(status, logged.get(label, []))
    return LetterCheck(
        letter=label,
        letter_id=status.id,
        sender=status.envelope.sender,
        recipient=status.envelope.recipient,
        ok=problem is None,
        reason=problem or f"seal and {len(status.receipts)} receipts verify",
    )


def _status_problem(
    status: LetterStatus, sent: LetterTrack | None, keys: _TrustedKeys
) -> str | None:
    envelope = status.envelope
    if sent is None:
        return "the log never sent this letter"
    if status.id != envelope.id or status.id != sent.letter_id:
        return f"the status is for letter {status.id}, the log sent {sent.letter_id}"
    if (envelope.sender, envelope.recipient) != (sent.sender, sent.recipient):
        return f"the envelope says {envelope.sender} → {envelope.recipient}, the log otherwise"
    sender_key = keys.signing.get(envelope.sender)
    recipient_key = keys.signing.get(envelope.recipient)
    if keys.courier is None or sender_key is None or recipient_key is None:
        return "run_started does not announce the courier's or a party's key"
    try:  # with the keys run_started announced
        verify_status(
            status, sender_key=sender_key, courier_key=keys.courier, recipient_key=recipient_key
        )
    except IntegrityError as exc:
        return exc.detail
    return None


def _logged_problem(status: LetterStatus, logged: list[Mapping[str, Any]]) -> str | None:
    """Receipts seen during the run must all be in the final chain, unchanged."""
    chain = {receipt.chain_hash() for receipt in status.receipts}
    for raw in logged:
        try:
            receipt = Receipt.model_validate(raw)
        except ValidationError:
            return "a receipt logged during the run is unreadable"
        if receipt.chain_hash() not in chain:
            return f"receipt {receipt.seq} logged during the run is not in the final chain"
    return None
