"""Sealing, opening and receipt chains as pure functions, plus canonical JSON."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from cryptography.hazmat.primitives import hpke
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from cryptography.hazmat.primitives.asymmetric.x25519 import X25519PublicKey

from channel.protocol.canonical import (
    ZERO_HASH,
    canonical_json,
    format_time,
    parse_time,
    sha256_hex,
)
from channel.protocol.errors import IntegrityError, InvalidLetter
from channel.protocol.lifecycle import State
from channel.protocol.models import (
    ChainKeys,
    Envelope,
    LetterContent,
    LetterStatus,
    Precedence,
    Receipt,
    SealedLetter,
    SignedContent,
)
from channel.protocol.names import new_letter_id
from channel.protocol.seal import (
    CTX_CONTENT,
    CTX_DECISION,
    CTX_ENVELOPE,
    CTX_RECEIPT,
    PartyKeys,
    check_sealed,
    check_status,
    decision_for,
    hpke_info,
    open_letter,
    raw_public,
    seal_letter,
    sign_decision,
    sign_receipt,
    verify_chain,
    verify_content,
    verify_decision,
    verify_signature,
    verify_status,
)

SENT = datetime(2017, 11, 20, 9, 15, 42, 125000, tzinfo=UTC)
SUBJECT = "Attacks on interests in Iraq"
BODY = "General,\nWe will hold you accountable. \u2014 Director"
REASON = "not accepted"


@pytest.fixture(scope="module")
def sender() -> PartyKeys:
    return PartyKeys.generate("us.cia.director")


@pytest.fixture(scope="module")
def recipient() -> PartyKeys:
    return PartyKeys.generate("ir.irgc.quds")


@pytest.fixture(scope="module")
def courier() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


@pytest.fixture(scope="module")
def sealed(sender: PartyKeys, recipient: PartyKeys) -> SealedLetter:
    return seal_letter(
        sender,
        recipient.public(),
        letter_id=new_letter_id(),
        subject=SUBJECT,
        body=BODY,
        sent_at=SENT,
        expires_at=SENT + timedelta(days=7),
        precedence=Precedence.FLASH,
    )


def _sender_key(sender: PartyKeys) -> bytes:
    return sender.public().signing_key


def _flip(data: bytes, index: int = 0) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x01]) + data[index + 1 :]


# --- sealing and opening ---------------------------------------------------------------------


def test_seal_and_open_round_trip(
    sealed: SealedLetter, sender: PartyKeys, recipient: PartyKeys
) -> None:
    """The recipient decrypts exactly what the sender wrote, with the sender's content signature."""
    digest = check_sealed(sealed, _sender_key(sender))
    assert digest == sealed.envelope.digest() == sha256_hex(sealed.envelope.signable())
    signed = open_letter(sealed, recipient, _sender_key(sender))
    assert signed.content.subject == SUBJECT
    assert signed.content.body == BODY
    assert signed.content.sender == "us.cia.director"
    assert signed.content.letter_id == sealed.envelope.id
    assert verify_content(signed, _sender_key(sender))


def test_envelope_describes_the_ciphertext(sealed: SealedLetter, recipient: PartyKeys) -> None:
    """The envelope commits to the ciphertext's digest and size and to the recipient's key."""
    env = sealed.envelope
    assert env.ciphertext_sha256 == sha256_hex(sealed.ciphertext)
    assert env.ciphertext_size == len(sealed.ciphertext)
    assert env.recipient_key == sha256_hex(recipient.public().encryption_key)
    assert SUBJECT.encode() not in sealed.ciphertext
    assert BODY.encode() not in sealed.model_dump_json().encode()


def test_sealing_twice_gives_different_ciphertexts(sender: PartyKeys, recipient: PartyKeys) -> None:
    """HPKE is randomized: the same letter sealed twice differs, so a re-seal is a new letter."""
    options: dict[str, Any] = {
        "letter_id": new_letter_id(),
        "subject": SUBJECT,
        "body": BODY,
        "sent_at": SENT,
        "expires_at": SENT + timedelta(days=1),
    }
    first = seal_letter(sender, recipient.public(), **options)
    second = seal_letter(sender, recipient.public(), **options)
    assert first.ciphertext != second.ciphertext
    assert first.envelope.digest() != second.envelope.digest()


