"""The protocol test vectors (docs/vectors.json) and docs/protocol.md still match the code.

Every deterministic value is recomputed with the code in channel/ and compared byte for byte; the
ciphertext must decrypt; every signature, digest and chain link must fail when one byte changes.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import importlib.util
import itertools
import json
import re
import types
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PrivateKey, X25519PublicKey
from cryptography.hazmat.primitives.ciphers.aead import ChaCha20Poly1305
from http_message_signatures import signatures as hms_signatures

from channel.courier.embedded import EmbeddedRedis
from channel.courier.service import Courier
from channel.courier.store import Store
from channel.protocol import httpsig, lifecycle, names, seal
from channel.protocol.canonical import ZERO_HASH, parse_time, sha256_hex
from channel.protocol.errors import IntegrityError, Unauthenticated
from channel.protocol.httpsig import RequestView, SignedBy, sign_request, verify_request
from channel.protocol.lifecycle import State
from channel.protocol.models import (
    Envelope,
    LetterContent,
    OpenRequest,
    Precedence,
    Receipt,
    RegisterRequest,
    ReturnRequest,
    SealedLetter,
    SignedContent,
)
from channel.protocol.seal import PartyKeys

DOCS = Path(__file__).resolve().parent.parent / "docs"
V: dict[str, Any] = json.loads((DOCS / "vectors.json").read_text(encoding="utf-8"))
PROTOCOL_MD = (DOCS / "protocol.md").read_text(encoding="utf-8")
SEED_PREFIX = b"backchannel test vector: "

# --- helpers -----------------------------------------------------------------------------------


def utf8(record: dict[str, str]) -> bytes:
    """Canonical bytes recorded as text; the recorded digest guards the transcription."""
    data = record["utf8"].encode("utf-8")
    assert sha256_hex(data) == record["sha256"]
    return data


def party(role: str) -> PartyKeys:
    keys = V[role]
    return PartyKeys.from_raw(
        keys["name"],
        bytes.fromhex(keys["signing_private_hex"]),
        bytes.fromhex(keys["encryption_private_hex"]),
    )


def courier_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.from_private_bytes(bytes.fromhex(V["courier"]["signing_private_hex"]))


def public(role: str) -> bytes:
    return bytes.fromhex(V[role]["signing_public_hex"])


def at(name: str) -> datetime.datetime:
    return parse_time(V["times"][name])


def envelope() -> Envelope:
    return Envelope.model_validate_json(utf8(V["letter"]["envelope"]))


def ciphertext() -> bytes:
    return base64.b64decode(V["letter"]["ciphertext_b64"], validate=True)


def sealed(env: Envelope | None = None, ct: bytes | None = None) -> SealedLetter:
    return SealedLetter(
        envelope=env or envelope(),
        seal=bytes.fromhex(V["letter"]["seal_hex"]),
        ciphertext=ciphertext() if ct is None else ct,
    )


def receipts() -> list[Receipt]:
    return [Receipt.model_validate_json(utf8(r["receipt"])) for r in V["receipts"]]


def verify(chain: list[Receipt], env: Envelope | None = None) -> None:
    seal.verify_chain(
        chain, env or envelope(), courier_key=public("courier"), recipient_key=public("recipient")
    )


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


def forgeries(data: bytes, accepts: Callable[[bytes], bool]) -> list[int]:
    """Positions where flipping one bit of `data` still gives something that `accepts` takes.

    `accepts` raises (IntegrityError, or ValueError for a value that no longer parses) to refuse.
    """
    accepted = []
    for index in range(len(data)):
        try:
            if accepts(flip(data, index)):
                accepted.append(index)
        except (IntegrityError, ValueError):
            pass
    return accepted


def doc_block(begin: str, end: str) -> str:
    start, stop = PROTOCOL_MD.index(begin) + len(begin), PROTOCOL_MD.index(end)
    return PROTOCOL_MD[start:stop]


# --- keys --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "fields"),
    [
        ("sender", ("signing", "encryption")),
        ("recipient", ("signing", "encryption")),
        ("courier", ("signing",)),
    ],
)
def test_private_keys_are_the_documented_seeds(role: str, fields: tuple[str, ...]) -> None:
    """Each private key is sha256("backchannel test vector: <role> <use>"), as documented."""
    for use in fields:
        label = V[role][f"{use}_seed_label"]
        assert label == f"{SEED_PREFIX.decode()}{role} {use}"
        expected = hashlib.sha256(label.encode("ascii")).hexdigest()
        assert V[role][f"{use}_private_hex"] == expected


@pytest.mark.parametrize("role", ["sender", "recipient"])
def test_party_public_keys_and_fingerprints_reproduce(role: str) -> None:
    """PartyKeys.from_raw gives the recorded public keys, key digest and fingerprint."""
    keys = party(role).public()
    assert keys.name == V[role]["name"]
    assert keys.signing_key.hex() == V[role]["signing_public_hex"]
    assert keys.encryption_key.hex() == V[role]["encryption_public_hex"]
    assert sha256_hex(keys.encryption_key) == V[role]["encryption_public_sha256"]
    assert seal.party_fingerprint(keys) == V[role]["fingerprint"]


def test_courier_public_key_and_fingerprint_reproduce() -> None:
    """The courier's seed gives the recorded public key and its single-key fingerprint."""
    key = courier_key()
    assert seal.raw_public(key).hex() == V["courier"]["signing_public_hex"]
    assert seal.fingerprint(seal.raw_public(key)) == V["courier"]["fingerprint"]


