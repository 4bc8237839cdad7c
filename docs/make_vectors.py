"""Generate docs/vectors.json, the protocol's test vectors, from the code in channel/.

Run `python docs/make_vectors.py`. Every key comes from a fixed seed and every time is fixed, and
Ed25519 is deterministic, so each run writes the same bytes. The one randomized value is the HPKE
ciphertext: it is made once and kept for as long as it still decrypts to the current plaintext,
which makes it a decryption vector and keeps re-runs stable.

The seeds below are public. Keys made from them must never protect anything real.
"""

from __future__ import annotations

import base64
import hashlib
import json
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from unittest import mock

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey

from channel.protocol import httpsig, lifecycle, names, seal
from channel.protocol.canonical import ZERO_HASH, format_time, millis, sha256_hex
from channel.protocol.lifecycle import State
from channel.protocol.models import (
    OpenRequest,
    Precedence,
    Receipt,
    RegisterRequest,
    ReturnRequest,
    SealedLetter,
    SignedContent,
)
from channel.protocol.seal import PartyKeys, party_fingerprint, raw_private, raw_public

VECTORS = Path(__file__).resolve().parent / "vectors.json"
SEED_PREFIX = b"backchannel test vector: "

SENDER, RECIPIENT = "langley", "quds-force"
SENT_AT = datetime(2017, 11, 20, 9, 15, 42, 125000, tzinfo=UTC)
EXPIRES_AT = datetime(2017, 12, 4, 9, 15, 42, 125000, tzinfo=UTC)
ACCEPTED_AT = datetime(2017, 11, 20, 9, 15, 43, 500000, tzinfo=UTC)
RETURNED_AT = datetime(2017, 11, 23, 16, 2, 7, 250000, tzinfo=UTC)
PRECEDENCE = Precedence.IMMEDIATE
SUBJECT = "Attacks on American interests in Iraq"
# Non-ASCII, a quote and new lines on purpose: they exercise the canonical JSON escaping rules.
BODY = (
    "General,\n\n"
    "The United States will hold you and Iran accountable for any attacks on American "
    'interests in Iraq by forces under your control. This is a "direct" channel.\n\n'
    "\u2014 Director"
)
REASON = "returned without opening"
COURIER_URL = "https://courier.example"


def seed(label: str) -> bytes:
    """A 32-byte private key seed everyone can recompute from its label."""
    return hashlib.sha256(SEED_PREFIX + label.encode("ascii")).digest()


def party_keys(name: str, role: str) -> PartyKeys:
    return PartyKeys.from_raw(name, seed(f"{role} signing"), seed(f"{role} encryption"))


def courier_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(seed("courier signing"))


def letter_id(sent_at: datetime) -> str:
    """Built like names.new_letter_id, with the 80 random bits replaced by fixed ones."""
    return names.letter_id_from(millis(sent_at), seed("letter id")[:10])


class ReplayingSuite:
    """Stands in for seal._SUITE so seal_letter reuses a kept ciphertext that still decrypts.

    seal_letter encrypts inside itself; swapping the suite is the only way to feed it a known
    ciphertext and still have the real seal_letter build the envelope and seal around it.
    """

    def __init__(self, kept: bytes | None, recipient: X25519PrivateKey) -> None:
        self.kept, self.recipient, self.used = kept, recipient, b""
        self._real = seal._SUITE

    def encrypt(self, plaintext: bytes, public_key: X25519PublicKey, info: bytes) -> bytes:
        if self.kept is not None and self._decrypts(self.kept, info) == plaintext:
            self.used = self.kept
        else:
            self.used = self._real.encrypt(plaintext, public_key, info=info)
        return self.used

    def _decrypts(self, ciphertext: bytes, info: bytes) -> bytes | None:
        try:
            return self._real.decrypt(ciphertext, self.recipient, info=info)
        except Exception:  # a stale or corrupt kept ciphertext is simply replaced
            return None


@contextmanager
def replaying(kept: bytes | None, recipient: PartyKeys) -> Iterator[ReplayingSuite]:
    suite = ReplayingSuite(kept, recipient.encryption)
    with mock.patch.object(seal, "_SUITE", suite):
        yield suite


def seal_vector_letter(
    sender: PartyKeys, recipient: PartyKeys, kept: bytes | None
) -> tuple[SealedLetter, bytes]:
    """The vector letter, sealed by the real seal_letter; returns it and the HPKE plaintext."""
    with replaying(kept, recipient):
        letter = seal.seal_letter(
            sender,
            recipient.public(),
            letter_id=letter_id(SENT_AT),
            subject=SUBJECT,
            body=BODY,
            sent_at=SENT_AT,
            expires_at=EXPIRES_AT,
            precedence=PRECEDENCE,
        )
    signed = seal.open_letter(letter, recipient, sender.public().signing_key)
    return letter, signed.signable()


