"""The courier: what the service does, between thin HTTP handlers and the Store.

It verifies seals and request signatures, asks the lifecycle what may happen, signs receipts and
has the Store apply them atomically. It never sees plaintext: it holds envelopes, seals and
ciphertext, and proves who sent a letter by the seal alone.
"""

from __future__ import annotations

import asyncio
import hashlib
import re
import secrets
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Literal, TypeVar

import structlog
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from channel.courier.store import Admission, LetterRecord, RateLimit, SendResult, Store
from channel.protocol import lifecycle
from channel.protocol.canonical import (
    format_time,
    millis,
    now_utc,
    parse_time,
    sha256_hex,
    to_millis,
)
from channel.protocol.errors import (
    BadRequest,
    ChannelError,
    Forbidden,
    InvalidLetter,
    InvalidTransition,
    LetterExpired,
    LetterIdConflict,
    Misconfigured,
    NameTaken,
    RateLimited,
    RegistrationClosed,
    Replayed,
    StoreUnavailable,
    UnknownLetter,
    UnknownParty,
)
from channel.protocol.httpsig import (
    NONCE_TTL_MS,
    RequestView,
    SignedBy,
    UnresolvedKey,
    verify_request,
)
from channel.protocol.lifecycle import Actor, State
from channel.protocol.models import (
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
from channel.protocol.names import check_party_name
from channel.protocol.seal import (
    check_sealed,
    decision_for,
    fingerprint,
    party_fingerprint,
    raw_public,
    sign_receipt,
    verify_decision,
)

log = structlog.get_logger("channel.courier.service")

MAX_DEADLINE_MS = 366 * 24 * 3600 * 1000
MAX_CLOCK_AHEAD_MS = 5 * 60 * 1000
INVITE_TTL_SECONDS = 7 * 24 * 3600
_REPLAYED = "this request was already received (its nonce was used)"
_EVENT_ID = re.compile(r"[0-9]{1,20}-[0-9]{1,20}")  # ASCII: \d takes any Unicode digit
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
        rate_limit: RateLimit | None = None,
    ) -> None:
        self.store = store
        self._key = key
        self.public_key = raw_public(key)
        self.open_registration = open_registration
        self._retention_ms = int(retention.total_seconds() * 1000)
        self._clock = clock
        # Told of each receipt the courier issues, by event (the server's metrics count them).
        self._on_event = on_event or _ignore
        # A send takes its rate-limit token inside its own script (the HTTP layer takes the
        # other routes' tokens); None: no limit.
        self.rate_limit = rate_limit
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

        On a single Redis this is one script call: it claims the request's nonce, takes the
        sender's rate-limit token, files the outbox and inbox entries, stores the letter, indexes
        its deadline and appends both parties' live events (docs/store.md, "Send").
        """
        await self.claim_store()
        sender, env = signed.party, letter.envelope
        try:
            digest, sent_ms, expires_ms = await self._check_send(sender, letter)
        except (BadRequest, Forbidden, InvalidLetter, UnknownParty):
            # A refused send still spends a token, as every other request does before its checks.
            await self._take_token(sender)
            raise
        now = self._clock()
        receipt = sign_receipt(
            self._key, letter_id=env.id, seq=0, event=State.ACCEPTED, at=now, envelope_sha256=digest
        )
        result = await self.store.send(
            letter_id=env.id,
            sender=sender,
            recipient=env.recipient,
            envelope=env,
            seal=letter.seal,
            ciphertext=letter.ciphertext,
            sent_ms=sent_ms,
            expires_ms=expires_ms,
            receipt=receipt,
            recipient_event=_event(env, receipt, "letter"),
            sender_event=_event(env, receipt, "receipt"),
            nonce=signed.nonce,
            nonce_ttl_ms=NONCE_TTL_MS,
            rate=self.rate_limit,
            now_ms=millis(now),
        )
        if result.outcome == "exists" and result.receipt is not None:
            return result.receipt, False
        if result.outcome != "created":
            raise _refusal(result, sender, env.id)
        self._on_event(State.ACCEPTED)
        log.info("letter_accepted", letter_id=env.id, sender=sender, recipient=env.recipient)
        return receipt, True

    async def _check_send(self, sender: str, letter: SealedLetter) -> tuple[str, int, int]:
        """The send's own checks, before anything is stored: (digest, sent ms, expires ms)."""
        env = letter.envelope
        if env.sender != sender:
            raise Forbidden("you can only send letters sealed in your own name")
        if env.recipient == sender:
            raise BadRequest("a party cannot send a letter to itself")
        recipient = await self.party(env.recipient)
        digest = check_sealed(letter, (await self.party(sender)).signing_key)
        if env.recipient_key != sha256_hex(recipient.encryption_key):
            raise InvalidLetter("the letter is sealed to a key that is not the recipient's")
        sent_ms, expires_ms = to_millis(env.sent_at), to_millis(env.expires_at)
        now_ms = self._now_ms()
        if sent_ms > now_ms + MAX_CLOCK_AHEAD_MS:
            raise InvalidLetter("the letter is dated in the future")
        if expires_ms <= now_ms or expires_ms <= sent_ms:
            raise InvalidLetter("the letter's deadline has already passed")
        if expires_ms - sent_ms > MAX_DEADLINE_MS:
            raise InvalidLetter("a letter's deadline can be at most a year after it is sent")
        return digest, sent_ms, expires_ms

    async def _take_token(self, party: str) -> None:
        if self.rate_limit is None:
            return
        taken, wait_ms = await self.store.take_token(
            party,
            capacity=self.rate_limit.capacity,
            per_second=self.rate_limit.per_second,
            now_ms=self._now_ms(),
        )
        if not taken:
            raise _rate_limited(party, self.rate_limit, wait_ms)

    # --- reading -------------------------------------------------------------------------------

    async def inbox(self, party: str, limit: int, before: str | None = None) -> list[LetterSummary]:
        """The party's letters, newest first (after `before`). Listing hands the envelopes over:
        `delivered`."""
        ids = _page(await self.store.inbox_ids(party, limit, before), before)
        records = await self.store.letters([(party, i) for i in ids])
        await self.store.forget_missing(party, sorted(set(ids) - {r.id for r in records}))
        touched = await asyncio.gather(*(self._touch(r, deliver=True) for r in records))
        return [_summary(record) for record in touched]

    async def outbox(
        self, party: str, limit: int, before: str | None = None
    ) -> list[LetterSummary]:
        pairs = _page(await self.store.outbox_ids(party, limit, before), before)
        records = await self.store.letters([(r, i) for i, r in pairs])
        touched = await asyncio.gather(*(self._touch(r) for r in records if r.sender == party))
        return [_summary(record) for record in touched]

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
            envelope=record.env,
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
        record = await self._decide(located, State.OPENED, None, signature)
        if record.ciphertext is None:
            raise StoreUnavailable("the ciphertext was not released")
        log.info("letter_opened", letter_id=letter_id, recipient=party)
        return OpenedLetter(letter=_sealed(record), receipts=_receipts(record))

    async def return_unopened(
        self, party: str, letter_id: str, reason: str | None, signature: bytes
    ) -> list[Receipt]:
        located = await self._locate(party, letter_id)
        record = await self._decide(located, State.RETURNED_UNOPENED, reason, signature)
        log.info("letter_returned_unopened", letter_id=letter_id, recipient=party)
        return _receipts(record)

    async def withdraw(self, party: str, letter_id: str) -> list[Receipt]:
        located = await self._locate(party, letter_id)
        record = await self._advance(located.record, State.WITHDRAWN, located.role)
        log.info("letter_withdrawn", letter_id=letter_id, sender=party)
        return _receipts(record)

    async def sweep(self, limit: int = 200) -> int:
        """Expire every letter past its deadline (and, on a Redis Cluster, finish the fan-outs
        to senders' streams); returns how many letters were expired now.

        On a single Redis the deadlines sit in DUE_BUCKETS buckets: one pipelined read of them
        all, then work for the letters due only. On a cluster each party's slot is swept.
        """
        now_ms = millis(self._clock())
        if self.store.clustered:
            expired = 0
            for party in await self.store.party_names():
                try:
                    expired += await self._sweep_party(party, now_ms, limit)
                except StoreUnavailable as exc:
                    # One party's master may be down; the others still need sweeping.
                    log.warning("sweep_party_failed", party=party, error=exc.detail)
        else:
            due = await self.store.due_letters(now_ms, limit)
            expired = sum(await asyncio.gather(*(self._expire_one(r, i) for r, i in due)))
        if expired:
            log.info("letters_expired", count=expired)
        return expired

    async def _sweep_party(self, party: str, now_ms: int, limit: int) -> int:
        expired = 0
        for letter_id in await self.store.due_ids(party, now_ms, limit):
            expired += await self._expire_one(party, letter_id)
        await self._repair_fan_out(party, limit)
        return expired

    async def _fan_out(self, record: LetterRecord) -> bool:
        """Redis Cluster: give the sender the live events of its letter's receipts it lacks.

        The recipient's slot marked the letter when it stored them; the mark stays until the
        sweeper settles it (`_repair_fan_out`), so a crash before this copy loses nothing. A store
        failure here is logged, not raised: the transition is already stored (the sender's slot
        may be on a dead master while the recipient's is fine), and an `opened` letter's
        ciphertext, released once, must still reach its recipient.
        """
        env = record.env
        events = [_event(env, r, "receipt") for r in record.chain]
        retention = self._retention_ms if lifecycle.is_terminal(record.state) else None
        try:
            await self.store.fan_out(
                record.sender, record.id, record.digest, events, retention_ms=retention
            )
        except StoreUnavailable as exc:
            log.warning("fan_out_deferred", letter_id=env.id, sender=env.sender, error=exc.detail)
            return False
        return True

    async def _repair_fan_out(self, recipient: str, limit: int) -> None:
        """Redis Cluster: finish the fan-outs to senders that sends and transitions marked (a
        send leaves its sender's `accepted` event to this step), then settle the marks."""
        for letter_id in await self.store.pending_fanout(recipient, limit):
            try:
                record = await self.store.letter(recipient, letter_id)
                if record is None:
                    await self.store.settle_fanout(recipient, letter_id, _GONE)
                elif await self._fan_out(record):
                    await self.store.settle_fanout(recipient, letter_id, len(record.chain))
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
            if record is None:
                await self.store.forget_due(party, letter_id)
                return False
            if not self._overdue(record):
                return False
            _, issued = await self._apply(record, State.EXPIRED, Actor.COURIER)
            return issued
        except StoreUnavailable:
            raise
        except Exception:
            log.exception("unreadable_letter", party=party, letter_id=letter_id)
            return False

    async def _decide(
        self, located: Located, event: State, reason: str | None, signature: bytes
    ) -> LetterRecord:
        lifecycle.authorize(event, located.role)
        record = located.record
        decision = decision_for(event, record.env, reason)
        recipient = await self.party(record.recipient)
        if not verify_decision(recipient.signing_key, decision, signature):
            raise BadRequest("the decision signature does not verify with your key")
        return await self._advance(
            record,
            event,
            located.role,
            reason=reason,
            recipient_signature=signature,
            release=event is State.OPENED,
        )

    async def _touch(self, record: LetterRecord, *, deliver: bool = False) -> LetterRecord:
        """Enforce the deadline on any contact; on an inbox listing (the recipient's) also
        record delivery."""
        if self._overdue(record):
            return await self._advance(record, State.EXPIRED, Actor.COURIER)
        if lifecycle.is_terminal(record.state):
            return record
        if deliver and record.state is State.ACCEPTED:
            try:
                return await self._advance(record, State.DELIVERED, Actor.RECIPIENT)
            except InvalidTransition:
                return await self._reload(record)
        return record

    async def _advance(
        self,
        record: LetterRecord,
        event: State,
        actor: Actor,
        *,
        reason: str | None = None,
        recipient_signature: bytes | None = None,
        release: bool = False,
    ) -> LetterRecord:
        """Apply `event` with compare-and-set on the chain head, re-reading on a lost race."""
        advanced, _ = await self._apply(record, event, actor, reason, recipient_signature, release)
        return advanced

    async def _apply(
        self,
        record: LetterRecord,
        event: State,
        actor: Actor,
        reason: str | None = None,
        recipient_signature: bytes | None = None,
        release: bool = False,
    ) -> tuple[LetterRecord, bool]:
        """`_advance`, also saying whether this call issued the receipt (or found it done)."""
        lifecycle.authorize(event, actor)
        await self.claim_store()
        for _ in range(_CAS_ATTEMPTS):
            if event is State.EXPIRED and lifecycle.is_terminal(record.state):
                return record, False  # it ended some other way (or another replica expired it)
            if event is not State.EXPIRED and self._overdue(record):
                record = await self._advance(record, State.EXPIRED, Actor.COURIER)
                if record.state is State.EXPIRED:
                    raise LetterExpired(
                        "the letter passed its deadline and went back to its sender"
                    )
                continue
            events = lifecycle.steps(record.state, event, actor)
            receipts = self._chain(record, events, reason, recipient_signature)
            envelope = record.env
            result = await self.store.transition(
                record.recipient,
                record.id,
                sender=record.sender,
                expected_head=record.head,
                new_state=event,
                receipts=receipts,
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
                if self.store.clustered:
                    await self._fan_out(advanced)
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
        now, prev, seq, out = self._clock(), record.head, len(record.chain), []
        if record.chain:
            # Replicas' clocks differ a little; a chain's times must still never go backwards.
            now = max(now, parse_time(record.chain[-1].at))
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
        # Both questions at once: on a single Redis they share one round trip.
        record, recipient = await asyncio.gather(
            self.store.letter(party, letter_id, with_ciphertext=with_ciphertext),
            self.store.recipient_of(party, letter_id),
        )
        if record is not None:
            return Located(record, Actor.RECIPIENT)
        if recipient is not None:
            record = await self.store.letter(recipient, letter_id, with_ciphertext=with_ciphertext)
            if record is not None and record.sender == party:
                return Located(record, Actor.SENDER)
        raise UnknownLetter(f"you have no letter {letter_id}")

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
        chain=[*record.chain, *receipts],
    )