@pytest.mark.parametrize("role", ["sender", "recipient", "courier"])
def test_fingerprint_follows_the_documented_rule(role: str) -> None:
    """protocol.md's fingerprint recipe, written out independently, gives the same strings."""
    keys = bytes.fromhex(V[role]["signing_public_hex"])
    if role != "courier":
        keys += bytes.fromhex(V[role]["encryption_public_hex"])
    digest = hashlib.sha256(b"backchannel/v1/fingerprint\x00" + keys).digest()
    text = base64.b32encode(digest[:10]).decode("ascii")
    assert "-".join(text[i : i + 4] for i in range(0, 16, 4)) == V[role]["fingerprint"]


def test_domain_separation_constants_are_unchanged() -> None:
    """The CTX_* strings and HPKE info prefix are the recorded bytes; protocol.md quotes them."""
    constants = {
        "ctx_envelope_hex": seal.CTX_ENVELOPE,
        "ctx_content_hex": seal.CTX_CONTENT,
        "ctx_receipt_hex": seal.CTX_RECEIPT,
        "ctx_decision_hex": seal.CTX_DECISION,
        "hpke_info_prefix_hex": seal.HPKE_INFO_PREFIX,
    }
    for name, value in constants.items():
        assert value.hex() == V["constants"][name]
        assert f"`{value.hex()}`" in PROTOCOL_MD
    assert V["constants"]["zero_hash"] == ZERO_HASH


# --- the sealed letter -------------------------------------------------------------------------


def test_letter_id_is_built_like_new_letter_id() -> None:
    """names.letter_id_from, given the recorded time and random bytes, makes the recorded id."""
    letter = V["letter"]
    random = bytes.fromhex(letter["id_random_hex"])
    assert names.letter_id_from(letter["id_millis"], random) == letter["id"]
    assert letter["id_millis"] == round(at("sent_at").timestamp() * 1000)


def test_content_canonical_bytes_and_signature_reproduce() -> None:
    """LetterContent re-encodes to the recorded bytes and the sender's signature reproduces."""
    letter = V["letter"]
    content_bytes = utf8(letter["content"])
    content = LetterContent.model_validate_json(content_bytes)
    assert content.signable() == content_bytes
    signature = party("sender").sign(seal.CTX_CONTENT, content_bytes)
    assert signature.hex() == letter["content_signature_hex"]
    signed = SignedContent(content=content, signature=signature)
    assert signed.signable() == utf8(letter["plaintext"])
    assert seal.verify_content(signed, public("sender"))


def test_hpke_info_reproduces() -> None:
    """seal.hpke_info binds the letter id and both names exactly as recorded."""
    env = envelope()
    assert seal.hpke_info(env.id, env.sender, env.recipient).hex() == V["letter"]["hpke_info_hex"]


def test_ciphertext_decrypts_to_the_recorded_plaintext() -> None:
    """open_letter accepts the recorded sealed letter and yields exactly the recorded plaintext."""
    signed = seal.open_letter(sealed(), party("recipient"), public("sender"))
    assert signed.signable() == utf8(V["letter"]["plaintext"])
    assert signed.content.signable() == utf8(V["letter"]["content"])


def _labeled_extract(suite_id: bytes, salt: bytes, label: bytes, ikm: bytes) -> bytes:
    return hmac.new(salt or b"\x00" * 32, b"HPKE-v1" + suite_id + label + ikm, "sha256").digest()


def _labeled_expand(suite_id: bytes, prk: bytes, label: bytes, info: bytes, length: int) -> bytes:
    labeled = length.to_bytes(2, "big") + b"HPKE-v1" + suite_id + label + info
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + labeled + bytes([counter]), "sha256").digest()
        out, counter = out + block, counter + 1
    return out[:length]