def chain_receipts(
    courier: Ed25519PrivateKey, letter: SealedLetter, decision_signature: bytes
) -> list[Receipt]:
    """accepted, then what the courier records when the recipient returns it unopened.

    Returning straight from `accepted` implies `delivered` first (lifecycle.IMPLIED); the courier
    signs both at the same instant and only the last carries the reason and the decision.
    """
    digest = letter.envelope.digest()
    accepted = seal.sign_receipt(
        courier,
        letter_id=letter.envelope.id,
        seq=0,
        event=State.ACCEPTED,
        at=ACCEPTED_AT,
        envelope_sha256=digest,
    )
    chain = [accepted]
    events = lifecycle.steps(State.ACCEPTED, State.RETURNED_UNOPENED, lifecycle.Actor.RECIPIENT)
    for event in events:
        final = event is events[-1]
        chain.append(
            seal.sign_receipt(
                courier,
                letter_id=letter.envelope.id,
                seq=len(chain),
                event=event,
                at=RETURNED_AT,
                envelope_sha256=digest,
                prev=chain[-1].chain_hash(),
                reason=REASON if final else None,
                recipient_signature=decision_signature if final else None,
            )
        )
    return chain


def key_record(keys: PartyKeys, role: str) -> dict[str, str]:
    public = keys.public()
    return {
        "name": keys.name,
        "signing_seed_label": f"{SEED_PREFIX.decode()}{role} signing",
        "signing_private_hex": raw_private(keys.signing).hex(),
        "signing_public_hex": public.signing_key.hex(),
        "encryption_seed_label": f"{SEED_PREFIX.decode()}{role} encryption",
        "encryption_private_hex": raw_private(keys.encryption).hex(),
        "encryption_public_hex": public.encryption_key.hex(),
        "encryption_public_sha256": sha256_hex(public.encryption_key),
        "fingerprint": party_fingerprint(public),
    }


def courier_record(courier: Ed25519PrivateKey) -> dict[str, str]:
    public = raw_public(courier)
    return {
        "signing_seed_label": SEED_PREFIX.decode() + "courier signing",
        "signing_private_hex": raw_private(courier).hex(),
        "signing_public_hex": public.hex(),
        "fingerprint": seal.fingerprint(public),
    }


def text_record(data: bytes) -> dict[str, str]:
    """Canonical bytes as their exact UTF-8 text, with a digest to catch transcription slips."""
    return {"utf8": data.decode("utf-8"), "sha256": sha256_hex(data)}


def letter_record(letter: SealedLetter, plaintext: bytes) -> dict[str, Any]:
    env = letter.envelope
    signed = SignedContent.model_validate_json(plaintext)
    info = seal.hpke_info(env.id, env.sender, env.recipient)
    return {
        "id": env.id,
        "id_millis": millis(SENT_AT),
        "id_random_hex": seed("letter id")[:10].hex(),
        "content": text_record(signed.content.signable()),
        "content_signature_hex": signed.signature.hex(),
        "plaintext": text_record(plaintext),
        "hpke_info_hex": info.hex(),
        "ciphertext_b64": base64.b64encode(letter.ciphertext).decode("ascii"),
        "ciphertext_enc_hex": letter.ciphertext[:32].hex(),
        "envelope": text_record(env.signable()),
        "envelope_sha256": env.digest(),
        "seal_hex": letter.seal.hex(),
    }


def receipt_record(receipt: Receipt, decision: bytes | None) -> dict[str, Any]:
    record: dict[str, Any] = {
        "event": receipt.event.value,
        "body": text_record(receipt.body_bytes()),
        "courier_signature_hex": receipt.signature.hex(),
        "receipt": text_record(receipt.signable()),
        "chain_hash": receipt.chain_hash(),
    }
    if decision is not None and receipt.recipient_signature is not None:
        record["decision"] = text_record(decision)
        record["recipient_signature_hex"] = receipt.recipient_signature.hex()
    return record


def request_record(recipient: PartyKeys, letter: SealedLetter) -> dict[str, Any]:
    """The recipient's signed `return` request for the vector letter."""
    decision_sig = decision_signature(recipient, letter)
    body = ReturnRequest(reason=REASON, signature=decision_sig).signable()
    path = f"/v1/letters/{letter.envelope.id}/return"
    return signed_request(recipient, "POST", path, body, RETURNED_AT, "request nonce")


def more_requests(
    sender: PartyKeys, recipient: PartyKeys, letter: SealedLetter
) -> dict[str, dict[str, Any]]:
    """A GET with an empty body, a GET with a query string, and a registration (signed with the
    key it registers, `keyid` the name it registers)."""
    letter_path = f"/v1/letters/{letter.envelope.id}"
    register = RegisterRequest(**sender.public().model_dump()).signable()
    return {
        "status": signed_request(sender, "GET", letter_path, b"", ACCEPTED_AT, "status nonce"),
        "inbox_page": signed_request(
            recipient,
            "GET",
            f"/v1/inbox?limit=10&before={letter.envelope.id}",
            b"",
            RETURNED_AT,
            "inbox nonce",
        ),
        "register": signed_request(sender, "POST", "/v1/parties", register, SENT_AT, "reg nonce"),
    }