def _refusal(result: SendResult, sender: str, letter_id: str) -> ChannelError:
    if result.outcome == "replayed":
        return Replayed(_REPLAYED)
    if result.outcome == "limited":
        return RateLimited(
            f"{sender} is over its request rate limit; try again in {result.retry_after_ms} ms",
            retry_after_ms=result.retry_after_ms,
        )
    if result.outcome == "other":
        return LetterIdConflict(f"the letter id {letter_id} is already used by one of your letters")
    return LetterIdConflict(f"a different letter was already sent as {letter_id}")


def _rate_limited(party: str, limit: RateLimit, wait_ms: int) -> RateLimited:
    return RateLimited(
        f"{party} is over its limit of {limit.per_second:g} requests a second "
        f"(bursts of {limit.capacity}); try again in {wait_ms} ms",
        retry_after_ms=wait_ms,
    )


def _ignore(event: State) -> None:
    pass


def _receipts(record: LetterRecord) -> list[Receipt]:
    return list(record.chain)


def _sealed(record: LetterRecord) -> SealedLetter:
    return SealedLetter(
        envelope=record.env,
        seal=record.seal,
        ciphertext=record.ciphertext or b"",
    )


def _summary(record: LetterRecord) -> LetterSummary:
    env = record.env
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
    """A thin live event: what a watcher shows; the envelope and receipt are a GET away."""
    return (
        LiveEvent(
            kind=kind,
            letter_id=env.id,
            sender=env.sender,
            recipient=env.recipient,
            precedence=env.precedence,
            state=receipt.event,
            seq=receipt.seq,
            at=receipt.at,
        )
        .model_dump_json(exclude_defaults=True)
        .encode()
    )


def _id_key(event_id: str) -> tuple[int, int]:
    millis, seq = event_id.split("-")
    return int(millis), int(seq)


_Row = TypeVar("_Row")


def _page(rows: list[_Row] | None, before: str | None) -> list[_Row]:
    """A listing page; the store says None when the `before` cursor is not in the listing."""
    if rows is None:
        raise UnknownLetter(f"{before!r} is not in this listing (start again from the newest)")
    return rows