def rfc9180_base_open(wire: bytes, private: X25519PrivateKey, info: bytes) -> bytes:
    """RFC 9180 base-mode Open for X25519/HKDF-SHA256/ChaCha20-Poly1305, from first principles."""
    enc, sealed_box = wire[:32], wire[32:]
    kem_id = b"KEM" + (0x0020).to_bytes(2, "big")
    suite_id = b"HPKE" + bytes.fromhex("002000010003")
    raw = serialization.Encoding.Raw, serialization.PublicFormat.Raw
    dh = private.exchange(X25519PublicKey.from_public_bytes(enc))
    eae_prk = _labeled_extract(kem_id, b"", b"eae_prk", dh)
    kem_context = enc + private.public_key().public_bytes(*raw)
    shared = _labeled_expand(kem_id, eae_prk, b"shared_secret", kem_context, 32)
    context = (
        b"\x00"
        + _labeled_extract(suite_id, b"", b"psk_id_hash", b"")
        + _labeled_extract(suite_id, b"", b"info_hash", info)
    )
    secret = _labeled_extract(suite_id, shared, b"secret", b"")
    key = _labeled_expand(suite_id, secret, b"key", context, 32)
    nonce = _labeled_expand(suite_id, secret, b"base_nonce", context, 12)
    return ChaCha20Poly1305(key).decrypt(nonce, sealed_box, b"")


def test_ciphertext_is_plain_rfc9180_base_mode() -> None:
    """The wire ciphertext is enc || AEAD output with empty aad, as protocol.md says."""
    wire = ciphertext()
    assert wire[:32].hex() == V["letter"]["ciphertext_enc_hex"]
    assert len(wire) == 32 + len(utf8(V["letter"]["plaintext"])) + 16
    info = bytes.fromhex(V["letter"]["hpke_info_hex"])
    plaintext = rfc9180_base_open(wire, party("recipient").encryption, info)
    assert plaintext == utf8(V["letter"]["plaintext"])


class ReplaySuite:
    """An HPKE suite that returns the recorded ciphertext, after checking what it was given."""

    def __init__(self) -> None:
        self.calls = 0

    def encrypt(self, plaintext: bytes, public_key: X25519PublicKey, info: bytes) -> bytes:
        self.calls += 1
        raw = public_key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
        assert raw.hex() == V["recipient"]["encryption_public_hex"]
        assert info.hex() == V["letter"]["hpke_info_hex"]
        assert plaintext == utf8(V["letter"]["plaintext"])
        return ciphertext()


def test_seal_letter_reproduces_envelope_and_seal(monkeypatch: pytest.MonkeyPatch) -> None:
    """seal_letter, fed the recorded ciphertext, builds the recorded envelope and seal."""
    suite = ReplaySuite()
    # seal_letter encrypts internally; replacing the suite is how it gets the recorded ciphertext.
    monkeypatch.setattr(seal, "_SUITE", suite)
    env = envelope()
    letter = seal.seal_letter(
        party("sender"),
        party("recipient").public(),
        letter_id=env.id,
        subject=LetterContent.model_validate_json(utf8(V["letter"]["content"])).subject,
        body=LetterContent.model_validate_json(utf8(V["letter"]["content"])).body,
        sent_at=at("sent_at"),
        expires_at=at("expires_at"),
        precedence=env.precedence,
    )
    assert suite.calls == 1
    assert letter.envelope.signable() == utf8(V["letter"]["envelope"])
    assert letter.seal.hex() == V["letter"]["seal_hex"]
    assert letter.signable() == sealed().signable()


def test_envelope_digest_and_seal_verify() -> None:
    """The envelope digest is sha256 of its canonical bytes and check_sealed returns it."""
    assert envelope().digest() == V["letter"]["envelope_sha256"]
    assert sha256_hex(utf8(V["letter"]["envelope"])) == V["letter"]["envelope_sha256"]
    assert seal.check_sealed(sealed(), public("sender")) == V["letter"]["envelope_sha256"]
    assert envelope().recipient_key == V["recipient"]["encryption_public_sha256"]


# --- receipts ----------------------------------------------------------------------------------


def test_receipt_events_are_what_a_return_from_accepted_records() -> None:
    """The chain is accepted, then the implied delivered, then returned_unopened."""
    expected = [
        State.ACCEPTED,
        *lifecycle.steps(State.ACCEPTED, State.RETURNED_UNOPENED, lifecycle.Actor.RECIPIENT),
    ]
    assert [r.event for r in receipts()] == expected
    assert [r["event"] for r in V["receipts"]] == [e.value for e in expected]


