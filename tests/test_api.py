"""The API end to end through the typed client, against a real courier and a real Redis."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

import aiohttp
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from channel import __version__
from channel.party.client import Client
from channel.protocol.canonical import now_utc, parse_time
from channel.protocol.errors import (
    InvalidTransition,
    LetterExpired,
    LetterIdConflict,
    UnknownLetter,
)
from channel.protocol.lifecycle import State
from channel.protocol.models import (
    PartyRecord,
    Precedence,
    Receipt,
    ReceiptList,
    RegisterRequest,
    ReturnRequest,
    SealedLetter,
    b64,
)
from channel.protocol.names import new_letter_id
from channel.protocol.seal import (
    PartyKeys,
    decision_for,
    fingerprint,
    raw_public,
    seal_letter,
    sign_decision,
    verify_decision,
)
from tests.conftest import (
    Connect,
    CourierFactory,
    PartyFactory,
    check_chain,
    identity,
    nonce_free,
    signed_call,
    signed_headers,
    store_snapshot,
)

QUDS = "ir.irgc.quds"
DIRECTOR = "us.cia.director"
SUBJECT = "Attacks on American interests in Iraq"
BODY = "General, we will hold you and Iran accountable. \u2014 Director"


async def letter_key(redis: aioredis.Redis, letter_id: str) -> bytes:
    """The one Redis key holding this letter's hash (found by scanning, not by layout)."""
    keys = [k async for k in redis.scan_iter(match=f"*:letter:{letter_id}")]
    assert len(keys) == 1, keys
    return bytes(keys[0])


async def stored_ciphertext(redis: aioredis.Redis, letter_id: str) -> bytes | None:
    """The letter's ciphertext as stored (in a key of its own), or None once released."""
    keys = [k async for k in redis.scan_iter(match=f"*:ct:{letter_id}")]
    stored = await redis.get(keys[0]) if keys else None
    assert stored is None or isinstance(stored, bytes)
    return stored


async def stored_state(redis: aioredis.Redis, letter_id: str) -> State:
    state = await redis.hget(await letter_key(redis, letter_id), "state")
    assert isinstance(state, bytes)
    return State(state.decode())


def events(receipts: list[Receipt]) -> list[State]:
    return [r.event for r in receipts]


async def test_send_list_open(
    director: Client, quds: Client, courier_key: Ed25519PrivateKey
) -> None:
    """Send, list (delivered), open: the body decrypts, the sender verifies, the chain is whole."""
    sealed, receipt = await director.send_letter(QUDS, BODY, subject=SUBJECT)
    assert receipt.event is State.ACCEPTED
    assert receipt.seq == 0
    inbox = await quds.inbox()
    assert [(s.id, s.state, s.sender) for s in inbox] == [
        (sealed.envelope.id, State.DELIVERED, DIRECTOR)
    ]
    assert inbox[0].envelope == sealed.envelope
    assert inbox[0].seal == sealed.seal
    content, opened = await quds.open_letter(sealed.envelope.id)
    assert content.content.body == BODY
    assert content.content.subject == SUBJECT
    assert content.content.sender == DIRECTOR
    assert opened.letter == sealed
    assert events(opened.receipts) == [State.ACCEPTED, State.DELIVERED, State.OPENED]
    check_chain(opened.receipts, sealed, courier_key, quds)
    assert opened.receipts[0] == receipt
    decision = decision_for(State.OPENED, sealed.envelope)
    signature = opened.receipts[-1].recipient_signature
    assert signature is not None
    assert verify_decision(identity(quds).public().signing_key, decision, signature)


async def test_open_without_listing_records_delivery_first(
    director: Client, quds: Client, courier_key: Ed25519PrivateKey
) -> None:
    """Opening a letter never listed records the implied `delivered` receipt before `opened`."""
    sealed, _ = await director.send_letter(QUDS, BODY)
    _, opened = await quds.open_letter(sealed.envelope.id)
    assert events(opened.receipts) == [State.ACCEPTED, State.DELIVERED, State.OPENED]
    assert [r.seq for r in opened.receipts] == [0, 1, 2]
    check_chain(opened.receipts, sealed, courier_key, quds)


