"""The Store on a real Redis: key layout, cluster slots, and each Lua script's contract."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from importlib import resources
from typing import Any

import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.crc import key_slot

from channel.courier.embedded import EmbeddedRedis
from channel.courier.service import Courier
from channel.courier.store import DUE_BUCKETS, RateLimit, Store, due_bucket
from channel.party.client import Client
from channel.protocol.errors import StoreUnavailable
from channel.protocol.lifecycle import State
from channel.protocol.models import Envelope, Receipt
from channel.protocol.seal import PartyKeys, decision_for, sign_decision, sign_receipt
from tests.conftest import (
    Connect,
    CourierFactory,
    PartyFactory,
    identity,
    store_blobs,
    store_snapshot,
)

QUDS = "ir.irgc.quds"
DIRECTOR = "us.cia.director"
LUA = {
    path.name.removesuffix(".lua"): path.read_text(encoding="utf-8")
    for path in resources.files("channel.courier").joinpath("lua").iterdir()
    if path.name.endswith(".lua")
}
TAG = re.compile(rb"^bc:\{([a-z][a-z0-9.-]{2,63}|due:\d+)\}")


def _tag(key: bytes) -> bytes:
    match = TAG.match(key)
    assert match, key
    return match.group(1)


# --- the layout after real traffic -----------------------------------------------------------


async def test_letter_keys_share_the_recipients_slot(
    director: Client, quds: Client, redis: aioredis.Redis
) -> None:
    """A letter (its receipts inside it), its ciphertext key and the recipient's inbox share one
    slot; its deadline is in the recipient's due bucket; the letter hash stays compact."""
    sealed, _ = await director.send_letter(QUDS, "one slot")
    letter_id = sealed.envelope.id.encode()
    keys = [k async for k in redis.scan_iter(count=1000)]
    of_letter = sorted(k for k in keys if letter_id in k and b"{" + QUDS.encode() + b"}" in k)
    assert [k.split(b":")[2] for k in of_letter] == [b"ct", b"letter"]
    inbox = f"bc:{{{QUDS}}}:inbox".encode()
    assert inbox in keys
    slots = {key_slot(k) for k in [*of_letter, inbox]}
    assert slots == {key_slot(QUDS.encode())}
    assert letter_id in await redis.zrange(inbox, 0, -1)
    assert f"{QUDS} {sealed.envelope.id}".encode() in await redis.zrange(due_bucket(QUDS), 0, -1)
    letter = next(k for k in of_letter if b":letter:" in k)
    assert await redis.object("encoding", letter) in (b"ziplist", b"listpack")
    assert await redis.get(next(k for k in of_letter if b":ct:" in k)) == sealed.ciphertext


async def test_every_key_follows_the_documented_layout(
    director: Client, quds: Client, redis: aioredis.Redis
) -> None:
    """After a full lifecycle, every key is bc:parties, bc:courier or bc:{party}:<suffix>."""
    sealed, _ = await director.send_letter(QUDS, "layout")
    await quds.return_letter(sealed.envelope.id, reason="no")
    documented = re.compile(
        rb"^bc:\{[a-z][a-z0-9.-]{2,63}\}:"
        rb"(party|invite|nonce:.+|inbox|due|outbox|sent|events|fanout|fanned:[0-9a-z]{26}|bucket"
        rb"|letter:[0-9a-z]{26}|ct:[0-9a-z]{26})$"
    )
    keys = [k async for k in redis.scan_iter(count=1000)]
    untagged = {b"bc:parties", b"bc:courier"}
    buckets = {f"bc:{{due:{k}}}".encode() for k in range(DUE_BUCKETS)}
    assert untagged <= set(keys)
    assert {k for k in keys if k not in untagged | buckets and not documented.match(k)} == set()
    assert await redis.smembers("bc:parties") == {DIRECTOR.encode(), QUDS.encode()}