@pytest.mark.parametrize("index", [0, 16, 31, 32, -1], ids=lambda i: f"byte{i}")
def test_tampered_ciphertext_is_rejected(
    sealed: SealedLetter, sender: PartyKeys, recipient: PartyKeys, index: int
) -> None:
    """One flipped ciphertext bit fails the digest check (courier) and opening (recipient)."""
    tampered = sealed.model_copy(update={"ciphertext": _flip(sealed.ciphertext, index)})
    with pytest.raises(InvalidLetter, match="digest"):
        check_sealed(tampered, _sender_key(sender))
    with pytest.raises(IntegrityError):
        open_letter(tampered, recipient, _sender_key(sender))


def test_truncated_ciphertext_is_rejected(
    sealed: SealedLetter, sender: PartyKeys, recipient: PartyKeys
) -> None:
    """A ciphertext shorter than the envelope says fails its size check."""
    tampered = sealed.model_copy(update={"ciphertext": sealed.ciphertext[:-1]})
    with pytest.raises(InvalidLetter):
        check_sealed(tampered, _sender_key(sender))
    with pytest.raises(IntegrityError):
        open_letter(tampered, recipient, _sender_key(sender))


ENVELOPE_CHANGES: dict[str, Any] = {
    "id": new_letter_id(),
    "sender": "ru.svr.director",
    "recipient": "ru.svr.director",
    "sent_at": "2017-11-20T09:15:42.126Z",
    "expires_at": "2030-01-01T00:00:00.000Z",
    "precedence": Precedence.ROUTINE,
    "in_reply_to": new_letter_id(),
    "recipient_key": "0" * 64,
}


@pytest.mark.parametrize("field", sorted(ENVELOPE_CHANGES))
def test_tampered_envelope_field_is_rejected(
    sealed: SealedLetter, sender: PartyKeys, recipient: PartyKeys, field: str
) -> None:
    """Changing any envelope field breaks the seal, for the courier and for the recipient."""
    envelope = sealed.envelope.model_copy(update={field: ENVELOPE_CHANGES[field]})
    assert envelope.signable() != sealed.envelope.signable()
    tampered = sealed.model_copy(update={"envelope": envelope})
    with pytest.raises(InvalidLetter, match="seal"):
        check_sealed(tampered, _sender_key(sender))
    with pytest.raises(IntegrityError):
        open_letter(tampered, recipient, _sender_key(sender))


def test_tampered_ciphertext_with_matching_envelope_digest_breaks_the_seal(
    sealed: SealedLetter, sender: PartyKeys
) -> None:
    """Swapping the ciphertext and fixing the envelope's digest and size still breaks the seal."""
    other = _flip(sealed.ciphertext, 5)
    envelope = sealed.envelope.model_copy(
        update={"ciphertext_sha256": sha256_hex(other), "ciphertext_size": len(other)}
    )
    tampered = sealed.model_copy(update={"envelope": envelope, "ciphertext": other})
    with pytest.raises(InvalidLetter, match="seal"):
        check_sealed(tampered, _sender_key(sender))


def test_tampered_seal_is_rejected(
    sealed: SealedLetter, sender: PartyKeys, recipient: PartyKeys
) -> None:
    """A seal with one bit flipped does not verify."""
    tampered = sealed.model_copy(update={"seal": _flip(sealed.seal, 10)})
    with pytest.raises(InvalidLetter, match="seal"):
        check_sealed(tampered, _sender_key(sender))
    with pytest.raises(IntegrityError):
        open_letter(tampered, recipient, _sender_key(sender))


def test_seal_by_another_key_is_rejected(sealed: SealedLetter, recipient: PartyKeys) -> None:
    """A letter checked against a key that is not its sender's fails: the seal proves the sender."""
    impostor = PartyKeys.generate("us.cia.director")
    with pytest.raises(InvalidLetter):
        check_sealed(sealed, impostor.public().signing_key)
    with pytest.raises(IntegrityError):
        open_letter(sealed, recipient, impostor.public().signing_key)