@pytest.mark.parametrize("index", [0, 1, 2])
def test_receipt_reproduces_byte_for_byte(index: int) -> None:
    """sign_receipt on the recorded fields gives the recorded body, signature, bytes and hash."""
    record, recorded = V["receipts"][index], receipts()[index]
    receipt = seal.sign_receipt(
        courier_key(),
        letter_id=recorded.letter_id,
        seq=recorded.seq,
        event=recorded.event,
        at=parse_time(recorded.at),
        envelope_sha256=recorded.envelope_sha256,
        prev=recorded.prev,
        reason=recorded.reason,
        recipient_signature=recorded.recipient_signature,
    )
    assert receipt.body_bytes() == utf8(record["body"])
    assert receipt.signature.hex() == record["courier_signature_hex"]
    assert receipt.signable() == utf8(record["receipt"])
    assert receipt.chain_hash() == record["chain_hash"] == sha256_hex(utf8(record["receipt"]))


def test_receipts_chain_by_prev() -> None:
    """Receipt 0 points at the zero hash and each later one at its predecessor's chain hash."""
    chain = receipts()
    assert chain[0].prev == ZERO_HASH
    for before, after in itertools.pairwise(chain):
        assert after.prev == before.chain_hash()
    assert [r.seq for r in chain] == list(range(len(chain)))
    assert {r.envelope_sha256 for r in chain} == {V["letter"]["envelope_sha256"]}


def test_decision_reproduces_and_is_in_the_receipt() -> None:
    """The recipient's Decision re-encodes to the recorded bytes and its signature reproduces."""
    record, receipt = V["receipts"][2], receipts()[2]
    decision = seal.decision_for(State.RETURNED_UNOPENED, envelope(), receipt.reason)
    assert decision.signable() == utf8(record["decision"])
    signature = seal.sign_decision(party("recipient"), decision)
    assert signature.hex() == record["recipient_signature_hex"]
    assert receipt.recipient_signature == signature
    assert seal.verify_decision(public("recipient"), decision, signature)


def test_verify_chain_accepts_the_recorded_receipts() -> None:
    """verify_chain accepts the three recorded receipts with the recorded keys."""
    verify(receipts())


@pytest.mark.parametrize("index", [0, 1, 2])
def test_flipping_any_receipt_byte_fails_verify_chain(index: int) -> None:
    """No one-bit change to a recorded receipt's JSON gives a different receipt that verifies."""
    original = utf8(V["receipts"][index]["receipt"])
    same_receipt = []

    def accepts(data: bytes) -> bool:
        forged = Receipt.model_validate_json(data)
        if forged.signable() == original:
            # base64 ignores the unused low bits of its last character: the same receipt.
            same_receipt.append(data)
            return False
        chain = receipts()
        chain[index] = forged
        verify(chain)
        return True

    assert forgeries(original, accepts) == []
    assert len(same_receipt) <= 2  # at most one alias per base64 signature field


@pytest.mark.parametrize("index", [0, 1, 2])
def test_flipping_any_courier_signature_byte_fails(index: int) -> None:
    """Every byte of every courier signature matters."""

    def accepts(signature: bytes) -> bool:
        chain = receipts()
        chain[index] = chain[index].model_copy(update={"signature": signature})
        verify(chain)
        return True

    assert forgeries(receipts()[index].signature, accepts) == []


def _resigned(receipt: Receipt, **changes: Any) -> Receipt:
    """The receipt with `changes`, validly re-signed by the courier: a courier-side forgery."""
    fields = receipt.model_dump(exclude={"signature", "v"}) | changes
    return seal.sign_receipt(courier_key(), **fields | {"at": parse_time(fields["at"])})


def test_courier_cannot_forge_the_recipients_decision() -> None:
    """A courier-signed returned_unopened fails if the recipient's signature is flipped or moved."""
    original = receipts()[2]
    assert original.recipient_signature is not None

    def accepts(signature: bytes) -> bool:
        verify([*receipts()[:2], _resigned(original, recipient_signature=signature)])
        return True

    assert forgeries(original.recipient_signature, accepts) == []
    for changes in ({"reason": "a different reason"}, {"event": State.OPENED}):
        with pytest.raises(IntegrityError, match="recipient's signature"):
            verify([*receipts()[:2], _resigned(original, **changes)])
    with pytest.raises(IntegrityError, match="missing"):
        verify([*receipts()[:2], _resigned(original, recipient_signature=None)])


@pytest.mark.parametrize(
    "mutate",
    [
        pytest.param(lambda chain: chain[1:], id="first-removed"),
        pytest.param(lambda chain: [chain[0], chain[2]], id="middle-removed"),
        pytest.param(lambda chain: [chain[0], chain[2], chain[1]], id="reordered"),
        pytest.param(lambda chain: [chain[0], chain[1], chain[1]], id="duplicated"),
        pytest.param(lambda chain: [], id="empty"),
    ],
)
def test_broken_chains_fail(mutate: Callable[[list[Receipt]], list[Receipt]]) -> None:
    """Removing, reordering or repeating receipts breaks the chain."""
    with pytest.raises(IntegrityError):
        verify(mutate(receipts()))