async def test_ended_letters_expire_after_retention(
    director: Client, quds: Client, redis: aioredis.Redis
) -> None:
    """An ended letter leaves the deadline index and gets the retention TTL; a live one does not."""
    live, _ = await director.send_letter(QUDS, "live")
    ended, _ = await director.send_letter(QUDS, "ended")
    await quds.return_letter(ended.envelope.id)
    due = await redis.zrange(due_bucket(QUDS), 0, -1)
    assert due == [f"{QUDS} {live.envelope.id}".encode()]
    thirty_days = 30 * 24 * 3600 * 1000
    for letter, expect_ttl in ((live, False), (ended, True)):
        keys = [k async for k in redis.scan_iter(match=f"*{letter.envelope.id}")]
        assert len(keys) == 2  # the letter hash and its ciphertext
        for key in keys:
            ttl = await redis.pttl(key)
            if expect_ttl:
                assert 0 < ttl <= thirty_days
            else:
                assert ttl == -1


# --- every script call stays in one slot -----------------------------------------------------


@pytest.fixture
async def monitored(redis_server: EmbeddedRedis) -> AsyncIterator[list[str]]:
    """Every command Redis receives while the test runs (via MONITOR on its own connection)."""
    seen: list[str] = []
    watcher = aioredis.Redis.from_url(redis_server.url, decode_responses=True)
    ready = asyncio.Event()

    async def watch() -> None:
        async with watcher.monitor() as monitor:
            ready.set()
            while True:
                info = await monitor.next_command()
                if info["client_type"] != "lua":
                    seen.append(info["command"])

    task = asyncio.create_task(watch())
    await asyncio.wait_for(ready.wait(), 5)
    yield seen
    await asyncio.sleep(0.1)  # let the last commands arrive
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError, Exception):
        await task
    await watcher.aclose()


async def _drain(redis: aioredis.Redis, seen: list[str]) -> None:
    """Wait until MONITOR has reported every command sent so far (it reports them in order)."""
    await redis.echo("monitor-sentinel")
    for _ in range(500):
        if any("monitor-sentinel" in command for command in seen):
            return
        await asyncio.sleep(0.01)
    raise AssertionError("MONITOR never reported the sentinel")


def _script_calls(commands: list[str]) -> list[tuple[str, list[str]]]:
    """(script name, KEYS) for every EVALSHA/EVAL seen."""
    by_sha = {hashlib.sha1(text.encode()).hexdigest(): name for name, text in LUA.items()}
    calls = []
    for command in commands:
        parts = command.split(" ")
        verb = parts[0].upper()
        if verb not in ("EVALSHA", "EVAL"):
            continue
        if verb == "EVALSHA":
            name = by_sha[parts[1]]
        else:  # EVAL carries the script text (newlines escaped by MONITOR), spaces and all
            shown = {n: text.replace("\n", "\\n") for n, text in LUA.items()}
            name = next(n for n, text in shown.items() if command.startswith(f"EVAL {text}"))
            parts = ["EVAL", "script", *command[len(f"EVAL {shown[name]} ") :].split(" ")]
        count = int(parts[2])
        calls.append((name, parts[3 : 3 + count]))
    return calls


async def test_every_script_call_touches_one_slot(
    monitored: list[str],
    director: Client,
    quds: Client,
    party: PartyFactory,
    redis: aioredis.Redis,
) -> None:
    """Over a full workout on a single Redis, a send and a transition each touch only the two
    parties' slots and one due bucket; every other script call touches one slot. (On Redis
    Cluster every call touches one slot: tests/test_cluster.py.)"""
    svr = await party("ru.svr.director")
    opened, _ = await director.send_letter(QUDS, "open me")
    returned, _ = await director.send_letter(QUDS, "return me")
    withdrawn, _ = await director.send_letter(QUDS, "withdraw me")
    await quds.inbox()
    await quds.inbox(before=opened.envelope.id)  # a later page: page.lua
    await director.outbox()
    await quds.open_letter(opened.envelope.id)
    await quds.return_letter(returned.envelope.id, reason="no")
    await director.withdraw(withdrawn.envelope.id)
    await director.returned(returned.envelope.id)
    # Another sender reusing a taken id in that inbox is refused and releases its outbox entry.
    clash = await svr.seal(QUDS, "clash", letter_id=opened.envelope.id)
    with pytest.raises(Exception, match="different letter"):
        await svr.send(clash)
    await _drain(redis, monitored)
    calls = _script_calls(monitored)
    expected = {"register", "rate_limit", "send", "snapshot", "transition", "page"}
    assert {name for name, _ in calls} == expected, calls
    parties = {DIRECTOR.encode(), QUDS.encode(), b"ru.svr.director"}
    for name, keys in calls:
        assert keys, name
        tags = {_tag(k.encode()) for k in keys}
        if name in ("send", "transition"):
            assert len(tags & parties) == 2, (name, keys)
            assert tags - parties == {due_bucket(QUDS).encode()[4:-1]}, (name, keys)
        else:
            assert len({key_slot(k.encode()) for k in keys}) == 1, (name, keys)
            assert len(tags) == 1, (name, keys)