def test_letter_sealed_to_another_recipient_key_does_not_open(
    sealed: SealedLetter, sender: PartyKeys
) -> None:
    """Only the holder of the recipient's X25519 key can open the letter."""
    other = PartyKeys.generate("ir.irgc.quds")
    with pytest.raises(IntegrityError, match="does not decrypt"):
        open_letter(sealed, other, _sender_key(sender))


def _forge(
    sender: PartyKeys,
    recipient: PartyKeys,
    content: LetterContent,
    content_signer: PartyKeys,
    envelope_fields: dict[str, str] | None = None,
) -> SealedLetter:
    """A letter encrypted and sealed by `sender` around `content` signed by `content_signer`."""
    signature = content_signer.sign(CTX_CONTENT, content.signable())
    plaintext = SignedContent(content=content, signature=signature).signable()
    identity = {
        "id": content.letter_id,
        "recipient": recipient.name,
        "sent_at": content.sent_at,
        **(envelope_fields or {}),
    }
    suite = hpke.Suite(hpke.KEM.X25519, hpke.KDF.HKDF_SHA256, hpke.AEAD.CHACHA20_POLY1305)
    ciphertext = suite.encrypt(
        plaintext,
        X25519PublicKey.from_public_bytes(recipient.public().encryption_key),
        info=hpke_info(identity["id"], sender.name, identity["recipient"]),
    )
    envelope = Envelope(
        sender=sender.name,
        expires_at=format_time(SENT + timedelta(days=1)),
        recipient_key=sha256_hex(recipient.public().encryption_key),
        ciphertext_sha256=sha256_hex(ciphertext),
        ciphertext_size=len(ciphertext),
        **identity,  # type: ignore[arg-type]  # the id and names, as strings
    )
    seal = sender.sign(CTX_ENVELOPE, envelope.signable())
    return SealedLetter(envelope=envelope, seal=seal, ciphertext=ciphertext)


def _content(sender: PartyKeys, recipient: PartyKeys) -> LetterContent:
    return LetterContent(
        letter_id=new_letter_id(),
        sender=sender.name,
        recipient=recipient.name,
        sent_at=format_time(SENT),
        subject=SUBJECT,
        body=BODY,
    )


def test_content_signed_by_another_key_is_rejected(sender: PartyKeys, recipient: PartyKeys) -> None:
    """A genuine seal around content someone else signed does not open."""
    content = _content(sender, recipient)
    forged = _forge(sender, recipient, content, PartyKeys.generate(sender.name))
    check_sealed(forged, _sender_key(sender))  # the envelope itself is genuinely sealed
    with pytest.raises(IntegrityError, match="content signature"):
        open_letter(forged, recipient, _sender_key(sender))
    honest = _forge(sender, recipient, content, sender)
    assert open_letter(honest, recipient, _sender_key(sender)).content == content


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("id", new_letter_id()),
        ("recipient", "ru.svr.director"),
        ("sent_at", format_time(SENT + timedelta(seconds=1))),
    ],
    ids=["id", "recipient", "sent_at"],
)
def test_content_in_another_envelope_is_rejected(
    sender: PartyKeys, recipient: PartyKeys, field: str, value: str
) -> None:
    """Sender-signed content re-sealed under another id, recipient or date is refused."""
    content = _content(sender, recipient)
    moved = _forge(sender, recipient, content, sender, {field: value})
    check_sealed(moved, _sender_key(sender))
    with pytest.raises(IntegrityError, match="content signature"):
        open_letter(moved, recipient, _sender_key(sender))


def test_signatures_are_domain_separated(sealed: SealedLetter, sender: PartyKeys) -> None:
    """A seal verifies only as a seal: the same bytes under another context do not verify."""
    message = sealed.envelope.signable()
    key = _sender_key(sender)
    assert verify_signature(key, sealed.seal, CTX_ENVELOPE, message)
    for context in (CTX_CONTENT, CTX_RECEIPT, CTX_DECISION, b""):
        assert not verify_signature(key, sealed.seal, context, message)