def test_receipts_do_not_verify_against_another_envelope() -> None:
    """The receipts are bound to this envelope's digest."""
    other = envelope().model_copy(update={"precedence": Precedence.FLASH})
    with pytest.raises(IntegrityError, match="another letter or envelope"):
        verify(receipts(), other)


# --- tampering with the letter -----------------------------------------------------------------


def _opens(letter: SealedLetter) -> bool:
    seal.open_letter(letter, party("recipient"), public("sender"))
    return True


def test_flipping_any_ciphertext_byte_fails_open() -> None:
    """A one-bit change anywhere in the ciphertext is refused by open_letter."""
    assert forgeries(ciphertext(), lambda ct: _opens(sealed(ct=ct))) == []


def test_flipped_ciphertext_fails_to_decrypt_even_when_resealed() -> None:
    """Even with a matching envelope re-sealed by the sender, the AEAD refuses a changed byte."""
    sender = party("sender")

    def accepts(ct: bytes) -> bool:
        env = envelope().model_copy(update={"ciphertext_sha256": sha256_hex(ct)})
        letter = SealedLetter(
            envelope=env, seal=sender.sign(seal.CTX_ENVELOPE, env.signable()), ciphertext=ct
        )
        with pytest.raises(IntegrityError, match="does not decrypt"):
            _opens(letter)
        return False

    assert forgeries(ciphertext(), accepts) == []


def test_flipping_any_seal_byte_fails_open() -> None:
    """Every byte of the seal matters."""
    letter = sealed()

    def accepts(signature: bytes) -> bool:
        return _opens(letter.model_copy(update={"seal": signature}))

    assert forgeries(letter.seal, accepts) == []


def test_flipping_any_envelope_byte_fails_open() -> None:
    """No one-bit change to the envelope's canonical bytes survives the seal check."""
    original = utf8(V["letter"]["envelope"])

    def accepts(data: bytes) -> bool:
        env = Envelope.model_validate_json(data)
        assert env.signable() != original
        return _opens(sealed(env=env))

    assert forgeries(original, accepts) == []


def test_content_signature_binds_the_content() -> None:
    """A one-bit change to the content's canonical bytes fails the sender's content signature."""
    signature = bytes.fromhex(V["letter"]["content_signature_hex"])

    def accepts(data: bytes) -> bool:
        content = LetterContent.model_validate_json(data)
        signed = SignedContent(content=content, signature=signature)
        if not seal.verify_content(signed, public("sender")):
            raise IntegrityError("content signature")
        return True

    assert forgeries(utf8(V["letter"]["content"]), accepts) == []


# --- request signatures ------------------------------------------------------------------------

REQUEST = V["request"]


def request_path() -> str:
    return "/" + str(REQUEST["url"]).split("/", 3)[3]


def freeze_signature_clock(monkeypatch: pytest.MonkeyPatch, moment: datetime.datetime) -> None:
    """Make the RFC 9421 verifiers' "now" be `moment`, so a 2017 vector can be verified."""

    class Frozen(datetime.datetime):
        @classmethod
        def now(cls, tz: datetime.tzinfo | None = None) -> Frozen:
            return cls.fromtimestamp(moment.timestamp(), tz)

    clock = types.SimpleNamespace(
        datetime=Frozen, timezone=datetime.timezone, timedelta=datetime.timedelta
    )
    monkeypatch.setattr(hms_signatures, "datetime", clock)
    monkeypatch.setattr(httpsig, "_now", moment.timestamp)


def courier_view(headers: dict[str, str], path: str | None = None) -> RequestView:
    """The request as the courier sees it (it fixes the authority, which is not signed)."""
    return RequestView(REQUEST["method"], f"http://courier{path or request_path()}", headers)


def verify_vector(
    headers: dict[str, str] | None = None, body: bytes | None = None, path: str | None = None
) -> bool:
    body = utf8(REQUEST["body"]) if body is None else body
    view = courier_view(dict(REQUEST["headers"] if headers is None else headers), path)
    signed = verify_request(view, body, {REQUEST["party"]: public("recipient")}.get)
    return bool(signed.nonce == REQUEST["nonce"])


def created() -> datetime.datetime:
    return datetime.datetime.fromtimestamp(REQUEST["created"], datetime.UTC)