async def test_return_unopened_comes_back_byte_for_byte(
    director: Client,
    quds: Client,
    courier_key: Ed25519PrivateKey,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
) -> None:
    """A returned letter carries the recipient's signed refusal and goes back exactly as sent."""
    sealed, _ = await director.send_letter(QUDS, BODY, subject=SUBJECT)
    letter_id = sealed.envelope.id
    await quds.inbox()
    decision = decision_for(State.RETURNED_UNOPENED, sealed.envelope, "Not accepted")
    request = ReturnRequest(
        reason="Not accepted", signature=sign_decision(identity(quds), decision)
    )
    reply = await signed_call(
        http,
        identity(quds),
        "POST",
        f"{quds.base_url}/v1/letters/{letter_id}/return",
        request.model_dump_json(exclude_none=True).encode(),
    )
    assert reply.status == 200
    assert b64(sealed.ciphertext).encode() not in reply.body
    receipts = ReceiptList.model_validate_json(reply.body).receipts
    assert events(receipts) == [State.ACCEPTED, State.DELIVERED, State.RETURNED_UNOPENED]
    last = receipts[-1]
    assert last.reason == "Not accepted"
    assert last.recipient_signature is not None
    assert verify_decision(identity(quds).public().signing_key, decision, last.recipient_signature)
    check_chain(receipts, sealed, courier_key, quds)

    back = await director.returned(letter_id)
    assert back.state is State.RETURNED_UNOPENED
    assert back.letter.model_dump_json() == sealed.model_dump_json()
    assert back.letter.envelope.signable() == sealed.envelope.signable()
    assert back.letter.seal == sealed.seal
    assert back.letter.ciphertext == sealed.ciphertext
    assert back.receipts == receipts

    # The recipient never gets the ciphertext: no open, no returned copy, still held for the sender.
    with pytest.raises(InvalidTransition):
        await quds.open(
            letter_id, sign_decision(identity(quds), decision_for(State.OPENED, sealed.envelope))
        )
    with pytest.raises(UnknownLetter):
        await quds.returned(letter_id)
    assert await stored_ciphertext(redis, letter_id) == sealed.ciphertext


async def test_withdraw_while_unopened(
    director: Client, quds: Client, courier_key: Ed25519PrivateKey
) -> None:
    """The sender withdraws an unopened letter; the recipient can no longer open it."""
    undelivered, _ = await director.send_letter(QUDS, BODY)
    delivered, _ = await director.send_letter(QUDS, BODY + " (2)")
    await quds.inbox()  # delivers both
    receipts = await director.withdraw(undelivered.envelope.id)
    # The inbox listing above delivered both letters.
    assert events(receipts) == [State.ACCEPTED, State.DELIVERED, State.WITHDRAWN]
    receipts = await director.withdraw(delivered.envelope.id)
    assert events(receipts) == [State.ACCEPTED, State.DELIVERED, State.WITHDRAWN]
    check_chain(receipts, delivered, courier_key, quds)
    with pytest.raises(InvalidTransition) as refused:
        await quds.open_letter(delivered.envelope.id)
    assert refused.value.code == "invalid_transition"
    back = await director.returned(delivered.envelope.id)
    assert back.state is State.WITHDRAWN
    assert back.letter == delivered


async def test_withdraw_before_delivery_has_no_delivered_receipt(
    director: Client, quds: Client, courier_key: Ed25519PrivateKey
) -> None:
    """Withdrawing an undelivered letter records only `withdrawn` after `accepted`."""
    sealed, _ = await director.send_letter(QUDS, BODY)
    receipts = await director.withdraw(sealed.envelope.id)
    assert events(receipts) == [State.ACCEPTED, State.WITHDRAWN]
    check_chain(receipts, sealed, courier_key, quds)
    assert [s.state for s in await quds.inbox()] == [State.WITHDRAWN]


async def test_withdraw_after_open_is_refused(director: Client, quds: Client) -> None:
    """An opened letter cannot be withdrawn: 409 invalid_transition, chain unchanged."""
    sealed, _ = await director.send_letter(QUDS, BODY)
    await quds.open_letter(sealed.envelope.id)
    with pytest.raises(InvalidTransition) as refused:
        await director.withdraw(sealed.envelope.id)
    assert refused.value.status == 409
    status = await director.status(sealed.envelope.id)
    assert events(status.receipts) == [State.ACCEPTED, State.DELIVERED, State.OPENED]