def test_scripts_only_touch_keys_they_are_given() -> None:
    """No script builds a key name: every redis.call's key argument is KEYS[n]."""
    call = re.compile(r"redis\.call\('(\w+)',\s*([^,)]+)")
    for name, text in LUA.items():
        found = call.findall(text)
        assert found, name
        for command, key in found:
            assert re.fullmatch(r"KEYS\[\d+\]", key.strip()), (name, command, key)


@pytest.mark.parametrize("name", sorted(LUA))
def test_scripts_document_their_keys_args_and_return(name: str) -> None:
    """Each script opens with a comment naming every KEYS[n] and ARGV[n] it uses, and its return."""
    text = LUA[name]
    header = "\n".join(line for line in text.splitlines() if line.startswith("--"))
    assert "Returns" in header
    body = "\n".join(line for line in text.splitlines() if not line.startswith("--"))
    for used in set(re.findall(r"KEYS\[(\d+)\]", body)):
        assert f"KEYS[{used}]" in header, (name, used)
    for used in set(re.findall(r"ARGV\[(\d+)\]", body)):
        assert re.search(rf"ARGV\[{used}(\]|\.\.)", header) or f"ARGV[{used}]" in header, (
            name,
            used,
        )


# --- the scripts' contracts, through the Store ------------------------------------------------


@pytest.fixture
async def store(redis: aioredis.Redis, redis_server: EmbeddedRedis) -> AsyncIterator[Store]:
    opened = Store.from_url(redis_server.url)
    yield opened
    await opened.close()


# Two envelopes for one letter id (they differ in their ciphertext size).
D1, D2 = 2, 3
STALE = "0f" * 32
COURIER_KEY = Ed25519PrivateKey.generate()
AT = datetime(2026, 1, 1, tzinfo=UTC)


def _envelope(letter_id: str, sender: str, recipient: str, size: int) -> Envelope:
    return Envelope(
        id=letter_id,
        sender=sender,
        recipient=recipient,
        sent_at="2026-01-01T00:00:00.001Z",
        expires_at="2026-01-01T00:00:02.000Z",
        recipient_key="ab" * 32,
        ciphertext_sha256="cd" * 32,
        ciphertext_size=size,
    )


def _receipt(letter_id: str, variant: int, seq: int = 0, **fields: Any) -> Receipt:
    event = fields.pop("event", State.ACCEPTED)
    digest = _envelope(letter_id, DIRECTOR, QUDS, variant).digest()
    return sign_receipt(
        COURIER_KEY,
        letter_id=letter_id,
        seq=seq,
        event=event,
        at=AT,
        envelope_sha256=digest,
        **fields,
    )


def _send_args(
    letter_id: str,
    variant: int,
    ciphertext: bytes = b"ct",
    *,
    nonce: str = "a",
    sender: str = DIRECTOR,
    recipient: str = QUDS,
    rate: RateLimit | None = None,
) -> dict[str, object]:
    return {
        "letter_id": letter_id,
        "sender": sender,
        "recipient": recipient,
        "envelope": _envelope(letter_id, sender, recipient, variant),
        "seal": b"s" * 64,
        "ciphertext": ciphertext,
        "sent_ms": 1000,
        "expires_ms": 2000,
        "receipt": _receipt(letter_id, variant),
        "recipient_event": b'{"event":"r"}',
        "sender_event": b'{"event":"s"}',
        "nonce": nonce * 32,
        "nonce_ttl_ms": 120_000,
        "rate": rate,
        "now_ms": 1000,
    }