def test_request_headers_reproduce() -> None:
    """sign_request with the recorded created and nonce gives the recorded three headers."""
    headers = sign_request(
        REQUEST["party"],
        party("recipient").signing,
        REQUEST["method"],
        REQUEST["url"],
        utf8(REQUEST["body"]),
        created=created(),
        nonce=REQUEST["nonce"],
    )
    assert headers == REQUEST["headers"]
    assert REQUEST["created"] == int(at("returned_at").timestamp())


def test_request_body_is_the_signed_return() -> None:
    """The request body is a ReturnRequest carrying the recorded decision signature."""
    body = ReturnRequest.model_validate_json(utf8(REQUEST["body"]))
    assert body.signature.hex() == V["receipts"][2]["recipient_signature_hex"]
    assert body.reason == receipts()[2].reason


def test_request_signature_base_is_what_protocol_md_describes() -> None:
    """The documented signature base, rebuilt from the headers, is what the party signed."""
    headers = REQUEST["headers"]
    digest = base64.b64encode(hashlib.sha256(utf8(REQUEST["body"])).digest()).decode()
    assert headers["Content-Digest"] == f"sha-256=:{digest}:"
    params = headers["Signature-Input"].removeprefix("party=")
    base = "\n".join(
        [
            f'"@method": {REQUEST["method"]}',
            f'"@path": {request_path()}',
            '"@query": ?',
            f'"content-digest": {headers["Content-Digest"]}',
            f'"@signature-params": {params}',
        ]
    )
    assert base == REQUEST["signature_base"]
    signature = base64.b64decode(headers["Signature"].removeprefix("party=:").removesuffix(":"))
    assert signature.hex() == REQUEST["signature_hex"]
    Ed25519PublicKey.from_public_bytes(public("recipient")).verify(signature, base.encode())


@pytest.mark.parametrize("offset", [-30, 0, 90])
def test_verify_request_accepts_the_vector_inside_the_window(
    monkeypatch: pytest.MonkeyPatch, offset: int
) -> None:
    """The courier's verifier accepts the vector from created-30s to created+90s."""
    freeze_signature_clock(monkeypatch, created() + datetime.timedelta(seconds=offset))
    assert verify_vector()


@pytest.mark.parametrize("offset", [-31, 91])
def test_verify_request_refuses_the_vector_outside_the_window(
    monkeypatch: pytest.MonkeyPatch, offset: int
) -> None:
    """One second outside [created-30s, created+90s] the same request is refused."""
    freeze_signature_clock(monkeypatch, created() + datetime.timedelta(seconds=offset))
    with pytest.raises(Unauthenticated):
        verify_vector()


def test_flipping_any_body_byte_fails_verify_request(monkeypatch: pytest.MonkeyPatch) -> None:
    """The Content-Digest ties the signature to every byte of the body."""
    freeze_signature_clock(monkeypatch, created())

    def accepts(body: bytes) -> bool:
        try:
            return verify_vector(body=body)
        except Unauthenticated as exc:
            raise IntegrityError(str(exc)) from None

    assert forgeries(utf8(REQUEST["body"]), accepts) == []


def test_flipping_any_request_signature_byte_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every byte of the request signature matters."""
    freeze_signature_clock(monkeypatch, created())

    def accepts(signature: bytes) -> bool:
        value = base64.b64encode(signature).decode()
        try:
            return verify_vector(headers=REQUEST["headers"] | {"Signature": f"party=:{value}:"})
        except Unauthenticated as exc:
            raise IntegrityError(str(exc)) from None

    assert forgeries(bytes.fromhex(REQUEST["signature_hex"]), accepts) == []


@pytest.mark.parametrize(
    ("header", "old", "new"),
    [
        ("Signature-Input", 'nonce="c', 'nonce="d'),
        ("Signature-Input", 'tag="backchannel"', 'tag="other"'),
        ("Signature-Input", "created=1", "created=2"),
        ("Signature-Input", 'keyid="quds-force"', 'keyid="langley"'),
        ("Content-Digest", "sha-256=:", "sha-256=:"),  # see _flip_digest
    ],
)
def test_changed_signature_parameters_fail(
    monkeypatch: pytest.MonkeyPatch, header: str, old: str, new: str
) -> None:
    """Nonce, tag, created, keyid and digest are all covered by the signature."""
    freeze_signature_clock(monkeypatch, created())
    value = REQUEST["headers"][header]
    assert old in value
    changed = _flip_digest(value) if header == "Content-Digest" else value.replace(old, new, 1)
    assert changed != value
    with pytest.raises(Unauthenticated):
        verify_vector(headers=REQUEST["headers"] | {header: changed})


def _flip_digest(value: str) -> str:
    """Another valid digest of the same shape: its first base64 character changed."""
    head, digest = value.split(":", 1)
    first = "B" if digest[0] != "B" else "C"
    return f"{head}:{first}{digest[1:]}"


def test_changed_path_fails(monkeypatch: pytest.MonkeyPatch) -> None:
    """The path is covered: the same signature does not authorize opening instead of returning."""
    freeze_signature_clock(monkeypatch, created())
    with pytest.raises(Unauthenticated):
        verify_vector(path=request_path().replace("/return", "/open"))


# --- more requests: a GET with an empty body, a query string, a registration -------------------

MORE = V["requests"]
SIGNER_ROLE = {V["sender"]["name"]: "sender", V["recipient"]["name"]: "recipient"}


@pytest.mark.parametrize("name", sorted(MORE))
def test_more_request_vectors_reproduce(name: str) -> None:
    """Each extra request's headers come out of sign_request with its recorded created and nonce."""
    vector = MORE[name]
    headers = sign_request(
        vector["party"],
        party(SIGNER_ROLE[vector["party"]]).signing,
        vector["method"],
        vector["url"],
        utf8(vector["body"]),
        created=datetime.datetime.fromtimestamp(vector["created"], datetime.UTC),
        nonce=vector["nonce"],
    )
    assert headers == vector["headers"]