def signed_request(
    keys: PartyKeys, method: str, target: str, body: bytes, moment: datetime, nonce_label: str
) -> dict[str, Any]:
    """One request signed by `keys` at `moment` with a nonce derived from `nonce_label`."""
    nonce = seed(nonce_label).hex()[:32]
    headers = httpsig.sign_request(
        keys.name, keys.signing, method, COURIER_URL + target, body, created=moment, nonce=nonce
    )
    base = signature_base(method, target, headers)
    signature = _signature_bytes(headers["Signature"])
    # Refuse to write a vector whose documented signature base is not what was really signed.
    Ed25519PublicKey.from_public_bytes(keys.public().signing_key).verify(signature, base)
    return {
        "party": keys.name,
        "method": method,
        "url": COURIER_URL + target,
        "body": text_record(body),
        "created": int(moment.timestamp()),
        "nonce": nonce,
        "headers": headers,
        "signature_base": base.decode("ascii"),
        "signature_hex": signature.hex(),
    }


def signature_base(method: str, target: str, headers: dict[str, str]) -> bytes:
    """The RFC 9421 signature base as docs/protocol.md section 8 describes it."""
    path, _, query = target.partition("?")
    params = headers["Signature-Input"].removeprefix(f"{httpsig.LABEL}=")
    lines = [
        f'"@method": {method}',
        f'"@path": {path}',
        f'"@query": ?{query}',
        f'"content-digest": {headers["Content-Digest"]}',
        f'"@signature-params": {params}',
    ]
    return "\n".join(lines).encode("ascii")


def opened_record(recipient: PartyKeys, letter: SealedLetter) -> dict[str, Any]:
    """The `opened` decision the recipient would sign to open the letter instead."""
    decision = seal.decision_for(State.OPENED, letter.envelope)
    signature = seal.sign_decision(recipient, decision)
    return {
        "decision": text_record(decision.signable()),
        "recipient_signature_hex": signature.hex(),
        "open_body": text_record(OpenRequest(signature=signature).signable()),
    }


def _signature_bytes(header: str) -> bytes:
    value = header.removeprefix(f"{httpsig.LABEL}=:").removesuffix(":")
    return base64.b64decode(value, validate=True)


def decision_signature(recipient: PartyKeys, letter: SealedLetter) -> bytes:
    decision = seal.decision_for(State.RETURNED_UNOPENED, letter.envelope, REASON)
    return seal.sign_decision(recipient, decision)


def build(kept_ciphertext: bytes | None) -> dict[str, Any]:
    sender, recipient = party_keys(SENDER, "sender"), party_keys(RECIPIENT, "recipient")
    courier = courier_key()
    letter, plaintext = seal_vector_letter(sender, recipient, kept_ciphertext)
    decision_sig = decision_signature(recipient, letter)
    receipts = chain_receipts(courier, letter, decision_sig)
    decision = seal.decision_for(State.RETURNED_UNOPENED, letter.envelope, REASON).signable()
    return {
        "about": (
            "Backchannel protocol v1 test vectors, written by docs/make_vectors.py and checked "
            "by tests/test_vectors.py. Private keys here are public test values."
        ),
        "constants": constants(),
        "times": {
            "sent_at": format_time(SENT_AT),
            "expires_at": format_time(EXPIRES_AT),
            "accepted_at": format_time(ACCEPTED_AT),
            "returned_at": format_time(RETURNED_AT),
        },
        "sender": key_record(sender, "sender"),
        "recipient": key_record(recipient, "recipient"),
        "courier": courier_record(courier),
        "letter": letter_record(letter, plaintext),
        "receipts": [
            receipt_record(r, decision if r.recipient_signature else None) for r in receipts
        ],
        "request": request_record(recipient, letter),
        "requests": more_requests(sender, recipient, letter),
        "opened": opened_record(recipient, letter),
    }


def constants() -> dict[str, str]:
    return {
        "ctx_envelope_hex": seal.CTX_ENVELOPE.hex(),
        "ctx_content_hex": seal.CTX_CONTENT.hex(),
        "ctx_receipt_hex": seal.CTX_RECEIPT.hex(),
        "ctx_decision_hex": seal.CTX_DECISION.hex(),
        "hpke_info_prefix_hex": seal.HPKE_INFO_PREFIX.hex(),
        "zero_hash": ZERO_HASH,
    }


def kept_ciphertext(path: Path) -> bytes | None:
    """The ciphertext of the previous run, if there is one to keep."""
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
        return base64.b64decode(previous["letter"]["ciphertext_b64"], validate=True)
    except (OSError, ValueError, KeyError, TypeError):
        return None


def main() -> None:
    vectors = build(kept_ciphertext(VECTORS))
    text = json.dumps(vectors, indent=2, ensure_ascii=False) + "\n"
    VECTORS.write_text(text, encoding="utf-8")
    print(f"wrote {VECTORS} (letter {vectors['letter']['id']})")


if __name__ == "__main__":
    main()
