"""The Store on a real Redis: key layout, cluster slots, and each Lua script's contract."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from importlib import resources

import pytest
import redis.asyncio as aioredis
from redis.crc import key_slot

from channel.courier.embedded import EmbeddedRedis
from channel.courier.service import Courier
from channel.courier.store import Store
from channel.party.client import Client
from channel.protocol.lifecycle import State
from channel.protocol.seal import PartyKeys, decision_for, sign_decision
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
TAG = re.compile(rb"^bc:\{([a-z][a-z0-9.-]{2,63})\}:")


def _tag(key: bytes) -> bytes:
    match = TAG.match(key)
    assert match, key
    return match.group(1)


# --- the layout after real traffic -----------------------------------------------------------


async def test_letter_keys_share_the_recipients_slot(
    director: Client, quds: Client, redis: aioredis.Redis
) -> None:
    """A letter (its receipts inside it) and the recipient's inbox and deadlines share one slot."""
    sealed, _ = await director.send_letter(QUDS, "one slot")
    letter_id = sealed.envelope.id.encode()
    keys = [k async for k in redis.scan_iter(count=1000)]
    of_letter = [k for k in keys if letter_id in k and b"{" + QUDS.encode() + b"}" in k]
    assert len(of_letter) == 1  # the letter hash holds its receipts (fields r:0, r:1, ...)
    inbox = f"bc:{{{QUDS}}}:inbox".encode()
    due = f"bc:{{{QUDS}}}:due".encode()
    assert inbox in keys
    assert due in keys
    slots = {key_slot(k) for k in [*of_letter, inbox, due]}
    assert slots == {key_slot(QUDS.encode())}
    assert letter_id in await redis.zrange(inbox, 0, -1)
    assert letter_id in await redis.zrange(due, 0, -1)


async def test_every_key_follows_the_documented_layout(
    director: Client, quds: Client, redis: aioredis.Redis
) -> None:
    """After a full lifecycle, every key is bc:parties, bc:courier or bc:{party}:<suffix>."""
    sealed, _ = await director.send_letter(QUDS, "layout")
    await quds.return_letter(sealed.envelope.id, reason="no")
    documented = re.compile(
        rb"^bc:\{[a-z][a-z0-9.-]{2,63}\}:"
        rb"(party|invite|nonce:.+|inbox|due|outbox|sent|events|fanout|fanned|bucket"
        rb"|letter:[0-9a-z]{26})$"
    )
    keys = [k async for k in redis.scan_iter(count=1000)]
    untagged = {b"bc:parties", b"bc:courier"}
    assert untagged <= set(keys)
    assert {k for k in keys if k not in untagged and not documented.match(k)} == set()
    assert await redis.smembers("bc:parties") == {DIRECTOR.encode(), QUDS.encode()}


async def test_ended_letters_expire_after_retention(
    director: Client, quds: Client, redis: aioredis.Redis
) -> None:
    """An ended letter leaves the deadline index and gets the retention TTL; a live one does not."""
    live, _ = await director.send_letter(QUDS, "live")
    ended, _ = await director.send_letter(QUDS, "ended")
    await quds.return_letter(ended.envelope.id)
    due = await redis.zrange(f"bc:{{{QUDS}}}:due", 0, -1)
    assert due == [live.envelope.id.encode()]
    thirty_days = 30 * 24 * 3600 * 1000
    for letter, expect_ttl in ((live, False), (ended, True)):
        keys = [k async for k in redis.scan_iter(match=f"*{letter.envelope.id}")]
        assert len(keys) == 1
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
        else:  # EVAL carries the script text, which contains spaces: find it by its KEYS count
            name = next(n for n, text in LUA.items() if command.startswith(f"EVAL {text}"))
            parts = ["EVAL", "script", *command[len(f"EVAL {LUA[name]} ") :].split(" ")]
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
    """Over a full workout, every Lua script is called with KEYS that all hash to one slot."""
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
    assert {name for name, _ in calls} == set(LUA), calls
    for name, keys in calls:
        assert keys, name
        assert len({key_slot(k.encode()) for k in keys}) == 1, (name, keys)
        assert len({_tag(k.encode()) for k in keys}) == 1, (name, keys)


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


# Digests and chain hashes as the courier passes them: 64 hex digits.
D1, D2 = "d1" * 32, "d2" * 32
H0, H1, STALE = "00" * 32, "11" * 32, "0f" * 32


def _letter_args(letter_id: str, digest: str, ciphertext: bytes = b"ct") -> dict[str, object]:
    return {
        "letter_id": letter_id,
        "sender": DIRECTOR,
        "recipient": QUDS,
        "digest": digest,
        "envelope": b"{}",
        "seal": b"s" * 64,
        "ciphertext": ciphertext,
        "sent_ms": 1000,
        "expires_ms": 2000,
        "receipt": b'{"seq":0}',
        "receipt_hash": H0,
        "event": b'{"event":0}',
    }


