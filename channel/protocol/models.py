"""Pydantic models: the wire contract between client and courier, and the offline file formats.

Binary values travel as standard base64 (RFC 4648 section 4, padded). Timestamps are RFC 3339 UTC
strings with millisecond precision. Unknown fields are refused everywhere.
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Mapping
from enum import StrEnum
from functools import cached_property
from typing import Annotated, Any, Literal, Self

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PlainSerializer, WithJsonSchema

from channel.protocol.canonical import TIMESTAMP_PATTERN, canonical_json, sha256_hex
from channel.protocol.lifecycle import State
from channel.protocol.names import LETTER_ID_PATTERN, PARTY_NAME_PATTERN

PROTOCOL_VERSION = 1
HPKE_SUITE = "hpke-x25519-hkdfsha256-chacha20poly1305"
MAX_CIPHERTEXT_BYTES = 1024 * 1024
MAX_REASON_CHARS = 500


def _b64decode(value: Any) -> bytes:
    if isinstance(value, bytes):
        return value
    if not isinstance(value, str):
        raise ValueError("expected a base64 string")
    try:
        decoded = base64.b64decode(value, validate=True)
    except binascii.Error as exc:
        raise ValueError("invalid base64") from exc
    # One encoding per value: refuse non-zero padding bits, so signed bytes have a single spelling.
    if base64.b64encode(decoded).decode("ascii") != value:
        raise ValueError("non-canonical base64")
    return decoded


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# Canonical base64 (see _b64decode): a last quantum's unused bits are zero, which leaves only
# these characters before the padding.
_B64_CHAR = "[A-Za-z0-9+/]"
_B64_TAIL = {1: f"{_B64_CHAR}[AQgw]==", 2: f"{_B64_CHAR}{{2}}[AEIMQUYcgkosw048]="}


def _b64_schema(min_bytes: int = 0, max_bytes: int | None = None) -> WithJsonSchema:
    """How base64 fields look on the wire: a pattern that admits exactly the canonical encodings
    the parser takes, with their size in bytes once decoded (character limits alone are looser:
    88 characters may decode to 64, 65 or 66 bytes)."""
    schema: dict[str, Any] = {"type": "string", "contentEncoding": "base64"}
    if min_bytes == max_bytes:
        groups, rest = divmod(min_bytes, 3)
        schema["pattern"] = f"^(?:{_B64_CHAR}{{4}}){{{groups}}}{_B64_TAIL.get(rest, '')}$"
        schema["description"] = f"{min_bytes} bytes, standard padded base64"
        return WithJsonSchema(schema)
    schema["pattern"] = f"^(?:{_B64_CHAR}{{4}})*(?:{_B64_TAIL[1]}|{_B64_TAIL[2]})?$"
    if min_bytes:
        schema["minLength"] = 4 * -(-min_bytes // 3)
    if max_bytes is not None:
        # A pattern bounding the decoded size exactly would need a 350 000-fold repeat; the
        # characters bound it to within 2 bytes and the decoded bound is stated.
        schema["maxLength"] = 4 * -(-max_bytes // 3)
        schema["x-decoded-bytes"] = {"minimum": min_bytes, "maximum": max_bytes}
        schema["description"] = (
            f"{min_bytes} to {max_bytes} bytes once decoded, standard padded base64"
        )
    return WithJsonSchema(schema)


_B64 = (BeforeValidator(_b64decode), PlainSerializer(b64, return_type=str, when_used="json"))
B64Bytes = Annotated[bytes, *_B64, _b64_schema()]
Key32 = Annotated[bytes, *_B64, Field(min_length=32, max_length=32), _b64_schema(32, 32)]
Signature = Annotated[bytes, *_B64, Field(min_length=64, max_length=64), _b64_schema(64, 64)]
MAX_CIPHERTEXT_WIRE = MAX_CIPHERTEXT_BYTES + 256
Ciphertext = Annotated[
    bytes, *_B64, Field(max_length=MAX_CIPHERTEXT_WIRE), _b64_schema(1, MAX_CIPHERTEXT_WIRE)
]
PartyName = Annotated[str, Field(pattern=PARTY_NAME_PATTERN)]
LetterId = Annotated[str, Field(pattern=LETTER_ID_PATTERN)]
Timestamp = Annotated[str, Field(pattern=TIMESTAMP_PATTERN)]
Sha256Hex = Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
Reason = Annotated[str, Field(min_length=1, max_length=MAX_REASON_CHARS)]


class Wire(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    def signable(self, *, exclude: set[str] | None = None) -> bytes:
        """Canonical JSON of this model (absent optionals omitted), the bytes signatures cover."""
        if exclude is None:
            return self.canonical
        return canonical_json(self.model_dump(mode="json", exclude_none=True, exclude=exclude))

    @cached_property
    def canonical(self) -> bytes:
        """`signable()`, computed once: the model is frozen, so its canonical bytes never change
        (digests, chain hashes and signatures all need them)."""
        return canonical_json(self.model_dump(mode="json", exclude_none=True))

    def model_copy(self, *, update: Mapping[str, Any] | None = None, deep: bool = False) -> Self:
        """A copy; its canonical bytes are computed afresh (pydantic would copy the cache)."""
        copied = super().model_copy(update=update, deep=deep)
        copied.__dict__.pop("canonical", None)
        return copied


class Precedence(StrEnum):
    """Military message precedence, lowest to highest."""

    ROUTINE = "routine"
    PRIORITY = "priority"
    IMMEDIATE = "immediate"
    FLASH = "flash"


class Envelope(Wire):
    """What the courier and the recipient see before a letter is opened. The seal signs it."""

    v: Literal[1] = 1
    id: LetterId
    sender: PartyName
    recipient: PartyName
    sent_at: Timestamp
    expires_at: Timestamp
    precedence: Precedence = Precedence.ROUTINE
    in_reply_to: LetterId | None = None
    suite: Literal["hpke-x25519-hkdfsha256-chacha20poly1305"] = (
        "hpke-x25519-hkdfsha256-chacha20poly1305"
    )
    recipient_key: Sha256Hex  # sha256 of the recipient's X25519 public key sealed to
    ciphertext_sha256: Sha256Hex
    ciphertext_size: Annotated[int, Field(ge=1, le=MAX_CIPHERTEXT_WIRE)]

    def digest(self) -> str:
        return sha256_hex(self.signable())


class SealedLetter(Wire):
    """A letter as it travels: envelope, the sender's seal over it, and the HPKE ciphertext."""

    envelope: Envelope
    seal: Signature
    ciphertext: Ciphertext