# --- receipt chains --------------------------------------------------------------------------


def _chain(
    courier: Ed25519PrivateKey,
    recipient: PartyKeys,
    envelope: Envelope,
    events: list[State],
    reason: str | None = None,
) -> list[Receipt]:
    receipts: list[Receipt] = []
    prev = ZERO_HASH
    for seq, event in enumerate(events):
        decided = event in (State.OPENED, State.RETURNED_UNOPENED)
        why = reason if event is State.RETURNED_UNOPENED else None
        receipt = sign_receipt(
            courier,
            letter_id=envelope.id,
            seq=seq,
            event=event,
            at=SENT + timedelta(minutes=seq),
            envelope_sha256=envelope.digest(),
            prev=prev,
            reason=why,
            recipient_signature=(
                sign_decision(recipient, decision_for(event, envelope, why)) if decided else None
            ),
        )
        receipts.append(receipt)
        prev = receipt.chain_hash()
    return receipts


RETURNED = [State.ACCEPTED, State.DELIVERED, State.RETURNED_UNOPENED]
OPENED = [State.ACCEPTED, State.DELIVERED, State.OPENED]


@pytest.fixture(scope="module")
def returned_chain(
    courier: Ed25519PrivateKey, recipient: PartyKeys, sealed: SealedLetter
) -> list[Receipt]:
    return _chain(courier, recipient, sealed.envelope, RETURNED, REASON)


def _verify(
    receipts: list[Receipt],
    sealed: SealedLetter,
    courier: Ed25519PrivateKey,
    recipient: PartyKeys,
) -> None:
    verify_chain(
        receipts,
        sealed.envelope,
        courier_key=raw_public(courier),
        recipient_key=recipient.public().signing_key,
    )


@pytest.mark.parametrize("events", [RETURNED, OPENED, [State.ACCEPTED, State.WITHDRAWN]])
def test_good_chain_is_accepted(
    courier: Ed25519PrivateKey, recipient: PartyKeys, sealed: SealedLetter, events: list[State]
) -> None:
    """A courier-signed, hash-linked chain with the recipient's decision verifies."""
    receipts = _chain(courier, recipient, sealed.envelope, events, REASON)
    _verify(receipts, sealed, courier, recipient)
    assert [r.seq for r in receipts] == list(range(len(events)))
    assert receipts[0].prev == ZERO_HASH


def test_empty_chain_is_refused(
    courier: Ed25519PrivateKey, recipient: PartyKeys, sealed: SealedLetter
) -> None:
    """A letter with no receipts proves nothing."""
    with pytest.raises(IntegrityError, match="no receipts"):
        _verify([], sealed, courier, recipient)


def _altered(receipt: Receipt, field: str) -> Receipt:
    changes: dict[str, Any] = {
        "event": State.WITHDRAWN if receipt.event is not State.WITHDRAWN else State.EXPIRED,
        "at": format_time(parse_time(receipt.at) + timedelta(milliseconds=1)),
        "reason": "a different reason",
        "prev": sha256_hex(b"elsewhere"),
        "seq": receipt.seq + 1,
        "signature": _flip(receipt.signature, 3),
        "recipient_signature": _flip(receipt.recipient_signature or bytes(64), 3),
        "envelope_sha256": sha256_hex(b"another envelope"),
        "letter_id": new_letter_id(),
    }
    return receipt.model_copy(update={field: changes[field]})


FIELDS = [
    "event",
    "at",
    "reason",
    "prev",
    "seq",
    "signature",
    "recipient_signature",
    "envelope_sha256",
    "letter_id",
]


@pytest.mark.parametrize("index", range(len(RETURNED)))
@pytest.mark.parametrize("field", FIELDS)
def test_altering_any_field_of_any_receipt_fails_naming_it(
    courier: Ed25519PrivateKey,
    recipient: PartyKeys,
    sealed: SealedLetter,
    returned_chain: list[Receipt],
    field: str,
    index: int,
) -> None:
    """Any change to any receipt fails verification, and the error names that receipt's index."""
    receipts = list(returned_chain)
    receipts[index] = _altered(receipts[index], field)
    assert receipts[index] != returned_chain[index]
    with pytest.raises(IntegrityError) as failed:
        _verify(receipts, sealed, courier, recipient)
    assert f"receipt {index} (" in str(failed.value)