async def test_resend_same_letter_is_idempotent(
    director: Client, quds: Client, http: aiohttp.ClientSession
) -> None:
    """Re-sending the same sealed letter returns the identical receipt (200) and stores it once."""
    sealed = await director.seal(QUDS, BODY)
    body = sealed.model_dump_json(exclude_none=True).encode()
    url = f"{director.base_url}/v1/letters"
    first = await signed_call(http, identity(director), "POST", url, body)
    second = await signed_call(http, identity(director), "POST", url, body)
    assert (first.status, second.status) == (201, 200)
    assert first.body == second.body
    third = await director.send(sealed)
    assert third == Receipt.model_validate_json(first.body)
    status = await director.status(sealed.envelope.id)
    assert events(status.receipts) == [State.ACCEPTED]
    assert [s.id for s in await quds.inbox()] == [sealed.envelope.id]
    assert [s.id for s in await director.outbox()] == [sealed.envelope.id]


async def test_different_letter_under_same_id_conflicts(
    director: Client, quds: Client, party: PartyFactory, redis: aioredis.Redis
) -> None:
    """A different letter under a used id is refused (409) and the store is left as it was."""
    await party("ru.svr.director")
    sealed, receipt = await director.send_letter(QUDS, BODY)
    letter_id = sealed.envelope.id
    before = nonce_free(await store_snapshot(redis))
    for to in (QUDS, "ru.svr.director"):
        other = await director.seal(to, "a different letter", letter_id=letter_id)
        with pytest.raises(LetterIdConflict) as refused:
            await director.send(other)
        assert refused.value.status == 409
        assert nonce_free(await store_snapshot(redis)) == before
    status = await director.status(letter_id)
    assert status.receipts == [receipt]
    assert status.envelope == sealed.envelope


async def test_open_releases_the_ciphertext_once(
    director: Client, quds: Client, redis: aioredis.Redis
) -> None:
    """The first open releases the ciphertext and drops it from the store; a second open is 409."""
    sealed, _ = await director.send_letter(QUDS, BODY)
    assert await stored_ciphertext(redis, sealed.envelope.id) == sealed.ciphertext
    content, opened = await quds.open_letter(sealed.envelope.id)
    assert content.content.body == BODY
    assert opened.letter.ciphertext == sealed.ciphertext
    assert await stored_ciphertext(redis, sealed.envelope.id) is None
    signature = sign_decision(identity(quds), decision_for(State.OPENED, sealed.envelope))
    with pytest.raises(InvalidTransition) as refused:
        await quds.open(sealed.envelope.id, signature)
    assert refused.value.code == "invalid_transition"
    assert refused.value.status == 409
    status = await quds.status(sealed.envelope.id)
    assert events(status.receipts) == [State.ACCEPTED, State.DELIVERED, State.OPENED]
    with pytest.raises(InvalidTransition):
        await director.returned(sealed.envelope.id)


async def test_status_is_the_same_for_sender_and_recipient(
    director: Client, quds: Client, courier_key: Ed25519PrivateKey
) -> None:
    """Sender and recipient read the same state, envelope, seal, chain and keys."""
    sealed, _ = await director.send_letter(QUDS, BODY)
    await quds.return_letter(sealed.envelope.id, reason="No")
    by_sender = await director.verified_status(sealed.envelope.id)
    by_recipient = await quds.verified_status(sealed.envelope.id)
    assert by_sender == by_recipient
    assert by_sender.state is State.RETURNED_UNOPENED
    assert by_sender.keys.courier == raw_public(courier_key)
    assert by_sender.keys.sender == identity(director).public().signing_key
    assert by_sender.keys.recipient == identity(quds).public().signing_key
    assert by_sender.seal == sealed.seal


async def test_outbox_and_inbox_list_newest_first(
    director: Client, quds: Client, party: PartyFactory
) -> None:
    """The outbox lists every letter the party sent, the inboxes only their own, newest first."""
    svr = await party("ru.svr.director")
    now = now_utc()
    sent: list[SealedLetter] = []
    for age, to in ((3, QUDS), (2, "ru.svr.director"), (1, QUDS)):
        letter = seal_letter(
            identity(director),
            await director.public_keys(to),
            letter_id=new_letter_id(),
            subject="",
            body=f"letter {age}",
            sent_at=now - timedelta(seconds=age),
            expires_at=now + timedelta(days=1),
        )
        await director.send(letter)
        sent.append(letter)
    newest_first = [letter.envelope.id for letter in reversed(sent)]
    assert [s.id for s in await director.outbox()] == newest_first
    assert [s.id for s in await director.outbox(limit=2)] == newest_first[:2]
    assert [s.id for s in await quds.inbox()] == [newest_first[0], newest_first[2]]
    assert [s.id for s in await quds.inbox(limit=1)] == [newest_first[0]]
    assert [s.id for s in await svr.inbox()] == [newest_first[1]]
    assert await quds.outbox() == []
    assert await director.inbox() == []