@pytest.mark.parametrize("name", sorted(MORE))
def test_more_request_signature_bases_follow_protocol_md(name: str) -> None:
    """The base is rebuilt by the documented rule: `@query` is `?` and the raw query string."""
    vector = MORE[name]
    target = "/" + vector["url"].split("/", 3)[3]
    path, _, query = target.partition("?")
    headers = vector["headers"]
    digest = base64.b64encode(hashlib.sha256(utf8(vector["body"])).digest()).decode()
    assert headers["Content-Digest"] == f"sha-256=:{digest}:"
    base = "\n".join(
        [
            f'"@method": {vector["method"]}',
            f'"@path": {path}',
            f'"@query": ?{query}',
            f'"content-digest": {headers["Content-Digest"]}',
            f'"@signature-params": {headers["Signature-Input"].removeprefix("party=")}',
        ]
    )
    assert base == vector["signature_base"]
    signature = bytes.fromhex(vector["signature_hex"])
    signer = public(SIGNER_ROLE[vector["party"]])
    Ed25519PublicKey.from_public_bytes(signer).verify(signature, base.encode())


@pytest.mark.parametrize("name", sorted(MORE))
def test_the_courier_verifier_accepts_more_requests_and_refuses_them_altered(
    monkeypatch: pytest.MonkeyPatch, name: str
) -> None:
    """verify_request takes each extra vector at its `created`; another query or body fails."""
    vector = MORE[name]
    freeze_signature_clock(
        monkeypatch, datetime.datetime.fromtimestamp(vector["created"], datetime.UTC)
    )
    target = "/" + vector["url"].split("/", 3)[3]
    keys = {vector["party"]: public(SIGNER_ROLE[vector["party"]])}.get

    def verify(target: str, body: bytes) -> SignedBy:
        view = RequestView(vector["method"], f"http://courier{target}", dict(vector["headers"]))
        return verify_request(view, body, keys)

    body = utf8(vector["body"])
    assert verify(target, body) == SignedBy(vector["party"], vector["nonce"])
    with pytest.raises(Unauthenticated):
        verify(target + ("&limit=11" if "?" in target else "?limit=11"), body)
    with pytest.raises(Unauthenticated):
        verify(target, body + b" ")


def test_the_registration_vector_is_signed_by_the_key_it_registers() -> None:
    """The registration body holds the sender's public keys, and its keyid is the name it
    registers, as the courier requires (proof of possession)."""
    vector = MORE["register"]
    body = RegisterRequest.model_validate_json(utf8(vector["body"]))
    assert body.name == vector["party"] == V["sender"]["name"]
    assert body.signing_key.hex() == V["sender"]["signing_public_hex"]
    assert body.encryption_key.hex() == V["sender"]["encryption_public_hex"]
    assert f'keyid="{body.name}"' in vector["headers"]["Signature-Input"]
    assert (vector["method"], vector["url"].endswith("/v1/parties")) == ("POST", True)


def test_the_get_vectors_have_empty_bodies_and_one_a_query() -> None:
    """Both GET vectors sign an empty body (its digest is sha-256 of nothing); one has a query."""
    gets = [MORE["status"], MORE["inbox_page"]]
    assert all(v["method"] == "GET" and utf8(v["body"]) == b"" for v in gets)
    assert "?" not in MORE["status"]["url"]
    assert MORE["inbox_page"]["url"].endswith(f"?limit=10&before={V['letter']['id']}")


