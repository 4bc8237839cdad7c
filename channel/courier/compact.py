"""How the store keeps envelopes and receipts: packed binary, a third of their JSON's size.

What a letter's key and its other fields already say (its id and recipient; a receipt's
letter id, seq, envelope digest and `prev`, which is the chain hash of the receipt before it) is
not repeated; hashes and signatures are raw bytes, times are milliseconds. Unpacking rebuilds the
typed models, whose canonical JSON is exactly the bytes that were sealed and signed (canonical
JSON is a function of the fields, and every time has millisecond precision), so a seal or a
receipt read back verifies as the original did. Pure: no I/O.
"""

from __future__ import annotations

import struct
from typing import get_args

from channel.protocol.canonical import ZERO_HASH, format_time, from_millis, to_millis
from channel.protocol.lifecycle import State
from channel.protocol.models import Envelope, Precedence, Receipt

# Bumped if a layout below changes; a record in another format is refused, never misread.
_ENVELOPE_FORMAT, _RECEIPT_FORMAT = 1, 1
_PRECEDENCES = list(Precedence)
_STATES = list(State)
_SUITES: list[str] = list(get_args(Envelope.model_fields["suite"].annotation))
# format, v, precedence, suite, sent ms, expires ms, ciphertext size, recipient key, ct digest
_ENVELOPE = struct.Struct(">BBBBqqI32s32s")
# format, event, flags (1: reason, 2: recipient signature), at ms, courier signature
_RECEIPT = struct.Struct(">BBBq64s")
_REASON, _RECIPIENT_SIGNATURE = 1, 2


def pack_envelope(env: Envelope) -> bytes:
    head = _ENVELOPE.pack(
        _ENVELOPE_FORMAT,
        env.v,
        _PRECEDENCES.index(env.precedence),
        _SUITES.index(env.suite),
        to_millis(env.sent_at),
        to_millis(env.expires_at),
        env.ciphertext_size,
        bytes.fromhex(env.recipient_key),
        bytes.fromhex(env.ciphertext_sha256),
    )
    # Then the sender and the optional reply-to id; names and ids are ASCII without spaces.
    return head + f"{env.sender} {env.in_reply_to or ''}".encode("ascii")


def unpack_envelope(packed: bytes, *, letter_id: str, recipient: str) -> Envelope:
    form, v, precedence, suite, sent, expires, size, key, digest = _ENVELOPE.unpack_from(packed)
    if form != _ENVELOPE_FORMAT:
        raise ValueError(f"envelope record format {form} is not {_ENVELOPE_FORMAT}")
    sender, _, in_reply_to = packed[_ENVELOPE.size :].decode("ascii").partition(" ")
    return Envelope(
        v=v,
        id=letter_id,
        sender=sender,
        recipient=recipient,
        sent_at=format_time(from_millis(sent)),
        expires_at=format_time(from_millis(expires)),
        precedence=_PRECEDENCES[precedence],
        in_reply_to=in_reply_to or None,
        suite=_SUITES[suite],
        recipient_key=key.hex(),
        ciphertext_sha256=digest.hex(),
        ciphertext_size=size,
    )


def pack_receipt(receipt: Receipt) -> bytes:
    flags = (_REASON if receipt.reason is not None else 0) | (
        _RECIPIENT_SIGNATURE if receipt.recipient_signature is not None else 0
    )
    head = _RECEIPT.pack(
        _RECEIPT_FORMAT,
        _STATES.index(receipt.event),
        flags,
        to_millis(receipt.at),
        receipt.signature,
    )
    return head + (receipt.recipient_signature or b"") + (receipt.reason or "").encode("utf-8")


def unpack_chain(packed: list[bytes], *, letter_id: str, envelope_sha256: str) -> list[Receipt]:
    """A letter's receipts, in order: each `prev` is the chain hash of the one before."""
    chain: list[Receipt] = []
    prev = ZERO_HASH
    for seq, raw in enumerate(packed):
        receipt = unpack_receipt(
            raw, letter_id=letter_id, seq=seq, envelope_sha256=envelope_sha256, prev=prev
        )
        chain.append(receipt)
        prev = receipt.chain_hash()
    return chain


def unpack_receipt(
    packed: bytes, *, letter_id: str, seq: int, envelope_sha256: str, prev: str
) -> Receipt:
    form, event, flags, at, signature = _RECEIPT.unpack_from(packed)
    if form != _RECEIPT_FORMAT:
        raise ValueError(f"receipt record format {form} is not {_RECEIPT_FORMAT}")
    rest = packed[_RECEIPT.size :]
    recipient_signature = None
    if flags & _RECIPIENT_SIGNATURE:
        recipient_signature, rest = rest[:64], rest[64:]
    return Receipt(
        letter_id=letter_id,
        seq=seq,
        event=_STATES[event],
        at=format_time(from_millis(at)),
        envelope_sha256=envelope_sha256,
        reason=rest.decode("utf-8") if flags & _REASON else None,
        recipient_signature=recipient_signature,
        prev=prev,
        signature=signature,
    )
