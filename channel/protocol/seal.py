"""The protocol's cryptography as pure functions over bytes and models.

Ed25519 (RFC 8032) for every signature, HPKE (RFC 9180, base mode, X25519 + HKDF-SHA256 +
ChaCha20-Poly1305) for letter contents. Every signature is over a domain-separation context
followed by canonical JSON, so a signature made for one purpose never verifies for another.
Every verification failure raises one opaque error of its kind and reveals nothing more.
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from cryptography.exceptions import InvalidSignature, InvalidTag
from cryptography.hazmat.primitives import hpke, serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from pydantic import ValidationError

from channel.protocol import lifecycle
from channel.protocol.canonical import ZERO_HASH, format_time, sha256_hex
from channel.protocol.errors import IntegrityError, InvalidLetter, InvalidTransition
from channel.protocol.lifecycle import SIGNED_BY_RECIPIENT, State
from channel.protocol.models import (
    Decision,
    Envelope,
    LetterContent,
    LetterStatus,
    Precedence,
    PublicKeys,
    Receipt,
    SealedLetter,
    SignedContent,
)

CTX_ENVELOPE = b"backchannel/v1/envelope\x00"
CTX_CONTENT = b"backchannel/v1/content\x00"
CTX_RECEIPT = b"backchannel/v1/receipt\x00"
CTX_DECISION = b"backchannel/v1/decision\x00"
HPKE_INFO_PREFIX = b"backchannel/v1/letter\x00"
ESCROW_INFO_PREFIX = b"backchannel/v1/escrow\x00"

_SUITE = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
_RAW = serialization.Encoding.Raw, serialization.PublicFormat.Raw


@dataclass(frozen=True)
class PartyKeys:
    """A party's private keys. Lives in the keyring; never sent anywhere."""

    name: str
    signing: Ed25519PrivateKey
    encryption: X25519PrivateKey

    @classmethod
    def generate(cls, name: str) -> PartyKeys:
        return cls(name, Ed25519PrivateKey.generate(), X25519PrivateKey.generate())

    @classmethod
    def from_raw(cls, name: str, signing: bytes, encryption: bytes) -> PartyKeys:
        return cls(
            name,
            Ed25519PrivateKey.from_private_bytes(signing),
            X25519PrivateKey.from_private_bytes(encryption),
        )

    def public(self) -> PublicKeys:
        return PublicKeys(
            name=self.name,
            signing_key=self.signing.public_key().public_bytes(*_RAW),
            encryption_key=self.encryption.public_key().public_bytes(*_RAW),
        )

    def sign(self, context: bytes, message: bytes) -> bytes:
        return self.signing.sign(context + message)


def raw_private(key: Ed25519PrivateKey | X25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw, serialization.PrivateFormat.Raw, serialization.NoEncryption()
    )


def raw_public(key: Ed25519PrivateKey) -> bytes:
    return key.public_key().public_bytes(*_RAW)


def fingerprint(*public_keys: bytes) -> str:
    """A short, human-comparable fingerprint: 80 bits of SHA-256 as four groups of base32."""
    digest = hashlib.sha256(b"backchannel/v1/fingerprint\x00" + b"".join(public_keys)).digest()
    text = base64.b32encode(digest[:10]).decode("ascii")
    return "-".join(text[i : i + 4] for i in range(0, 16, 4))


def party_fingerprint(keys: PublicKeys) -> str:
    return fingerprint(keys.signing_key, keys.encryption_key)


def verify_signature(public_key: bytes, signature: bytes, context: bytes, message: bytes) -> bool:
    try:
        Ed25519PublicKey.from_public_bytes(public_key).verify(signature, context + message)
    except (InvalidSignature, ValueError):
        return False
    return True


# --- letters ---------------------------------------------------------------------------------


def hpke_info(letter_id: str, sender: str, recipient: str) -> bytes:
    return HPKE_INFO_PREFIX + f"{letter_id}\x00{sender}\x00{recipient}".encode("ascii")