async def test_listing_the_inbox_twice_delivers_once(director: Client, quds: Client) -> None:
    """Listing records `delivered` once; listing again adds nothing."""
    sealed, _ = await director.send_letter(QUDS, BODY)
    await quds.inbox()
    await quds.inbox()
    status = await director.status(sealed.envelope.id)
    assert events(status.receipts) == [State.ACCEPTED, State.DELIVERED]


async def test_reply_carries_in_reply_to_and_precedence(director: Client, quds: Client) -> None:
    """A reply names the letter it answers, and its precedence reaches the recipient."""
    sealed, _ = await director.send_letter(QUDS, BODY)
    reply, _ = await quds.send_letter(
        DIRECTOR, "Received.", in_reply_to=sealed.envelope.id, precedence=Precedence.FLASH
    )
    (summary,) = await director.inbox()
    assert summary.id == reply.envelope.id
    assert summary.in_reply_to == sealed.envelope.id
    assert summary.precedence is Precedence.FLASH
    content, _ = await director.open_letter(reply.envelope.id)
    assert content.content.body == "Received."


async def test_returned_copy_only_once_back_with_sender(director: Client, quds: Client) -> None:
    """Fetching the returned copy of a letter still out with its recipient is refused (409)."""
    sealed, _ = await director.send_letter(QUDS, BODY)
    with pytest.raises(InvalidTransition, match="not back with its sender"):
        await director.returned(sealed.envelope.id)


async def test_health_courier_key_and_party_lookup(
    client: Client, quds: Client, courier_key: Ed25519PrivateKey
) -> None:
    """The unsigned endpoints answer: liveness, the courier's key, a party's public keys."""
    health = await client.health()
    assert health.status == "ok"
    assert health.version == __version__
    key = await client.courier_key()
    assert key.signing_key == raw_public(courier_key)
    assert key.fingerprint == fingerprint(raw_public(courier_key))
    record = await client.party(QUDS)
    public = identity(quds).public()
    assert (record.name, record.signing_key, record.encryption_key) == (
        QUDS,
        public.signing_key,
        public.encryption_key,
    )


async def test_registering_the_same_keys_again_is_idempotent(
    client: Client, http: aiohttp.ClientSession
) -> None:
    """Registering a name is 201 the first time and 200 with the same record after."""
    keys = PartyKeys.generate("gb.fco.desk")
    body = RegisterRequest(**keys.public().model_dump()).model_dump_json(exclude_none=True)
    url = f"{client.base_url}/v1/parties"
    replies = []
    for _ in range(2):
        async with http.post(
            url, data=body.encode(), headers=signed_headers(keys, "POST", url, body.encode())
        ) as reply:
            replies.append((reply.status, PartyRecord.model_validate_json(await reply.read())))
    assert [status for status, _ in replies] == [201, 200]
    assert replies[0][1] == replies[1][1]


# --- expiry ----------------------------------------------------------------------------------


async def _registered(url: str, connect: Connect, name: str) -> Client:
    acting = connect(url, PartyKeys.generate(name))
    await acting.register()
    return acting


async def _wait_past(sealed: SealedLetter) -> None:
    """Sleep until the letter's deadline has passed on this machine's clock."""
    remaining = (parse_time(sealed.envelope.expires_at) - now_utc()).total_seconds()
    await asyncio.sleep(max(remaining, 0) + 0.05)


async def test_sweeper_expires_a_letter_past_its_deadline(
    start_courier: CourierFactory,
    connect: Connect,
    redis: aioredis.Redis,
    courier_key: Ed25519PrivateKey,
) -> None:
    """Untouched past its deadline, a letter gets an `expired` receipt from the sweeper."""
    url = await start_courier(sweep_interval=0.1)
    director = await _registered(url, connect, DIRECTOR)
    quds = await _registered(url, connect, QUDS)
    sealed = await director.seal(QUDS, BODY, expires_in=timedelta(seconds=1))
    await director.send(sealed)
    for _ in range(200):  # bounded wait for the sweeper, touching nothing through the API
        if await stored_state(redis, sealed.envelope.id) is State.EXPIRED:
            break
        await asyncio.sleep(0.05)
    assert await stored_state(redis, sealed.envelope.id) is State.EXPIRED
    status = await director.status(sealed.envelope.id)
    assert status.state is State.EXPIRED
    assert events(status.receipts) == [State.ACCEPTED, State.EXPIRED]
    check_chain(status.receipts, sealed, courier_key, quds)
    back = await director.returned(sealed.envelope.id)
    assert back.state is State.EXPIRED
    assert back.letter == sealed