class LetterContent(Wire):
    """The plaintext inside the ciphertext; the sender signs it (non-repudiation of origin)."""

    v: Literal[1] = 1
    letter_id: LetterId
    sender: PartyName
    recipient: PartyName
    sent_at: Timestamp
    subject: str = ""
    body: str


class SignedContent(Wire):
    content: LetterContent
    signature: Signature


class Receipt(Wire):
    """One signed step of a letter's life. `prev` chains it to the receipt before it."""

    v: Literal[1] = 1
    letter_id: LetterId
    seq: Annotated[int, Field(ge=0)]
    event: State
    at: Timestamp
    envelope_sha256: Sha256Hex
    reason: Reason | None = None
    recipient_signature: Signature | None = None
    prev: Sha256Hex
    signature: Signature  # the courier's, over every other field

    def body_bytes(self) -> bytes:
        """What the courier signs: the receipt without its own signature."""
        return self.signable(exclude={"signature"})

    def chain_hash(self) -> str:
        """What the next receipt's `prev` holds: sha256 of the whole signed receipt."""
        return sha256_hex(self.signable())


class Decision(Wire):
    """What a recipient signs when it opens a letter or returns it unopened."""

    v: Literal[1] = 1
    decision: Literal["opened", "returned_unopened"]
    letter_id: LetterId
    envelope_sha256: Sha256Hex
    reason: Reason | None = None


class PublicKeys(Wire):
    """A party's public keys: Ed25519 for signing, X25519 for HPKE."""

    name: PartyName
    signing_key: Key32
    encryption_key: Key32


class PartyRecord(PublicKeys):
    fingerprint: str
    registered_at: Timestamp


class RegisterRequest(PublicKeys):
    invite: Annotated[str, Field(min_length=16, max_length=128)] | None = None


class CourierKey(Wire):
    signing_key: Key32
    fingerprint: str


class LetterSummary(Wire):
    """An inbox or outbox row: envelope and state, never content."""

    id: LetterId
    sender: PartyName
    recipient: PartyName
    state: State
    precedence: Precedence
    sent_at: Timestamp
    expires_at: Timestamp
    in_reply_to: LetterId | None = None
    envelope: Envelope
    seal: Signature


class LetterList(Wire):
    letters: list[LetterSummary]


class OpenRequest(Wire):
    signature: Signature  # the recipient's over Decision(decision="opened")


class ReturnRequest(Wire):
    reason: Reason | None = None
    signature: Signature  # the recipient's over Decision(decision="returned_unopened")


class ChainKeys(Wire):
    """Public keys needed to verify a chain offline; cross-check them against your keyring."""

    courier: Key32
    sender: Key32
    recipient: Key32


class LetterStatus(Wire):
    """A letter's envelope, seal and whole receipt chain: the file `channel verify` reads."""

    id: LetterId
    state: State
    envelope: Envelope
    seal: Signature
    receipts: list[Receipt]
    keys: ChainKeys


class OpenedLetter(Wire):
    """The recipient's one release of the ciphertext, with the `opened` receipt."""

    letter: SealedLetter
    receipts: list[Receipt]


class ReturnedLetter(Wire):
    """A letter back in its sender's hands, byte for byte as sent, with its receipt chain."""

    letter: SealedLetter
    state: State
    receipts: list[Receipt]


class Health(Wire):
    status: Literal["ok"]
    version: str


class ReceiptList(Wire):
    receipts: list[Receipt]


class LiveEvent(Wire):
    """One event on a party's stream: a new letter in its inbox, or a receipt on a letter it sent
    or received. Thin: what a watcher shows (ids, state, the receipt's seq and time, the route and
    precedence); the envelope and the signed receipts are a GET of the letter's status away.
    `id` is the stream's id for it (the SSE event id, for reconnecting with Last-Event-ID); it is
    not stored inside the event.
    """

    id: str | None = None
    kind: Literal["letter", "receipt"]
    letter_id: LetterId
    sender: PartyName
    recipient: PartyName
    precedence: Precedence = Precedence.ROUTINE  # left out when routine, as most letters are
    state: State
    seq: Annotated[int, Field(ge=0)]
    at: Timestamp  # the receipt's time