def seal_letter(
    sender: PartyKeys,
    recipient: PublicKeys,
    *,
    letter_id: str,
    subject: str,
    body: str,
    sent_at: datetime,
    expires_at: datetime,
    precedence: Precedence = Precedence.ROUTINE,
    in_reply_to: str | None = None,
) -> SealedLetter:
    """Sign the content, encrypt it to the recipient, and seal the envelope."""
    content = LetterContent(
        letter_id=letter_id,
        sender=sender.name,
        recipient=recipient.name,
        sent_at=format_time(sent_at),
        subject=subject,
        body=body,
    )
    signed = sign_content(sender, content)
    ciphertext = _SUITE.encrypt(
        signed.signable(),
        X25519PublicKey.from_public_bytes(recipient.encryption_key),
        info=hpke_info(letter_id, sender.name, recipient.name),
    )
    envelope = Envelope(
        id=letter_id,
        sender=sender.name,
        recipient=recipient.name,
        sent_at=format_time(sent_at),
        expires_at=format_time(expires_at),
        precedence=precedence,
        in_reply_to=in_reply_to,
        recipient_key=sha256_hex(recipient.encryption_key),
        ciphertext_sha256=sha256_hex(ciphertext),
        ciphertext_size=len(ciphertext),
    )
    seal = sender.sign(CTX_ENVELOPE, envelope.signable())
    return SealedLetter(envelope=envelope, seal=seal, ciphertext=ciphertext)


def sign_content(sender: PartyKeys, content: LetterContent) -> SignedContent:
    """The sender's signature over the content (Ed25519 is deterministic: the same bytes as the
    signature sealed inside the letter)."""
    return SignedContent(content=content, signature=sender.sign(CTX_CONTENT, content.signable()))


def escrow_content(signed: SignedContent, archive_key: bytes) -> bytes:
    """The signed content sealed to an exercise control cell's archive key (escrow transcripts)."""
    return _SUITE.encrypt(
        signed.signable(),
        X25519PublicKey.from_public_bytes(archive_key),
        info=ESCROW_INFO_PREFIX + signed.content.letter_id.encode("ascii"),
    )


def open_escrow(blob: bytes, archive: X25519PrivateKey, letter_id: str) -> SignedContent:
    """Decrypt an escrowed content; IntegrityError if it is not the escrow of `letter_id`."""
    try:
        plaintext = _SUITE.decrypt(
            blob, archive, info=ESCROW_INFO_PREFIX + letter_id.encode("ascii")
        )
        signed = SignedContent.model_validate_json(plaintext)
    except (InvalidTag, ValueError, ValidationError):
        raise IntegrityError(f"letter {letter_id}: the escrow does not decrypt") from None
    if signed.content.letter_id != letter_id:
        raise IntegrityError(f"letter {letter_id}: the escrow holds another letter")
    return signed


def check_sealed(letter: SealedLetter, sender_signing_key: bytes) -> str:
    """Check a letter's digest, size and seal; return the envelope digest. Raises InvalidLetter."""
    envelope = letter.envelope
    if len(letter.ciphertext) != envelope.ciphertext_size or (
        sha256_hex(letter.ciphertext) != envelope.ciphertext_sha256
    ):
        raise InvalidLetter("the ciphertext does not match the envelope's digest and size")
    signable = envelope.signable()
    if not verify_signature(sender_signing_key, letter.seal, CTX_ENVELOPE, signable):
        raise InvalidLetter("the seal does not verify with the sender's key")
    return sha256_hex(signable)


def verify_seal(envelope: Envelope, seal: bytes, sender_signing_key: bytes) -> bool:
    """Is `seal` the sender's signature over this envelope? (Needs no ciphertext.)"""
    return verify_signature(sender_signing_key, seal, CTX_ENVELOPE, envelope.signable())