async def test_touching_a_letter_past_its_deadline_expires_it(
    start_courier: CourierFactory,
    connect: Connect,
    courier_key: Ed25519PrivateKey,
) -> None:
    """Open, return or withdraw past the deadline: refused (letter_expired), `expired` recorded."""
    url = await start_courier(sweep_interval=3600)
    director = await _registered(url, connect, DIRECTOR)
    quds = await _registered(url, connect, QUDS)
    letters = [
        await director.seal(QUDS, f"{BODY} {n}", expires_in=timedelta(seconds=1)) for n in range(3)
    ]
    for letter in letters:
        await director.send(letter)
    await quds.inbox()  # delivered, so every letter is live and unterminated
    await _wait_past(letters[-1])
    opening, returning, withdrawing = letters
    me = identity(quds)
    attempts = [
        quds.open(
            opening.envelope.id, sign_decision(me, decision_for(State.OPENED, opening.envelope))
        ),
        quds.return_unopened(
            returning.envelope.id,
            sign_decision(me, decision_for(State.RETURNED_UNOPENED, returning.envelope, "late")),
            "late",
        ),
        director.withdraw(withdrawing.envelope.id),
    ]
    for attempt, letter in zip(attempts, letters, strict=True):
        with pytest.raises(LetterExpired) as refused:
            await attempt
        assert refused.value.code == "letter_expired"
        status = await director.status(letter.envelope.id)
        assert status.state is State.EXPIRED
        assert events(status.receipts) == [State.ACCEPTED, State.DELIVERED, State.EXPIRED]
        check_chain(status.receipts, letter, courier_key, quds)
    # Once expired, every further move is refused the same way.
    with pytest.raises(LetterExpired):
        await quds.open_letter(opening.envelope.id)


async def test_listing_past_the_deadline_shows_expired(
    start_courier: CourierFactory, connect: Connect
) -> None:
    """An inbox listing past a letter's deadline shows it expired, not delivered."""
    url = await start_courier(sweep_interval=3600)
    director = await _registered(url, connect, DIRECTOR)
    quds = await _registered(url, connect, QUDS)
    sealed = await director.seal(QUDS, BODY, expires_in=timedelta(seconds=1))
    await director.send(sealed)
    await _wait_past(sealed)
    assert [(s.id, s.state) for s in await quds.inbox()] == [(sealed.envelope.id, State.EXPIRED)]
    status = await quds.status(sealed.envelope.id)
    assert events(status.receipts) == [State.ACCEPTED, State.EXPIRED]


async def test_request_id_is_echoed_or_made(client: Client, http: aiohttp.ClientSession) -> None:
    """A well-formed X-Request-Id comes back as sent; a malformed one is replaced by a fresh id."""
    url = f"{client.base_url}/healthz"
    async with http.get(url, headers={"X-Request-Id": "trace-42.a_b"}) as reply:
        assert reply.headers["X-Request-Id"] == "trace-42.a_b"
    async with http.get(url, headers={"X-Request-Id": "no spaces <allowed>"}) as reply:
        made = reply.headers["X-Request-Id"]
    assert made != "no spaces <allowed>"
    assert re.fullmatch(r"[0-9a-f]{16}", made)


async def test_success_bodies_are_json_without_nulls(
    director: Client, quds: Client, http: aiohttp.ClientSession
) -> None:
    """Successful answers are application/json and omit absent fields rather than sending null."""
    sealed, _ = await director.send_letter(QUDS, BODY)
    url = f"{director.base_url}/v1/letters/{sealed.envelope.id}"
    reply = await signed_call(http, identity(director), "GET", url)
    assert reply.status == 200
    assert reply.content_type == "application/json"
    assert b"null" not in reply.body
    assert "in_reply_to" not in reply.json()["envelope"]