async def test_send_is_idempotent_on_id_and_digest(store: Store, redis: aioredis.Redis) -> None:
    """Same id and digest: `exists`, first receipt; another digest: `conflict`; each changes
    nothing but its own nonce."""
    letter_id = "0" * 26
    first = await store.send(**_send_args(letter_id, D1))  # type: ignore[arg-type]
    assert (first.outcome, first.receipt) == ("created", _receipt(letter_id, D1))
    before = await store_snapshot(redis)
    again = await store.send(**_send_args(letter_id, D1, b"other", nonce="b"))  # type: ignore[arg-type]
    assert (again.outcome, again.receipt) == ("exists", _receipt(letter_id, D1))
    clash = await store.send(**_send_args(letter_id, D2, nonce="c"))  # type: ignore[arg-type]
    assert clash.outcome == "conflict"
    after = await store_snapshot(redis)
    nonces = {k for k in after if b":nonce:" in k}
    assert {k: v for k, v in after.items() if k not in nonces} == {
        k: v for k, v in before.items() if k not in nonces
    }
    assert len(nonces) == 3
    record = await store.letter(QUDS, letter_id, with_ciphertext=True)
    assert record is not None
    digest = _envelope(letter_id, DIRECTOR, QUDS, D1).digest()
    assert (record.state, record.digest, record.ciphertext) == (State.ACCEPTED, digest, b"ct")
    assert record.env == _envelope(letter_id, DIRECTOR, QUDS, 2)  # unpacked as it was sealed
    assert record.env.signable() == _envelope(letter_id, DIRECTOR, QUDS, 2).signable()
    assert record.chain == [_receipt(letter_id, D1)]


async def test_send_writes_everything_in_one_call(store: Store, redis: aioredis.Redis) -> None:
    """One `send` files the outbox and inbox entries, the letter, its ciphertext, its deadline
    and both parties' events; the replayed nonce is refused and changes nothing."""
    letter_id = "6" * 26
    sent = await store.send(**_send_args(letter_id, D1))  # type: ignore[arg-type]
    assert sent.outcome == "created"
    assert await store.outbox_ids(DIRECTOR, 10) == [(letter_id, QUDS)]
    assert await store.inbox_ids(QUDS, 10) == [letter_id]
    assert await store.due_letters(2000, 10) == [(QUDS, letter_id)]
    assert [e for _, e in await store.events_after(QUDS, "0-0")] == [b'{"event":"r"}']
    assert [e for _, e in await store.events_after(DIRECTOR, "0-0")] == [b'{"event":"s"}']
    before = await store_snapshot(redis)
    replayed = await store.send(**_send_args(letter_id, D1))  # type: ignore[arg-type]
    assert replayed.outcome == "replayed"
    assert await store_snapshot(redis) == before


async def test_send_refuses_an_id_its_sender_used_elsewhere(store: Store) -> None:
    """An id a sender used for one recipient is `other` for another, and for a letter to it."""
    letter_id = "4" * 26
    assert (await store.send(**_send_args(letter_id, D1))).outcome == "created"  # type: ignore[arg-type]
    elsewhere = _send_args(letter_id, D1, nonce="b", recipient="ru.svr.director")
    assert (await store.send(**elsewhere)).outcome == "other"  # type: ignore[arg-type]
    back = _send_args(letter_id, D2, nonce="c", sender=QUDS, recipient=DIRECTOR)
    assert (await store.send(**back)).outcome == "other"  # type: ignore[arg-type]
    assert await store.recipient_of(DIRECTOR, letter_id) == QUDS
    assert await store.outbox_ids(QUDS, 10) == []


async def test_send_takes_the_rate_limit_token(store: Store, redis: aioredis.Redis) -> None:
    """With a limit, each send takes a token; an empty bucket is `limited` with a wait and
    changes nothing, not even the nonce."""
    rate = RateLimit(capacity=2, per_second=1.0)
    for n, letter_id in enumerate(("7" * 26, "8" * 26)):
        sent = await store.send(**_send_args(letter_id, D1, nonce=str(n), rate=rate))  # type: ignore[arg-type]
        assert sent.outcome == "created"
    before = await store_snapshot(redis)
    limited = await store.send(**_send_args("9" * 26, D1, nonce="x", rate=rate))  # type: ignore[arg-type]
    assert limited.outcome == "limited"
    assert 0 < limited.retry_after_ms <= 1000
    assert await store_snapshot(redis) == before