def test_recipient_signature_from_another_key_fails(
    courier: Ed25519PrivateKey, recipient: PartyKeys, sealed: SealedLetter
) -> None:
    """A decision the courier signed but the recipient did not (another key) is caught."""
    other = PartyKeys.generate(recipient.name)
    receipts = _chain(courier, other, sealed.envelope, OPENED)
    with pytest.raises(IntegrityError, match=r"receipt 2 \(opened\): the recipient's signature"):
        _verify(receipts, sealed, courier, recipient)


def test_decision_without_recipient_signature_fails(
    courier: Ed25519PrivateKey, recipient: PartyKeys, sealed: SealedLetter
) -> None:
    """An `opened` receipt must carry the recipient's signature, even if the courier signed it."""
    env = sealed.envelope
    receipts = _chain(courier, recipient, env, [State.ACCEPTED, State.DELIVERED])
    receipts.append(
        sign_receipt(
            courier,
            letter_id=env.id,
            seq=2,
            event=State.OPENED,
            at=SENT,
            envelope_sha256=env.digest(),
            prev=receipts[-1].chain_hash(),
        )
    )
    with pytest.raises(IntegrityError, match=r"receipt 2 .*missing"):
        _verify(receipts, sealed, courier, recipient)


def test_chain_signed_by_another_courier_fails(
    recipient: PartyKeys, sealed: SealedLetter, returned_chain: list[Receipt]
) -> None:
    """Receipts verify only with the courier key they were signed with."""
    with pytest.raises(IntegrityError, match=r"receipt 0 .*courier's signature"):
        _verify(returned_chain, sealed, Ed25519PrivateKey.generate(), recipient)


@pytest.mark.parametrize("removed", [0, 1])
def test_removed_receipt_fails_naming_the_gap(
    courier: Ed25519PrivateKey,
    recipient: PartyKeys,
    sealed: SealedLetter,
    returned_chain: list[Receipt],
    removed: int,
) -> None:
    """Dropping a receipt breaks the chain at the position it was removed from."""
    receipts = [r for i, r in enumerate(returned_chain) if i != removed]
    with pytest.raises(IntegrityError, match=f"receipt {removed} .*chain is broken"):
        _verify(receipts, sealed, courier, recipient)


@pytest.mark.parametrize(("a", "b"), [(0, 1), (1, 2), (0, 2)])
def test_reordered_receipts_fail(
    courier: Ed25519PrivateKey,
    recipient: PartyKeys,
    sealed: SealedLetter,
    returned_chain: list[Receipt],
    a: int,
    b: int,
) -> None:
    """Swapping two receipts breaks the chain at the first swapped position."""
    receipts = list(returned_chain)
    receipts[a], receipts[b] = receipts[b], receipts[a]
    with pytest.raises(IntegrityError, match=f"receipt {a} "):
        _verify(receipts, sealed, courier, recipient)


def test_chain_of_another_envelope_fails(
    courier: Ed25519PrivateKey,
    recipient: PartyKeys,
    sender: PartyKeys,
    returned_chain: list[Receipt],
) -> None:
    """Receipts for one letter do not verify against another letter's envelope."""
    other = seal_letter(
        sender,
        recipient.public(),
        letter_id=returned_chain[0].letter_id,
        subject="",
        body="another",
        sent_at=SENT,
        expires_at=SENT + timedelta(days=1),
    )
    with pytest.raises(IntegrityError, match=r"receipt 0 .*another letter or envelope"):
        _verify(returned_chain, other, courier, recipient)