def test_the_opened_decision_reproduces_and_verifies() -> None:
    """The `opened` decision is canonical Decision(opened) for the envelope, signed by the
    recipient, and the open request body carries that signature."""
    record = V["opened"]
    decision = seal.decision_for(State.OPENED, envelope())
    assert decision.signable() == utf8(record["decision"])
    signature = bytes.fromhex(record["recipient_signature_hex"])
    assert seal.sign_decision(party("recipient"), decision) == signature
    assert seal.verify_decision(public("recipient"), decision, signature)
    returned = seal.decision_for(State.RETURNED_UNOPENED, envelope())
    assert not seal.verify_decision(public("recipient"), returned, signature)
    body = OpenRequest.model_validate_json(utf8(record["open_body"]))
    assert body.signature == signature


# --- the real courier --------------------------------------------------------------------------


async def test_courier_issues_the_recorded_receipts(
    redis_server: EmbeddedRedis,
    redis: aioredis.Redis,  # requested for its flushdb: the fixed letter id must be unused
) -> None:
    """The real Courier on a real Redis, at the recorded times, issues the recorded chain."""
    now = [at("accepted_at")]
    sender, recipient = party("sender"), party("recipient")
    store = Store.from_url(redis_server.url)
    try:
        courier = Courier(store, courier_key(), clock=lambda: now[0])
        for keys in (sender, recipient):
            await courier.register(RegisterRequest(**keys.public().model_dump()), pinned=True)
        accepted, created_now = await courier.send(SignedBy(sender.name, "n" * 32), sealed())
        now[0] = at("returned_at")
        chain = await courier.return_unopened(
            recipient.name,
            envelope().id,
            receipts()[2].reason,
            bytes.fromhex(V["receipts"][2]["recipient_signature_hex"]),
        )
        returned = await courier.returned(sender.name, envelope().id)
    finally:
        await store.close()
    assert created_now
    assert accepted.signable() == utf8(V["receipts"][0]["receipt"])
    assert [r.signable() for r in chain] == [utf8(r["receipt"]) for r in V["receipts"]]
    assert returned.state is State.RETURNED_UNOPENED
    assert returned.letter.signable() == sealed().signable()


# --- the documents -----------------------------------------------------------------------------


def test_protocol_md_embeds_the_generated_mermaid_diagram() -> None:
    """The state diagram in protocol.md is exactly lifecycle.mermaid_diagram()."""
    blocks = re.findall(r"```mermaid\n(.*?)\n```", PROTOCOL_MD, flags=re.DOTALL)
    assert blocks == [lifecycle.mermaid_diagram()]


def test_protocol_md_transition_table_matches_lifecycle() -> None:
    """The transitions table lists exactly lifecycle.TRANSITIONS, with ACTORS as actors."""
    table = doc_block("<!-- transitions:begin -->", "<!-- transitions:end -->")
    rows = re.findall(r"^\| `(\w+)` \| `(\w+)` \| `(\w+)` \| `(\w+)` \|", table, flags=re.M)
    expected = [
        (state.value, event.value, after.value, lifecycle.ACTORS[event].value)
        for (state, event), after in lifecycle.TRANSITIONS.items()
    ]
    assert rows == expected


def _assert_subset(excerpt: Any, full: Any, where: str = "vectors") -> None:
    if isinstance(excerpt, dict):
        for key, value in excerpt.items():
            assert isinstance(full, dict), where
            assert key in full, f"{where}.{key} is not in vectors.json"
            _assert_subset(value, full[key], f"{where}.{key}")
    elif isinstance(excerpt, list):
        assert isinstance(full, list), where
        assert len(excerpt) == len(full), where
        for i, (part, whole) in enumerate(zip(excerpt, full, strict=True)):
            _assert_subset(part, whole, f"{where}[{i}]")
    else:
        assert excerpt == full, f"protocol.md shows a stale {where}"


def test_protocol_md_vector_excerpt_matches_vectors_json() -> None:
    """Every value in protocol.md's vector excerpt is the one in vectors.json."""
    block = doc_block("<!-- vectors:begin -->", "<!-- vectors:end -->")
    excerpt = json.loads(block.strip().removeprefix("```json").removesuffix("```"))
    _assert_subset(excerpt, V)


def test_protocol_md_quotes_the_request_vector() -> None:
    """The signature base and headers shown in protocol.md section 8.2 are the vector's."""
    assert f"```\n{REQUEST['signature_base']}\n```" in PROTOCOL_MD
    for name, value in REQUEST["headers"].items():
        assert f"{name}: {value}\n" in PROTOCOL_MD


def test_generator_would_write_the_same_file() -> None:
    """Re-running docs/make_vectors.py (keeping the ciphertext) reproduces vectors.json exactly."""
    spec = importlib.util.spec_from_file_location("make_vectors", DOCS / "make_vectors.py")
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert module.build(ciphertext()) == V