async def test_transition_is_compare_and_set_on_the_head(
    store: Store, redis: aioredis.Redis
) -> None:
    """A transition from a stale head changes nothing; from the right head it appends and moves."""
    letter_id = "1" * 26
    await store.send(**_send_args(letter_id, D1))  # type: ignore[arg-type]
    head = _receipt(letter_id, D1).chain_hash()
    delivered = _receipt(letter_id, D1, 1, event=State.DELIVERED, prev=head)
    options = {
        "sender": DIRECTOR,
        "new_state": State.DELIVERED,
        "receipts": [delivered],
        "events": [b'{"event":1}'],
        "terminal": False,
        "release": False,
        "retention_ms": 0,
    }
    before = await store_snapshot(redis)
    stale = await store.transition(QUDS, letter_id, expected_head=STALE, **options)  # type: ignore[arg-type]
    assert stale.outcome == "stale"
    assert await store_snapshot(redis) == before
    missing = await store.transition(QUDS, "2" * 26, expected_head=head, **options)  # type: ignore[arg-type]
    assert missing.outcome == "missing"
    assert await store_snapshot(redis) == before
    moved = await store.transition(QUDS, letter_id, expected_head=head, **options)  # type: ignore[arg-type]
    assert moved.outcome == "ok"
    assert moved.ciphertext is None
    record = await store.letter(QUDS, letter_id)
    assert record is not None
    assert (record.state, record.head, record.chain) == (
        State.DELIVERED,
        delivered.chain_hash(),
        [_receipt(letter_id, D1), delivered],
    )


async def test_release_hands_out_the_ciphertext_once(store: Store) -> None:
    """A releasing transition returns the ciphertext and drops it from the store."""
    letter_id = "3" * 26
    await store.send(**_send_args(letter_id, D1, b"sealed bytes"))  # type: ignore[arg-type]
    head = _receipt(letter_id, D1).chain_hash()
    delivered = _receipt(letter_id, D1, 1, event=State.DELIVERED, prev=head)
    opened = _receipt(
        letter_id,
        D1,
        2,
        event=State.OPENED,
        prev=delivered.chain_hash(),
        reason="read it",
        recipient_signature=b"r" * 64,
    )
    released = await store.transition(
        QUDS,
        letter_id,
        sender=DIRECTOR,
        expected_head=head,
        new_state=State.OPENED,
        receipts=[delivered, opened],
        events=[b"{}", b"{}"],
        terminal=True,
        release=True,
        retention_ms=60_000,
    )
    assert (released.outcome, released.ciphertext) == ("ok", b"sealed bytes")
    record = await store.letter(QUDS, letter_id, with_ciphertext=True)
    assert record is not None
    assert record.ciphertext is None
    assert record.state is State.OPENED
    assert record.chain[1:] == [delivered, opened]  # reason and recipient signature kept
    assert await store.due_letters(10_000, 10) == []


async def test_register_script_outcomes(store: Store, redis: aioredis.Redis) -> None:
    """created, exists (same keys), taken (other keys), closed (no/wrong invitation), spent."""
    a, b = PartyKeys.generate("gb.fco.desk").public(), PartyKeys.generate("gb.fco.desk").public()
    at = "2026-01-01T00:00:00.000Z"
    assert (
        await store.register_party("gb.fco.desk", a.signing_key, a.encryption_key, at, "open")
        == "created"
    )
    assert (
        await store.register_party("gb.fco.desk", a.signing_key, a.encryption_key, at, "invite")
        == "exists"
    )
    assert (
        await store.register_party("gb.fco.desk", b.signing_key, b.encryption_key, at, "open")
        == "taken"
    )
    assert (
        await store.register_party("fr.quai.desk", a.signing_key, a.encryption_key, at, "invite")
        == "closed"
    )
    await store.add_invite("fr.quai.desk", "hash-of-token", 60)
    args = ("fr.quai.desk", a.signing_key, a.encryption_key, at, "invite")
    assert await store.register_party(*args, "wrong-hash") == "closed"  # type: ignore[arg-type]
    assert await store.register_party(*args, "hash-of-token") == "created"  # type: ignore[arg-type]
    assert [k async for k in redis.scan_iter(match="*invite*")] == []
    assert await store.party_names() == ["fr.quai.desk", "gb.fco.desk"]


