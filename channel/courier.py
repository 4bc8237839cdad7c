"""The courier: what the service does, between thin HTTP handlers and the Store.

It verifies seals and request signatures, asks the lifecycle what may happen, signs receipts and
has the Store apply them atomically. It never sees plaintext: it holds envelopes, seals and
ciphertext, and proves who sent a letter by the seal alone.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from channel import lifecycle
from channel.canonical import format_time, millis, now_utc, parse_time, sha256_hex, to_millis
from channel.errors import (
    BadRequest,
    Forbidden,
    InvalidLetter,
    InvalidTransition,
    LetterExpired,
    LetterIdConflict,
    Misconfigured,
    NameTaken,
    RegistrationClosed,
    Replayed,
    StoreUnavailable,
    UnknownLetter,
    UnknownParty,
)
from channel.httpsig import NONCE_TTL_MS, RequestView, SignedBy, UnresolvedKey, verify_request
from channel.lifecycle import Actor, State
from channel.models import (
    ChainKeys,
    CourierKey,
    Envelope,
    LetterStatus,
    LetterSummary,
    LiveEvent,
    OpenedLetter,
    PartyRecord,
    PublicKeys,
    Receipt,
    RegisterRequest,
    ReturnedLetter,
    SealedLetter,
)
from channel.names import check_party_name
from channel.seal import (
    check_sealed,
    decision_for,
    fingerprint,
    party_fingerprint,
    raw_public,
    sign_receipt,
    verify_decision,
)
from channel.store import Admission, LetterRecord, Store

log = structlog.get_logger("channel.courier")

MAX_DEADLINE = timedelta(days=366)
MAX_CLOCK_AHEAD = timedelta(minutes=5)
INVITE_TTL_SECONDS = 7 * 24 * 3600
_REPLAYED = "this request was already received (its nonce was used)"
_EVENT_ID = re.compile(r"\d{1,20}-\d{1,20}")
_GONE = 1 << 30  # settles any mark: the letter ran out its retention
_CAS_ATTEMPTS = 8


async def mint_invite(store: Store, name: str, ttl_seconds: int = INVITE_TTL_SECONDS) -> str:
    """Mint a one-time invitation; only its hash is stored, the token is shown once."""
    check_party_name(name)
    token = secrets.token_urlsafe(24)
    await store.add_invite(name, hashlib.sha256(token.encode()).hexdigest(), ttl_seconds)
    return token


@dataclass(frozen=True)
class Located:
    record: LetterRecord
    role: Actor  # the caller's role for this letter


class Courier:
    def __init__(
        self,
        store: Store,
        key: Ed25519PrivateKey,
        *,
        open_registration: bool = False,
        retention: timedelta = timedelta(days=30),
        clock: Callable[[], datetime] = now_utc,
        on_event: Callable[[State], None] | None = None,
    ) -> None:
        self.store = store
        self._key = key
        self.public_key = raw_public(key)
        self.open_registration = open_registration
        self._retention_ms = int(retention.total_seconds() * 1000)
        self._clock = clock
        # Told of each receipt the courier issues, by event (the server's metrics count them).
        self._on_event = on_event or _ignore
        self._claimed = False
        # Registered keys never change (names are never taken over), so they can be cached forever.
        self._parties: dict[str, PublicKeys] = {}

    async def claim_store(self) -> None:
        """Refuse to run against a store whose receipts another courier key signed.

        Checked once, at start; if Redis was down then, before the first receipt is issued.
        """
        if self._claimed:
            return
        registered = await self.store.courier_key(self.public_key)
        if registered != self.public_key:
            raise Misconfigured(
                f"this courier's key ({fingerprint(self.public_key)}) is not the key its store "
                f"belongs to ({fingerprint(registered)}): every replica must share one "
                "courier.key (see docs/deploy.md)"
            )
        self._claimed = True

    def courier_key(self) -> CourierKey:
        return CourierKey(signing_key=self.public_key, fingerprint=fingerprint(self.public_key))

    # --- parties -------------------------------------------------------------------------------

    async def party(self, name: str) -> PublicKeys:
        cached = self._parties.get(name)
        if cached is not None:
            return cached
        await self.party_record(name)
        return self._parties[name]

    async def party_record(self, name: str) -> PartyRecord:
        check_party_name(name)
        stored = await self.store.get_party(name)
        if stored is None:
            raise UnknownParty(f"no party named {name!r} is registered with this courier")
        keys = PublicKeys(
            name=name, signing_key=stored.signing_key, encryption_key=stored.encryption_key
        )
        self._parties[name] = keys
        return PartyRecord(
            **keys.model_dump(),
            fingerprint=party_fingerprint(keys),
            registered_at=stored.registered_at,
        )

    async def register(
        self, request: RegisterRequest, *, pinned: bool = False
    ) -> tuple[PartyRecord, bool]:
        """Register a party; returns its record and whether it is new (same keys again is fine)."""
        check_party_name(request.name)
        admission: Admission = (
            "pinned" if pinned else "open" if self.open_registration else "invite"
        )
        invite_hash = sha256_hex(request.invite.encode()) if request.invite else ""
        outcome = await self.store.register_party(
            request.name,
            request.signing_key,
            request.encryption_key,
            format_time(self._clock()),
            admission,
            invite_hash,
        )
        if outcome == "taken":
            raise NameTaken(f"{request.name!r} is already registered with other keys")
        if outcome == "closed":
            raise RegistrationClosed(
                "registration on this courier needs a valid one-time invitation "
                "(ask the operator for `channel admin invite NAME`)"
            )
        log.info("party_registered", party=request.name, outcome=outcome, admission=admission)
        return await self.party_record(request.name), outcome == "created"

    async def invite(self, name: str, ttl_seconds: int = INVITE_TTL_SECONDS) -> str:
        return await mint_invite(self.store, name, ttl_seconds)

    async def authenticate(self, view: RequestView, body: bytes) -> SignedBy:
        """Who signed this request; its nonce is not claimed yet (see `claim`)."""
        try:
            return verify_request(view, body, self._cached_signing_key)
        except UnresolvedKey as unresolved:
            try:
                await self.party(unresolved.party)
            except (UnknownParty, BadRequest):
                raise UnknownParty(
                    f"the request is signed as {unresolved.party!r}, which is not registered"
                ) from None
            return verify_request(view, body, self._cached_signing_key)

    async def claim(self, signed: SignedBy) -> None:
        """Remember the request's nonce; raises Replayed if it was used before."""
        if not await self.store.claim_nonce(signed.party, signed.nonce, NONCE_TTL_MS):
            raise Replayed(_REPLAYED)

    def _cached_signing_key(self, name: str) -> bytes | None:
        keys = self._parties.get(name)
        return keys.signing_key if keys is not None else None

    # --- sending -------------------------------------------------------------------------------

    async def send(self, signed: SignedBy, letter: SealedLetter) -> tuple[Receipt, bool]:
        """Accept a letter; returns its `accepted` receipt and whether it was new.

        The request's nonce is claimed by the same script that files the sender's outbox entry:
        one round trip (and one fsync) fewer on the service's hottest path.
        """
        await self.claim_store()
        sender, env = signed.party, letter.envelope
        if env.sender != sender:
            raise Forbidden("you can only send letters sealed in your own name")
        if env.recipient == sender:
            raise BadRequest("a party cannot send a letter to itself")
        recipient = await self.party(env.recipient)
        digest = check_sealed(letter, (await self.party(sender)).signing_key)
        if env.recipient_key != sha256_hex(recipient.encryption_key):
            raise InvalidLetter("the letter is sealed to a key that is not the recipient's")
        now = self._clock()
        self._check_times(env, now)
        receipt = sign_receipt(
            self._key, letter_id=env.id, seq=0, event=State.ACCEPTED, at=now, envelope_sha256=digest
        )
        sent_ms = to_millis(env.sent_at)
        filed = await self.store.reserve_outbox(
            sender, env.id, env.recipient, sent_ms, nonce=signed.nonce, nonce_ttl_ms=NONCE_TTL_MS
        )
        if filed == "replayed":
            raise Replayed(_REPLAYED)
        if filed == "other":
            raise LetterIdConflict(f"the letter id {env.id} is already used by one of your letters")
        event = _event(env, receipt, "letter")
        created = await self.store.create_letter(
            letter_id=env.id,
            sender=sender,
            recipient=env.recipient,
            digest=digest,
            envelope=env.signable(),
            seal=letter.seal,
            ciphertext=letter.ciphertext,
            sent_ms=sent_ms,
            expires_ms=to_millis(env.expires_at),
            receipt=receipt.signable(),
            receipt_hash=receipt.chain_hash(),
            event=event,
        )
        if created.outcome == "conflict":
            await self._release_unless_ours(filed, sender, env)
            raise LetterIdConflict(f"a different letter was already sent as {env.id}")
        if created.outcome == "exists":
            receipt = Receipt.model_validate_json(created.receipt)
        else:
            self._on_event(State.ACCEPTED)  # counted once the letter exists, whatever follows
        await self._fan_out(env, [receipt])  # also repairs a fan-out an earlier attempt missed
        if created.outcome == "exists":
            return receipt, False
        log.info("letter_accepted", letter_id=env.id, sender=sender, recipient=env.recipient)
        return receipt, True

    async def _release_unless_ours(self, filed: str, sender: str, env: Envelope) -> None:
        """Undo our outbox entry, unless the letter holding the id is ours after all.

        A concurrent send of another sealing of the same id by the same sender may have created
        the letter using the entry this send filed; the entry is right for it and must stay.
        """
        if filed != "new":
            return
        existing = await self.store.letter(env.recipient, env.id)
        if existing is None or existing.sender != sender:
            await self.store.release_outbox(sender, env.id)

    def _check_times(self, env: Envelope, now: datetime) -> None:
        sent, expires = parse_time(env.sent_at), parse_time(env.expires_at)
        if sent > now + MAX_CLOCK_AHEAD:
            raise InvalidLetter("the letter is dated in the future")
        if expires <= now or expires <= sent:
            raise InvalidLetter("the letter's deadline has already passed")
        if expires - sent > MAX_DEADLINE:
            raise InvalidLetter("a letter's deadline can be at most a year after it is sent")

    # --- reading -------------------------------------------------------------------------------

    async def inbox(self, party: str, limit: int) -> list[LetterSummary]:
        """The party's letters, newest first. Listing hands the envelopes over: `delivered`."""
        ids = await self.store.inbox_ids(party, limit)
        records = await self.store.letters([(party, i) for i in ids])
        await self.store.forget_missing(party, sorted(set(ids) - {r.id for r in records}))
        summaries = []
        for record in records:
            current = await self._touch(record, deliver=True)
            summaries.append(_summary(current))
        return summaries

    async def outbox(self, party: str, limit: int) -> list[LetterSummary]:
        pairs = await self.store.outbox_ids(party, limit)
        records = await self.store.letters([(r, i) for i, r in pairs])
        summaries = []
        for record in records:
            if record.sender == party:
                summaries.append(_summary(await self._touch(record)))
        return summaries

    async def status(self, party: str, letter_id: str) -> LetterStatus:
        located = await self._locate(party, letter_id)
        record = await self._touch(located.record)
        keys = ChainKeys(
            courier=self.public_key,
            sender=(await self.party(record.sender)).signing_key,
            recipient=(await self.party(record.recipient)).signing_key,
        )
        return LetterStatus(
            id=record.id,
            state=record.state,
            envelope=Envelope.model_validate_json(record.envelope),
            seal=record.seal,
            receipts=_receipts(record),
            keys=keys,
        )

    async def returned(self, party: str, letter_id: str) -> ReturnedLetter:
        """A letter back with its sender: the sealed letter byte for byte, and its receipts."""
        located = await self._locate(party, letter_id, with_ciphertext=True)
        if located.role is not Actor.SENDER:
            raise UnknownLetter(f"you sent no letter {letter_id}")
        record = await self._touch(located.record)
        if record.state not in {State.RETURNED_UNOPENED, State.EXPIRED, State.WITHDRAWN}:
            raise InvalidTransition(f"the letter is {record.state.value}, not back with its sender")
        if record.ciphertext is None:
            record = await self._reload(record, with_ciphertext=True)
        return ReturnedLetter(
            letter=_sealed(record), state=record.state, receipts=_receipts(record)
        )

    # --- transitions ---------------------------------------------------------------------------

    async def open(self, party: str, letter_id: str, signature: bytes) -> OpenedLetter:
        located = await self._locate(party, letter_id)
        self._require(located, Actor.RECIPIENT)
        record = await self._decide(located.record, State.OPENED, None, signature)
        if record.ciphertext is None:
            raise StoreUnavailable("the ciphertext was not released")
        log.info("letter_opened", letter_id=letter_id, recipient=party)
        return OpenedLetter(letter=_sealed(record), receipts=_receipts(record))

    async def return_unopened(
        self, party: str, letter_id: str, reason: str | None, signature: bytes
    ) -> list[Receipt]:
        located = await self._locate(party, letter_id)
        self._require(located, Actor.RECIPIENT)
        record = await self._decide(located.record, State.RETURNED_UNOPENED, reason, signature)
        log.info("letter_returned_unopened", letter_id=letter_id, recipient=party)
        return _receipts(record)

    async def withdraw(self, party: str, letter_id: str) -> list[Receipt]:
        located = await self._locate(party, letter_id)
        self._require(located, Actor.SENDER)
        record = await self._advance(located.record, State.WITHDRAWN)
        log.info("letter_withdrawn", letter_id=letter_id, sender=party)
        return _receipts(record)

    async def sweep(self, limit: int = 200) -> int:
        """Expire every letter past its deadline and finish interrupted fan-outs to senders;
        returns how many letters were expired now."""
        now_ms = millis(self._clock())
        expired = 0
        for party in await self.store.party_names():
            try:
                expired += await self._sweep_party(party, now_ms, limit)
            except StoreUnavailable as exc:
                # On a Redis Cluster one party's master may be down; the others still need sweeping.
                log.warning("sweep_party_failed", party=party, error=exc.detail)
        if expired:
            log.info("letters_expired", count=expired)
        return expired

    async def _sweep_party(self, party: str, now_ms: int, limit: int) -> int:
        expired = 0
        for letter_id in await self.store.due_ids(party, now_ms, limit):
            expired += await self._expire_one(party, letter_id)
        await self._repair_fan_out(party, limit)
        return expired

    async def _fan_out(self, env: Envelope, receipts: list[Receipt]) -> None:
        """Give the sender the live events of its letter's receipts, then clear the mark.

        A crash between the recipient's transition and this step leaves the mark in place, and
        the sweeper repeats the step (`_repair_fan_out`): the sender misses nothing.
        A store failure here is treated the same way, not raised: the transition is already
        stored (on a Redis Cluster the sender's slot may be on a dead master while the
        recipient's is fine), and an `opened` letter's ciphertext, released once, must still
        reach its recipient.
        """
        events = [_event(env, r, "receipt") for r in receipts]
        try:
            await self.store.fan_out(env.sender, env.id, env.digest(), events)
            await self.store.settle_fanout(env.recipient, env.id, len(receipts))
        except StoreUnavailable as exc:
            log.warning("fan_out_deferred", letter_id=env.id, sender=env.sender, error=exc.detail)

    async def _repair_fan_out(self, recipient: str, limit: int) -> None:
        """Finish fan-outs to senders that a crashed (or still running) request left marked."""
        for letter_id in await self.store.pending_fanout(recipient, limit):
            try:
                record = await self.store.letter(recipient, letter_id)
                if record is None:
                    await self.store.settle_fanout(recipient, letter_id, _GONE)
                    continue
                envelope = Envelope.model_validate_json(record.envelope)
                await self._fan_out(envelope, _receipts(record))
            except StoreUnavailable:
                raise
            except Exception:
                # As with expiry: one unreadable record must not stop the rest.
                log.exception("unreadable_letter", party=recipient, letter_id=letter_id)

    async def event_cursor(self, party: str, last_event_id: str | None) -> tuple[str, bool]:
        """Where a stream resumes, and whether events the client missed were already trimmed."""
        first, last, trimmed_ever = await self.store.event_bounds(party)
        if not last_event_id:
            return last, False
        if not _EVENT_ID.fullmatch(last_event_id):
            raise BadRequest(f"{last_event_id!r} is not an event id (like 1511169342125-0)")
        return last_event_id, trimmed_ever and _id_key(last_event_id) < _id_key(first)

    async def _expire_one(self, party: str, letter_id: str) -> bool:
        """Expire one due letter; a record that cannot be read is logged and skipped, not fatal."""
        try:
            record = await self.store.letter(party, letter_id)
            if record is None or not self._overdue(record):
                return False
            _, issued = await self._apply(record, State.EXPIRED)
            return issued
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("unreadable_letter", party=party, letter_id=letter_id)
            return False

    async def _decide(
        self, record: LetterRecord, event: State, reason: str | None, signature: bytes
    ) -> LetterRecord:
        envelope = Envelope.model_validate_json(record.envelope)
        decision = decision_for(event, envelope, reason)
        recipient = await self.party(record.recipient)
        if not verify_decision(recipient.signing_key, decision, signature):
            raise BadRequest("the decision signature does not verify with your key")
        return await self._advance(
            record,
            event,
            reason=reason,
            recipient_signature=signature,
            release=event is State.OPENED,
        )

    async def _touch(self, record: LetterRecord, *, deliver: bool = False) -> LetterRecord:
        """Enforce the deadline on any contact; on an inbox listing also record delivery."""
        if self._overdue(record):
            return await self._advance(record, State.EXPIRED)
        if lifecycle.is_terminal(record.state):
            return record
        if deliver and record.state is State.ACCEPTED:
            try:
                return await self._advance(record, State.DELIVERED)
            except InvalidTransition:
                return await self._reload(record)
        return record

    async def _advance(
        self,
        record: LetterRecord,
        event: State,
        *,
        reason: str | None = None,
        recipient_signature: bytes | None = None,
        release: bool = False,
    ) -> LetterRecord:
        """Apply `event` with compare-and-set on the chain head, re-reading on a lost race."""
        advanced, _ = await self._apply(record, event, reason, recipient_signature, release)
        return advanced

    async def _apply(
        self,
        record: LetterRecord,
        event: State,
        reason: str | None = None,
        recipient_signature: bytes | None = None,
        release: bool = False,
    ) -> tuple[LetterRecord, bool]:
        """`_advance`, also saying whether this call issued the receipt (or found it done)."""
        await self.claim_store()
        for _ in range(_CAS_ATTEMPTS):
            if event is State.EXPIRED and lifecycle.is_terminal(record.state):
                return record, False  # it ended some other way (or another replica expired it)
            if event is not State.EXPIRED and self._overdue(record):
                record = await self._advance(record, State.EXPIRED)
                if record.state is State.EXPIRED:
                    raise LetterExpired(
                        "the letter passed its deadline and went back to its sender"
                    )
                continue
            events = lifecycle.steps(record.state, event)
            receipts = self._chain(record, events, reason, recipient_signature)
            envelope = Envelope.model_validate_json(record.envelope)
            result = await self.store.transition(
                record.recipient,
                record.id,
                expected_head=record.head,
                new_state=event,
                new_head=receipts[-1].chain_hash(),
                receipts=[r.signable() for r in receipts],
                events=[_event(envelope, r, "receipt") for r in receipts],
                terminal=lifecycle.is_terminal(event),
                release=release,
                retention_ms=self._retention_ms,
            )
            if result.outcome == "missing":
                raise UnknownLetter(f"no letter {record.id}")
            if result.outcome == "ok":
                for receipt in receipts:
                    self._on_event(receipt.event)
                if event is State.EXPIRED:
                    log.info("letter_expired", letter_id=record.id)
                advanced = _advanced(record, event, receipts, result.ciphertext)
                await self._fan_out(envelope, _receipts(advanced))
                return advanced, True
            record = await self._reload(record)
        raise StoreUnavailable("the letter is changing too fast; try again")

    def _chain(
        self,
        record: LetterRecord,
        events: list[State],
        reason: str | None,
        recipient_signature: bytes | None,
    ) -> list[Receipt]:
        now, prev, seq, out = self._clock(), record.head, len(record.receipts), []
        if record.receipts:
            # Replicas' clocks differ a little; a chain's times must still never go backwards.
            now = max(now, parse_time(Receipt.model_validate_json(record.receipts[-1]).at))
        for event in events:
            final = event is events[-1]
            receipt = sign_receipt(
                self._key,
                letter_id=record.id,
                seq=seq,
                event=event,
                at=now,
                envelope_sha256=record.digest,
                prev=prev,
                reason=reason if final else None,
                recipient_signature=recipient_signature if final else None,
            )
            out.append(receipt)
            prev, seq = receipt.chain_hash(), seq + 1
        return out

    async def _locate(
        self, party: str, letter_id: str, *, with_ciphertext: bool = False
    ) -> Located:
        record = await self.store.letter(party, letter_id, with_ciphertext=with_ciphertext)
        if record is not None:
            return Located(record, Actor.RECIPIENT)
        recipient = await self.store.recipient_of(party, letter_id)
        if recipient is not None:
            record = await self.store.letter(recipient, letter_id, with_ciphertext=with_ciphertext)
            if record is not None and record.sender == party:
                return Located(record, Actor.SENDER)
        raise UnknownLetter(f"you have no letter {letter_id}")

    def _require(self, located: Located, role: Actor) -> None:
        if located.role is not role:
            action = "its recipient" if role is Actor.RECIPIENT else "its sender"
            raise Forbidden(f"only {action} may do that to letter {located.record.id}")

    async def _reload(self, record: LetterRecord, *, with_ciphertext: bool = False) -> LetterRecord:
        fresh = await self.store.letter(
            record.recipient, record.id, with_ciphertext=with_ciphertext
        )
        if fresh is None:
            raise UnknownLetter(f"no letter {record.id}")
        return fresh

    def _overdue(self, record: LetterRecord) -> bool:
        return not lifecycle.is_terminal(record.state) and self._now_ms() >= record.expires_ms

    def _now_ms(self) -> int:
        return millis(self._clock())