def open_letter(
    letter: SealedLetter, recipient: PartyKeys, sender_signing_key: bytes
) -> SignedContent:
    """Check the seal, decrypt, and verify the sender's signature on the content.

    Raises IntegrityError for anything that does not verify: a tampered envelope, ciphertext or
    content, a letter sealed to another key, or a content signature that is not the sender's.
    """
    env = letter.envelope
    try:
        check_sealed(letter, sender_signing_key)
    except InvalidLetter as exc:
        raise IntegrityError(f"letter {env.id}: {exc.detail}") from None
    try:
        plaintext = _SUITE.decrypt(
            letter.ciphertext,
            recipient.encryption,
            info=hpke_info(env.id, env.sender, env.recipient),
        )
        signed = SignedContent.model_validate_json(plaintext)
    except (InvalidTag, ValueError, ValidationError):
        raise IntegrityError(f"letter {env.id}: the ciphertext does not decrypt") from None
    content = signed.content
    if (content.letter_id, content.sender, content.recipient, content.sent_at) != (
        env.id,
        env.sender,
        env.recipient,
        env.sent_at,
    ) or not verify_signature(
        sender_signing_key, signed.signature, CTX_CONTENT, content.signable()
    ):
        raise IntegrityError(f"letter {env.id}: the content signature is not the sender's")
    return signed


def verify_content(signed: SignedContent, sender_signing_key: bytes) -> bool:
    """For a third party: does this content carry the sender's signature?"""
    return verify_signature(
        sender_signing_key, signed.signature, CTX_CONTENT, signed.content.signable()
    )


# --- decisions and receipts ------------------------------------------------------------------


def decision_for(event: State, envelope: Envelope, reason: str | None = None) -> Decision:
    return Decision(
        decision=event.value,  # type: ignore[arg-type]  # only the two decision events reach here
        letter_id=envelope.id,
        envelope_sha256=envelope.digest(),
        reason=reason,
    )


def sign_decision(recipient: PartyKeys, decision: Decision) -> bytes:
    return recipient.sign(CTX_DECISION, decision.signable())


def verify_decision(recipient_signing_key: bytes, decision: Decision, signature: bytes) -> bool:
    return verify_signature(recipient_signing_key, signature, CTX_DECISION, decision.signable())


def sign_receipt(
    courier: Ed25519PrivateKey,
    *,
    letter_id: str,
    seq: int,
    event: State,
    at: datetime,
    envelope_sha256: str,
    prev: str = ZERO_HASH,
    reason: str | None = None,
    recipient_signature: bytes | None = None,
) -> Receipt:
    unsigned = Receipt.model_construct(
        letter_id=letter_id,
        seq=seq,
        event=event,
        at=format_time(at),
        envelope_sha256=envelope_sha256,
        reason=reason,
        recipient_signature=recipient_signature,
        prev=prev,
        signature=b"",
    )
    signature = courier.sign(CTX_RECEIPT + unsigned.body_bytes())
    return unsigned.model_copy(update={"signature": signature})


@dataclass(frozen=True)
class Finding:
    """One piece of a letter's evidence, checked: the seal, a receipt, the status's id or state."""

    subject: str  # "seal", "letter", "receipts", "receipt 2 (opened)", "state"
    ok: bool
    problem: str = ""  # what is wrong, when not ok
    receipt: Receipt | None = None  # the receipt a "receipt N" finding is about


def check_status(
    status: LetterStatus, *, sender_key: bytes, courier_key: bytes, recipient_key: bytes
) -> list[Finding]:
    """The one letter-status verifier (the client, `channel verify` and the exercise integrity
    check all use it): the seal, each receipt in chain order, and that the status's id and state
    agree with its envelope and chain. A receipt after the first bad one is not checked."""
    envelope = status.envelope
    sealed = verify_seal(envelope, status.seal, sender_key)
    findings = [Finding("seal", sealed, "" if sealed else _NOT_SEALED.format(envelope.sender))]
    if status.id != envelope.id:
        problem = f"the status is for {status.id}, its envelope for {envelope.id}"
        findings.append(Finding("letter", False, problem))
    findings += check_chain(
        status.receipts, envelope, courier_key=courier_key, recipient_key=recipient_key
    )
    if status.receipts and status.receipts[-1].event is not status.state:
        last = status.receipts[-1].event.value
        problem = f"the status says {status.state.value}, its last receipt {last}"
        findings.append(Finding("state", False, problem))
    return findings