async def test_nonce_is_claimed_once_and_expires(store: Store, redis: aioredis.Redis) -> None:
    """A nonce is claimed once per party, and remembered with a TTL."""
    assert await store.claim_nonce(QUDS, "n" * 32, 120_000)
    assert not await store.claim_nonce(QUDS, "n" * 32, 120_000)
    assert await store.claim_nonce(DIRECTOR, "n" * 32, 120_000)  # per party
    (key,) = [k async for k in redis.scan_iter(match=f"*{{{QUDS}}}*nonce*")]
    assert 0 < await redis.pttl(key) <= 120_000


async def test_decision_flow_leaves_no_ciphertext_after_open(
    director: Client, quds: Client, redis: aioredis.Redis
) -> None:
    """After an open, no key anywhere still holds the letter's ciphertext."""
    sealed, _ = await director.send_letter(QUDS, "burn after reading")
    env = sealed.envelope
    assert any(sealed.ciphertext in blob for blob in await store_blobs(redis))  # the scan sees it
    await quds.open(env.id, sign_decision(identity(quds), decision_for(State.OPENED, env)))
    assert not any(sealed.ciphertext in blob for blob in await store_blobs(redis))


async def test_one_unreadable_record_does_not_stop_expiry(
    start_courier: CourierFactory,
    connect: Connect,
    local_courier: Courier,
    redis: aioredis.Redis,
) -> None:
    """A sweep skips a record it cannot read and still expires every other overdue letter."""
    url = await start_courier(sweep_interval=3600)
    director = connect(url, PartyKeys.generate(DIRECTOR))
    quds = connect(url, PartyKeys.generate(QUDS))
    await director.register()
    await quds.register()
    sealed = await quds.seal(DIRECTOR, "expire me", expires_in=timedelta(seconds=1))
    await quds.send(sealed)
    # A record this version cannot read, in the same due bucket as the director's letter.
    await redis.zadd(due_bucket(DIRECTOR), {f"aa.unreadable {'0' * 26}": 0})
    await redis.hset(
        f"bc:{{aa.unreadable}}:letter:{'0' * 26}",
        mapping={
            "state": "misplaced",
            "h": "0",
            "e": "{}",
            "s": "",
            "d": "0",
        },
    )
    await asyncio.sleep(1.1)
    assert await local_courier.sweep() == 1
    (key,) = [k async for k in redis.scan_iter(match=f"*:letter:{sealed.envelope.id}")]
    assert await redis.hget(key, "state") == b"expired"  # by the sweep, not by a reader


# --- one pipeline per event-loop turn, and a sweep that reads only what is due ----------------


async def test_calls_in_one_loop_turn_share_one_connection_and_keep_their_own_replies(
    store: Store, redis: aioredis.Redis
) -> None:
    """Fifty calls issued together go as one pipeline on one connection; each caller gets its
    own reply, and a command that fails fails only its own caller."""
    await redis.set("bc:not-a-set", "x")
    pool = store._redis.connection_pool  # type: ignore[union-attr]
    names = [f"aa.party-{n:02d}" for n in range(50)]
    replies = await asyncio.gather(
        *(store.get_party(name) for name in names),
        store._cmd("SMEMBERS", "bc:not-a-set"),
        return_exceptions=True,
    )
    assert replies[:50] == [None] * 50
    assert isinstance(replies[50], StoreUnavailable)  # WRONGTYPE: that call's own error
    assert len(pool._available_connections) + len(pool._in_use_connections) == 1
    assert await store.get_party("aa.party-00") is None  # the store still works after


async def test_a_sweep_reads_the_due_buckets_not_every_party(
    monitored: list[str],
    director: Client,
    quds: Client,
    party: PartyFactory,
    redis: aioredis.Redis,
    local_courier: Courier,
) -> None:
    """With many parties and nothing due, a sweep pass is one range read per due bucket (one
    pipeline) and touches no party's keys: its cost does not grow with the parties."""
    for n in range(10):
        await party(f"aa.bystander-{n}")
    await director.send_letter(QUDS, "due tomorrow")
    await local_courier.sweep()  # its store's connection is set up (PING, HELLO) by now
    await _drain(redis, monitored)
    monitored.clear()
    assert await local_courier.sweep() == 0
    await _drain(redis, monitored)
    swept = [c for c in monitored if "monitor-sentinel" not in c]
    assert len(swept) == DUE_BUCKETS
    assert all(c.startswith("ZRANGEBYSCORE bc:{due:") for c in swept), swept