def _advanced(
    record: LetterRecord, event: State, receipts: list[Receipt], released: bytes | None
) -> LetterRecord:
    """The record as the store now holds it, without reading it again."""
    return replace(
        record,
        state=event,
        head=receipts[-1].chain_hash(),
        ciphertext=released if released is not None else record.ciphertext,
        receipts=[*record.receipts, *(r.signable() for r in receipts)],
    )


def _ignore(event: State) -> None:
    pass


def _receipts(record: LetterRecord) -> list[Receipt]:
    return [Receipt.model_validate_json(raw) for raw in record.receipts]


def _sealed(record: LetterRecord) -> SealedLetter:
    return SealedLetter(
        envelope=Envelope.model_validate_json(record.envelope),
        seal=record.seal,
        ciphertext=record.ciphertext or b"",
    )


def _summary(record: LetterRecord) -> LetterSummary:
    env = Envelope.model_validate_json(record.envelope)
    return LetterSummary(
        id=env.id,
        sender=env.sender,
        recipient=env.recipient,
        state=record.state,
        precedence=env.precedence,
        sent_at=env.sent_at,
        expires_at=env.expires_at,
        in_reply_to=env.in_reply_to,
        envelope=env,
        seal=record.seal,
    )


def _event(env: Envelope, receipt: Receipt, kind: Literal["letter", "receipt"]) -> bytes:
    return (
        LiveEvent(
            kind=kind,
            letter_id=env.id,
            sender=env.sender,
            recipient=env.recipient,
            precedence=env.precedence,
            sent_at=env.sent_at,
            expires_at=env.expires_at,
            state=receipt.event,
            receipt=receipt,
        )
        .model_dump_json(exclude_none=True)
        .encode()
    )


def _id_key(event_id: str) -> tuple[int, int]:
    millis, seq = event_id.split("-")
    return int(millis), int(seq)