def test_chain_must_start_with_accepted(
    courier: Ed25519PrivateKey, recipient: PartyKeys, sealed: SealedLetter
) -> None:
    """A well-linked chain whose first receipt is not `accepted` is refused."""
    receipts = _chain(courier, recipient, sealed.envelope, [State.DELIVERED, State.WITHDRAWN])
    with pytest.raises(IntegrityError, match=r"receipt 0 .*'accepted'"):
        _verify(receipts, sealed, courier, recipient)


def test_chain_that_breaks_the_lifecycle_is_refused(
    courier: Ed25519PrivateKey, recipient: PartyKeys, sealed: SealedLetter
) -> None:
    """A chain recording two terminal events (opened, then withdrawn) is not a valid history."""
    receipts = _chain(courier, recipient, sealed.envelope, [*OPENED, State.WITHDRAWN])
    with pytest.raises(IntegrityError, match="receipt 3"):
        _verify(receipts, sealed, courier, recipient)


@pytest.mark.parametrize(
    "events",
    [
        [State.ACCEPTED, State.ACCEPTED],
        [State.ACCEPTED, State.OPENED],
        [State.ACCEPTED, State.EXPIRED, State.DELIVERED],
        [State.ACCEPTED, State.DELIVERED, State.DELIVERED],
    ],
    ids=["accepted-twice", "opened-undelivered", "after-expiry", "delivered-twice"],
)
def test_chain_with_an_impossible_step_is_refused(
    courier: Ed25519PrivateKey, recipient: PartyKeys, sealed: SealedLetter, events: list[State]
) -> None:
    """Every step of a chain must be a legal lifecycle move; the first illegal one is named."""
    receipts = _chain(courier, recipient, sealed.envelope, events)
    with pytest.raises(IntegrityError, match=f"receipt {len(events) - 1} "):
        _verify(receipts, sealed, courier, recipient)


def test_chain_going_back_in_time_is_refused(
    courier: Ed25519PrivateKey, recipient: PartyKeys, sealed: SealedLetter
) -> None:
    """A receipt dated before the one it follows is refused, though correctly signed and linked."""
    env = sealed.envelope
    (accepted,) = _chain(courier, recipient, env, [State.ACCEPTED])
    earlier = sign_receipt(
        courier,
        letter_id=env.id,
        seq=1,
        event=State.DELIVERED,
        at=parse_time(accepted.at) - timedelta(milliseconds=1),
        envelope_sha256=env.digest(),
        prev=accepted.chain_hash(),
    )
    with pytest.raises(IntegrityError, match=r"receipt 1 .*before"):
        _verify([accepted, earlier], sealed, courier, recipient)


def test_decision_signature_covers_reason_and_envelope(
    recipient: PartyKeys, sealed: SealedLetter
) -> None:
    """The recipient's signed decision binds its reason, its kind and the envelope digest."""
    env = sealed.envelope
    decision = decision_for(State.RETURNED_UNOPENED, env, REASON)
    signature = sign_decision(recipient, decision)
    key = recipient.public().signing_key
    assert verify_decision(key, decision, signature)
    assert not verify_decision(key, decision_for(State.RETURNED_UNOPENED, env, "other"), signature)
    assert not verify_decision(key, decision_for(State.OPENED, env), signature)
    assert not verify_decision(
        key, decision.model_copy(update={"envelope_sha256": "0" * 64}), signature
    )


# --- canonical JSON --------------------------------------------------------------------------


def test_canonical_json_is_deterministic_and_order_independent() -> None:
    """The same value gives the same bytes however its keys were ordered."""
    one = {"b": 1, "a": [1, {"z": True, "y": "é"}], "c": {"k": "v", "j": -5}}
    two = {"c": {"j": -5, "k": "v"}, "a": [1, {"y": "é", "z": True}], "b": 1}
    assert canonical_json(one) == canonical_json(two) == canonical_json(dict(one))
    assert canonical_json(one) == '{"a":[1,{"y":"é","z":true}],"b":1,"c":{"j":-5,"k":"v"}}'.encode()


def test_canonical_json_differs_when_the_value_differs() -> None:
    """Different values never share bytes (so never share a digest)."""
    assert canonical_json({"a": 1}) != canonical_json({"a": "1"})
    assert canonical_json({"a": [1, 2]}) != canonical_json({"a": [2, 1]})