async def test_create_letter_is_idempotent_on_id_and_digest(
    store: Store, redis: aioredis.Redis
) -> None:
    """Same id and digest: `exists`, first receipt; another digest: `conflict`, no change."""
    letter_id = "0" * 26
    first = await store.create_letter(**_letter_args(letter_id, D1))  # type: ignore[arg-type]
    assert (first.outcome, first.receipt) == ("created", b'{"seq":0}')
    before = await store_snapshot(redis)
    again = await store.create_letter(**_letter_args(letter_id, D1, b"other"))  # type: ignore[arg-type]
    assert (again.outcome, again.receipt) == ("exists", b'{"seq":0}')
    clash = await store.create_letter(**_letter_args(letter_id, D2))  # type: ignore[arg-type]
    assert clash.outcome == "conflict"
    assert await store_snapshot(redis) == before
    record = await store.letter(QUDS, letter_id, with_ciphertext=True)
    assert record is not None
    assert (record.state, record.digest, record.ciphertext) == (State.ACCEPTED, D1, b"ct")


async def test_transition_is_compare_and_set_on_the_head(
    store: Store, redis: aioredis.Redis
) -> None:
    """A transition from a stale head changes nothing; from the right head it appends and moves."""
    letter_id = "1" * 26
    await store.create_letter(**_letter_args(letter_id, D1))  # type: ignore[arg-type]
    options = {
        "new_state": State.DELIVERED,
        "new_head": H1,
        "receipts": [b'{"seq":1}'],
        "events": [b'{"event":1}'],
        "terminal": False,
        "release": False,
        "retention_ms": 0,
    }
    before = await store_snapshot(redis)
    stale = await store.transition(QUDS, letter_id, expected_head=STALE, **options)  # type: ignore[arg-type]
    assert stale.outcome == "stale"
    assert await store_snapshot(redis) == before
    missing = await store.transition(QUDS, "2" * 26, expected_head=H0, **options)  # type: ignore[arg-type]
    assert missing.outcome == "missing"
    assert await store_snapshot(redis) == before
    moved = await store.transition(QUDS, letter_id, expected_head=H0, **options)  # type: ignore[arg-type]
    assert moved.outcome == "ok"
    assert moved.ciphertext is None
    record = await store.letter(QUDS, letter_id)
    assert record is not None
    assert (record.state, record.head, record.receipts) == (
        State.DELIVERED,
        H1,
        [b'{"seq":0}', b'{"seq":1}'],
    )


async def test_release_hands_out_the_ciphertext_once(store: Store) -> None:
    """A releasing transition returns the ciphertext and drops it from the store."""
    letter_id = "3" * 26
    await store.create_letter(**_letter_args(letter_id, D1, b"sealed bytes"))  # type: ignore[arg-type]
    released = await store.transition(
        QUDS,
        letter_id,
        expected_head=H0,
        new_state=State.OPENED,
        new_head=H1,
        receipts=[b"{}", b"{}"],
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
    assert await store.due_ids(QUDS, 10_000, 10) == []


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


async def test_outbox_reservation(store: Store) -> None:
    """An id is reserved for one recipient (`same` again, `other` elsewhere); release undoes it."""
    letter_id = "4" * 26

    async def reserve(recipient: str, nonce: str) -> str:
        return await store.reserve_outbox(
            DIRECTOR, letter_id, recipient, 1000, nonce=nonce * 32, nonce_ttl_ms=120_000
        )

    assert await reserve(QUDS, "a") == "new"
    assert await reserve(QUDS, "b") == "same"
    assert await reserve("ru.svr.director", "c") == "other"
    assert await reserve(QUDS, "a") == "replayed"
    assert await store.recipient_of(DIRECTOR, letter_id) == QUDS
    assert await store.outbox_ids(DIRECTOR, 10) == [(letter_id, QUDS)]
    await store.release_outbox(DIRECTOR, letter_id)
    assert await store.recipient_of(DIRECTOR, letter_id) is None
    assert await store.outbox_ids(DIRECTOR, 10) == []


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
    # A record this version cannot read, in a party swept before the director.
    await redis.sadd("bc:parties", "aa.unreadable")
    await redis.zadd("bc:{aa.unreadable}:due", {"0" * 26: 0})
    await redis.hset(
        f"bc:{{aa.unreadable}}:letter:{'0' * 26}",
        mapping={
            "state": "misplaced",
            "head": "0",
            "sender": QUDS,
            "exp": 0,
            "env": "{}",
            "seal": "",
            "digest": "0",
        },
    )
    await asyncio.sleep(1.1)
    assert await local_courier.sweep() == 1
    (key,) = [k async for k in redis.scan_iter(match=f"*:letter:{sealed.envelope.id}")]
    assert await redis.hget(key, "state") == b"expired"  # by the sweep, not by a reader