def verify_status(
    status: LetterStatus, *, sender_key: bytes, courier_key: bytes, recipient_key: bytes
) -> None:
    """`check_status`, raising IntegrityError that names the first thing that fails."""
    findings = check_status(
        status, sender_key=sender_key, courier_key=courier_key, recipient_key=recipient_key
    )
    bad = next((finding for finding in findings if not finding.ok), None)
    if bad is not None:
        raise IntegrityError(f"letter {status.id}: {bad.subject}: {bad.problem}")


def check_chain(
    receipts: Sequence[Receipt], envelope: Envelope, *, courier_key: bytes, recipient_key: bytes
) -> list[Finding]:
    """One finding per receipt, in chain order; those after the first bad one are not checked."""
    if not receipts:
        return [Finding("receipts", False, "the letter has no receipts")]
    digest = envelope.digest()
    findings: list[Finding] = []
    prev, state, at, broken = ZERO_HASH, None, "", False
    for seq, receipt in enumerate(receipts):
        subject = f"receipt {seq} ({receipt.event.value})"
        if broken:
            findings.append(Finding(subject, False, "not checked: an earlier receipt failed"))
            continue
        problem = _receipt_problem(
            receipt, seq, prev, envelope, digest, courier_key, recipient_key
        ) or _order_problem(receipt, state, at)
        broken = problem is not None
        findings.append(Finding(subject, not broken, problem or "", receipt))
        prev, state, at = receipt.chain_hash(), receipt.event, receipt.at
    return findings


def verify_chain(
    receipts: Sequence[Receipt],
    envelope: Envelope,
    *,
    courier_key: bytes,
    recipient_key: bytes,
) -> None:
    """Check a letter's whole receipt chain; raise IntegrityError naming the first bad receipt."""
    findings = check_chain(receipts, envelope, courier_key=courier_key, recipient_key=recipient_key)
    bad = next((finding for finding in findings if not finding.ok), None)
    if bad is not None and bad.subject == "receipts":
        raise IntegrityError(bad.problem)
    if bad is not None:
        raise IntegrityError(f"{bad.subject}: {bad.problem}")


_NOT_SEALED = "the seal does not verify with the key of {}"


def _order_problem(receipt: Receipt, state: State | None, at: str) -> str | None:
    """The lifecycle rules a chain must follow, whoever signed it."""
    if state is None:
        return None if receipt.event is State.ACCEPTED else "a chain must start with 'accepted'"
    try:
        lifecycle.apply(state, receipt.event)
    except InvalidTransition:
        return f"a letter that is {state.value} cannot become {receipt.event.value}"
    if receipt.at < at:  # fixed-width UTC timestamps compare as text
        return "it is dated before the receipt it follows"
    return None


def _receipt_problem(
    receipt: Receipt,
    seq: int,
    prev: str,
    envelope: Envelope,
    digest: str,
    courier_key: bytes,
    recipient_key: bytes,
) -> str | None:
    if receipt.letter_id != envelope.id or receipt.envelope_sha256 != digest:
        return "it is for another letter or envelope"
    if receipt.seq != seq or receipt.prev != prev:
        return "the chain is broken (a receipt was removed, reordered or altered)"
    if not verify_signature(courier_key, receipt.signature, CTX_RECEIPT, receipt.body_bytes()):
        return "the courier's signature does not verify"
    if receipt.event not in SIGNED_BY_RECIPIENT:
        if receipt.recipient_signature is not None:
            return "it carries a recipient signature it cannot have"
        if receipt.reason is not None:
            return "it carries a reason it cannot have"
    else:
        if receipt.recipient_signature is None:
            return "the recipient's signature is missing"
        decision = decision_for(receipt.event, envelope, receipt.reason)
        if not verify_decision(recipient_key, decision, receipt.recipient_signature):
            return "the recipient's signature does not verify"
    return None