@pytest.mark.parametrize(
    "value",
    [{"x": 1.0}, {"x": [1, 2.5]}, {"x": {"y": float("nan")}}, {"x": 1e300}],
    ids=["top", "in-list", "nan-nested", "huge"],
)
def test_canonical_json_refuses_floats(value: dict[str, Any]) -> None:
    """Floats anywhere in the value are refused."""
    with pytest.raises(ValueError, match="float"):
        canonical_json(value)


def test_canonical_json_refuses_null_and_non_string_keys() -> None:
    """Absent fields are omitted, never null; object keys must be strings."""
    with pytest.raises(ValueError, match="None"):
        canonical_json({"a": {"b": None}})
    with pytest.raises(ValueError, match="keys"):
        canonical_json({"a": {1: "x"}})


def test_model_signable_bytes_are_canonical(sealed: SealedLetter) -> None:
    """A model's signable bytes survive a JSON round trip unchanged (what makes seals portable)."""
    again = Envelope.model_validate_json(sealed.envelope.model_dump_json())
    assert again.signable() == sealed.envelope.signable()
    assert b"null" not in sealed.envelope.signable()
    assert b" " not in sealed.envelope.signable()


# --- the one letter-status verifier ------------------------------------------------------------


def _status(sealed: SealedLetter, receipts: list[Receipt], state: State) -> LetterStatus:
    return LetterStatus(
        id=sealed.envelope.id,
        state=state,
        envelope=sealed.envelope,
        seal=sealed.seal,
        receipts=receipts,
        keys=ChainKeys(courier=b"c" * 32, sender=b"s" * 32, recipient=b"r" * 32),
    )


def test_check_status_passes_a_good_status_piece_by_piece(
    courier: Ed25519PrivateKey,
    sender: PartyKeys,
    recipient: PartyKeys,
    sealed: SealedLetter,
    returned_chain: list[Receipt],
) -> None:
    """A sealed letter with its chain: the seal and every receipt pass, in that order."""
    status = _status(sealed, returned_chain, State.RETURNED_UNOPENED)
    keys = {
        "sender_key": _sender_key(sender),
        "courier_key": raw_public(courier),
        "recipient_key": recipient.public().signing_key,
    }
    findings = check_status(status, **keys)
    assert [(f.subject, f.ok) for f in findings] == [
        ("seal", True),
        ("receipt 0 (accepted)", True),
        ("receipt 1 (delivered)", True),
        ("receipt 2 (returned_unopened)", True),
    ]
    assert [f.receipt for f in findings[1:]] == returned_chain
    verify_status(status, **keys)


def test_check_status_names_the_first_failure_and_checks_nothing_after_it(
    courier: Ed25519PrivateKey,
    sender: PartyKeys,
    recipient: PartyKeys,
    sealed: SealedLetter,
    returned_chain: list[Receipt],
) -> None:
    """A forged middle receipt fails by name, the rest is unchecked, and a status whose state
    is not its last receipt's fails too; verify_status raises naming the first failure."""
    forged = _altered(returned_chain[1], "at")
    status = _status(sealed, [returned_chain[0], forged, returned_chain[2]], State.OPENED)
    keys = {
        "sender_key": _sender_key(sender),
        "courier_key": raw_public(courier),
        "recipient_key": recipient.public().signing_key,
    }
    findings = check_status(status, **keys)
    assert [(f.subject, f.ok) for f in findings] == [
        ("seal", True),
        ("receipt 0 (accepted)", True),
        ("receipt 1 (delivered)", False),
        ("receipt 2 (returned_unopened)", False),
        ("state", False),
    ]
    assert findings[3].problem == "not checked: an earlier receipt failed"
    with pytest.raises(IntegrityError, match=r"receipt 1 \(delivered\): "):
        verify_status(status, **keys)
    unsealed = {**keys, "sender_key": recipient.public().signing_key}
    with pytest.raises(IntegrityError, match="seal: the seal does not verify"):
        verify_status(_status(sealed, returned_chain, State.RETURNED_UNOPENED), **unsealed)
