"""The Store: the only module that speaks to Redis. It owns every key name and every Lua script.

Key layout (docs/store.md explains it, per operation). A party's keys carry its name as hash
tag, so on Redis Cluster each lives in one slot. On a single Redis each transition of a letter
is one script (one round trip, one fsync): a send claims the nonce, takes the rate-limit token,
files the outbox and inbox entries, stores the letter, indexes its deadline and appends both
parties' live events at once. On Redis Cluster, where the two parties' slots differ, a send or
transition is two scripts, one per slot, and the sweeper finishes what a crash between them left.

    bc:{P}:party            hash    P's public keys and registration time
    bc:{P}:invite           string  sha256 of P's one-time invitation token (expires)
    bc:{P}:nonce:N          string  a request nonce P used (expires after the auth window)
    bc:{P}:bucket           hash    P's rate-limit token bucket (expires once full again)
    bc:{P}:inbox            zset    letter ids addressed to P, scored by sent time (ms)
    bc:{P}:letter:ID        hash    envelope, seal, state, chain head and the signed receipts
                                    (fields r:0, r:1, ...) of letter ID to P: small, so compact
    bc:{P}:ct:ID            string  letter ID's ciphertext, until it is released
    bc:{P}:outbox           zset    letter ids P sent, scored by sent time (ms)
    bc:{P}:sent             hash    letter id -> recipient, for P's letters
    bc:{P}:events           stream  P's live events (thin: ids, state, seq), capped
    bc:{due:K}              zset    single Redis: "recipient id" of unfinished letters, by
                                    deadline (ms), in DUE_BUCKETS buckets
    bc:{P}:due              zset    Redis Cluster: P's unfinished letters, by deadline (ms)
    bc:{P}:fanout           zset    Redis Cluster: letters to P whose events its sender's stream
                                    may still lack
    bc:{P}:fanned:ID        string  Redis Cluster: how many of letter ID's events P (its sender)
                                    has had; expires with the letter once it is settled
    bc:parties              set     every registered name
    bc:courier              string  the courier's public key: every replica must sign with it
"""

from __future__ import annotations

import asyncio
import contextlib
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.client import PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import ConnectionError as LostConnection
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError
from redis.exceptions import TimeoutError as TimedOut

from channel.courier.compact import (
    pack_envelope,
    pack_receipt,
    unpack_chain,
    unpack_envelope,
    unpack_receipt,
)
from channel.protocol.canonical import ZERO_HASH as ZERO
from channel.protocol.canonical import to_millis
from channel.protocol.errors import StoreUnavailable
from channel.protocol.lifecycle import State
from channel.protocol.models import Envelope, Receipt

PREFIX = "bc"
# Each party's event stream keeps about this many events; a client further behind must resync.
EVENTS_MAXLEN = 10_000
PARTIES_KEY = f"{PREFIX}:parties"
COURIER_KEY = f"{PREFIX}:courier"
# On a single Redis the deadlines of unfinished letters are indexed in this many buckets, so the
# sweeper's cost per pass is this many reads plus the letters due, whatever the number of parties.
DUE_BUCKETS = 16
# `redis+cluster://[user:password@]host:port[,host:port...]`: a Redis Cluster (docs/cluster.md).
CLUSTER_SCHEME = "redis+cluster://"
# How long a call waits for a pooled connection (single Redis; the cluster client cannot wait).
POOL_WAIT = 5.0
# What a store failure looks like. The cluster client's own errors (no reachable node, a slot no
# master serves) are not RedisErrors. Nor is a connection closed under a write: redis-py 8.1 lets
# that escape as AttributeError or TypeError (redis/redis-py#3546, #4287); the cluster client
# hits it when a master dies mid-request. Only Redis calls sit inside the `try` blocks.
_FAILURES = (RedisError, OSError, RedisClusterException, AttributeError, TypeError)
_SCRIPTS = (
    "send",
    "create_letter",
    "transition",
    "reserve_outbox",
    "release_outbox",
    "register",
    "snapshot",
    "rate_limit",
    "fan_out",
    "settle_fanout",
    "page",
)

Admission = Literal["open", "invite", "pinned"]
Registration = Literal["created", "exists", "taken", "closed"]
SendOutcome = Literal["created", "exists", "conflict", "other", "replayed", "limited"]


def _party(name: str, suffix: str) -> str:
    return f"{PREFIX}:{{{name}}}:{suffix}"


def due_bucket(recipient: str) -> str:
    """The due bucket (single Redis) holding the deadlines of `recipient`'s letters."""
    return f"{PREFIX}:{{due:{zlib.crc32(recipient.encode()) % DUE_BUCKETS}}}"


@dataclass(frozen=True)
class StoredParty:
    signing_key: bytes
    encryption_key: bytes
    registered_at: str


@dataclass(frozen=True)
class RateLimit:
    """A party's token bucket: `capacity` requests at once, refilled at `per_second`."""

    capacity: int
    per_second: float


@dataclass(frozen=True)
class LetterRecord:
    """A letter as the store holds it: no plaintext, ever. Decoded once, here at the store
    boundary, into the typed envelope and receipts (channel/compact.py says how they are kept)."""

    id: str
    recipient: str
    sender: str
    state: State
    head: str
    expires_ms: int
    env: Envelope  # its canonical JSON is exactly the bytes sealed
    seal: bytes
    digest: str
    ciphertext: bytes | None  # only when asked for, and only until it is released
    chain: list[Receipt]  # the signed receipts, in order


@dataclass(frozen=True)
class SendResult:
    outcome: SendOutcome
    receipt: Receipt | None = None  # the stored `accepted` receipt: created or exists
    retry_after_ms: int = 0  # limited


@dataclass(frozen=True)
class TransitionResult:
    outcome: Literal["ok", "stale", "missing"]
    ciphertext: bytes | None = None


class Store:
    """Async access to Backchannel's Redis. One per process; `close()` it when done."""

    # Told of every Redis failure before it is raised as StoreUnavailable (metrics count them).
    on_failure: Callable[[Exception], None] | None = None

    def __init__(self, client: aioredis.Redis | RedisCluster) -> None:
        self._redis = client
        self.clustered = isinstance(client, RedisCluster)
        self._sha = {name: client.register_script(_lua(name)).sha for name in _SCRIPTS}
        # On a single Redis every command goes through one pipeline per event-loop turn.
        self._batch = _Batcher(client) if isinstance(client, aioredis.Redis) else None

    @classmethod
    def from_url(cls, url: str, *, max_connections: int = 100) -> Store:
        """A store on `url`, with at most `max_connections` (per node): a caller beyond them
        waits for one to come free (up to `POOL_WAIT` s) rather than failing at once."""
        if url.startswith(CLUSTER_SCHEME):
            return cls(_cluster_client(url, max_connections))
        pool = aioredis.BlockingConnectionPool.from_url(
            url,
            decode_responses=False,
            health_check_interval=30,
            max_connections=max_connections,
            timeout=POOL_WAIT,
        )
        return cls(aioredis.Redis.from_pool(pool))  # the client owns (and closes) its pool

    async def close(self) -> None:
        await self._redis.aclose()

    async def ping(self) -> bool:
        """Redis answers. On a cluster: at least one master answers (see docs/cluster.md)."""
        try:
            if isinstance(self._redis, RedisCluster):
                return await _ping_any_master(self._redis)
            return bool(await self._redis.ping())
        except _FAILURES:
            return False

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        """Run a script by its SHA; a Redis that lacks it (new, or restarted) gets it by EVAL,
        which also caches it there. (redis-py's own fallback, SCRIPT LOAD, goes to every master
        of a cluster, so one dead master would stop every script not yet loaded on the others.)"""
        try:
            try:
                return await self._command("EVALSHA", self._sha[script], len(keys), *keys, *args)
            except NoScriptError:
                return await self._command("EVAL", _lua(script), len(keys), *keys, *args)
        except _FAILURES as exc:
            raise self._failed(exc) from exc

    async def _cmd(self, command: str, *args: Any) -> Any:
        """A command, coalesced with the others of this event-loop turn on a single Redis."""
        try:
            return await self._command(command, *args)
        except _FAILURES as exc:
            raise self._failed(exc) from exc

    async def _command(self, *args: Any) -> Any:
        if self._batch is not None:
            return await self._batch.execute(args)
        return await self._redis.execute_command(*args)

    async def _call(self, command: str, *args: Any, **options: Any) -> Any:
        """A command on a connection of its own (a blocking read must not hold up a batch)."""
        try:
            return await self._redis.execute_command(command, *args, **options)
        except _FAILURES as exc:
            raise self._failed(exc) from exc

    def _failed(self, exc: Exception) -> StoreUnavailable:
        if self.on_failure is not None:
            self.on_failure(exc)
        return StoreUnavailable(f"the store failed: {type(exc).__name__}")

    # --- parties -------------------------------------------------------------------------------

    async def register_party(
        self,
        name: str,
        signing_key: bytes,
        encryption_key: bytes,
        registered_at: str,
        admission: Admission,
        invite_hash: str = "",
    ) -> Registration:
        keys = [_party(name, "party"), _party(name, "invite")]
        args = [signing_key, encryption_key, registered_at, admission, invite_hash]
        outcome: Registration = (await self._run("register", keys, args)).decode()
        if outcome in ("created", "exists"):
            # Listed after the record exists (and again on every idempotent re-registration, which
            # repairs a crash between the two), so only registered names reach the sweeper.
            await self._cmd("SADD", PARTIES_KEY, name)
        return outcome

    async def courier_key(self, public_key: bytes) -> bytes:
        """The courier key this store belongs to: the first one offered, kept forever."""
        await self._cmd("SET", COURIER_KEY, public_key, "NX")
        stored: bytes = await self._cmd("GET", COURIER_KEY)
        return stored

    async def get_party(self, name: str) -> StoredParty | None:
        fields = await self._cmd(
            "HMGET", _party(name, "party"), "signing", "encryption", "registered_at"
        )
        if fields[0] is None:
            return None
        return StoredParty(fields[0], fields[1], fields[2].decode())

    async def party_names(self) -> list[str]:
        members = await self._cmd("SMEMBERS", PARTIES_KEY)
        return sorted(m.decode() for m in members)

    async def add_invite(self, name: str, token_hash: str, ttl_seconds: int) -> None:
        await self._cmd("SET", _party(name, "invite"), token_hash, "EX", ttl_seconds)

    async def claim_nonce(self, party: str, nonce: str, ttl_ms: int) -> bool:
        """True the first time a party uses `nonce` within `ttl_ms`; False for a replay."""
        return bool(
            await self._cmd("SET", _party(party, f"nonce:{nonce}"), b"1", "NX", "PX", ttl_ms)
        )

    async def take_token(
        self,
        party: str,
        *,
        capacity: int,
        per_second: float,
        now_ms: int,
        cost: int = 1,
        nonce: str | None = None,
        nonce_ttl_ms: int = 0,
    ) -> tuple[bool | None, int]:
        """Take `cost` tokens from P's bucket: (taken, ms until enough tokens; 0 when taken).

        With a `nonce`, a replayed one is None (and no token is spent); the nonce is claimed for
        `nonce_ttl_ms` when the tokens are taken (0: only looked at). Capacity 0: no limit."""
        keys = [_party(party, "bucket")] + ([_party(party, f"nonce:{nonce}")] if nonce else [])
        args = [capacity, per_second, now_ms, cost, nonce_ttl_ms]
        taken, wait_ms = await self._run("rate_limit", keys, args)
        return None if taken < 0 else bool(taken), int(wait_ms)

    # --- letters -------------------------------------------------------------------------------

    async def send(
        self,
        *,
        letter_id: str,
        sender: str,
        recipient: str,
        envelope: Envelope,
        seal: bytes,
        ciphertext: bytes,
        sent_ms: int,
        expires_ms: int,
        receipt: Receipt,
        recipient_event: bytes,
        sender_event: bytes,
        nonce: str,
        nonce_ttl_ms: int,
        rate: RateLimit | None,
        now_ms: int,
    ) -> SendResult:
        """Accept a letter, with its request's nonce and rate-limit token: one script on a
        single Redis; on a cluster, the sender's half and then the recipient's (docs/store.md)."""
        capacity, per_second = (rate.capacity, rate.per_second) if rate else (0, 0.0)
        # Chain hashes are stored as raw bytes: half the size of their hex.
        raw_head = bytes.fromhex(receipt.chain_hash())
        packed_envelope, packed_receipt = pack_envelope(envelope), pack_receipt(receipt)
        if self.clustered:
            return await self._send_in_two(
                letter_id, sender, recipient, sent_ms, nonce, nonce_ttl_ms, capacity, per_second,
                now_ms, [packed_envelope, seal, ciphertext, sent_ms, expires_ms, packed_receipt,
                         raw_head, recipient_event, EVENTS_MAXLEN],
                receipt,
            )  # fmt: skip
        keys = [
            _party(sender, f"nonce:{nonce}"),
            _party(sender, "bucket"),
            _party(sender, "sent"),
            _party(sender, "outbox"),
            _party(sender, f"letter:{letter_id}"),
            _party(recipient, f"letter:{letter_id}"),
            _party(recipient, f"ct:{letter_id}"),
            _party(recipient, "inbox"),
            _party(recipient, "sent"),
            due_bucket(recipient),
            _party(recipient, "events"),
            _party(sender, "events"),
        ]
        args = [
            nonce_ttl_ms, capacity, per_second, now_ms, letter_id, recipient, packed_envelope,
            seal, ciphertext, sent_ms, expires_ms, packed_receipt, raw_head,
            recipient_event, sender_event, EVENTS_MAXLEN, f"{recipient} {letter_id}",
        ]  # fmt: skip
        outcome, detail = await self._run("send", keys, args)
        return _send_result(outcome, detail, receipt)

    async def _send_in_two(
        self,
        letter_id: str,
        sender: str,
        recipient: str,
        sent_ms: int,
        nonce: str,
        nonce_ttl_ms: int,
        capacity: int,
        per_second: float,
        now_ms: int,
        letter_args: list[Any],
        receipt: Receipt,
    ) -> SendResult:
        """The cluster send: the sender's slot first (nonce, token, outbox entry), then the
        recipient's (letter, inbox, deadline, its event, a fan-out mark for the sender's event,
        which the sweeper copies). A crash between leaves an outbox entry readers skip."""
        keys = [
            _party(sender, "sent"),
            _party(sender, "outbox"),
            _party(sender, f"letter:{letter_id}"),
            _party(sender, f"nonce:{nonce}"),
            _party(sender, "bucket"),
        ]
        args = [letter_id, recipient, sent_ms, nonce_ttl_ms, capacity, per_second, now_ms]
        filed, *detail = await self._run("reserve_outbox", keys, args)
        if filed == b"replayed":
            return SendResult("replayed")
        if filed == b"limited":
            return SendResult("limited", retry_after_ms=int(detail[0]))
        if filed == b"other":
            return SendResult("other")
        keys = [
            _party(recipient, f"letter:{letter_id}"),
            _party(recipient, f"ct:{letter_id}"),
            _party(recipient, "inbox"),
            _party(recipient, "due"),
            _party(recipient, "sent"),
            _party(recipient, "events"),
            _party(recipient, "fanout"),
        ]
        outcome, stored = await self._run("create_letter", keys, [letter_id, *letter_args])
        if outcome == b"conflict" and filed == b"new":
            await self._release_unless_ours(sender, recipient, letter_id)
        return _send_result(outcome, stored, receipt)

    async def _release_unless_ours(self, sender: str, recipient: str, letter_id: str) -> None:
        """Undo the outbox entry a refused cluster send filed, unless the letter holding the id is
        the sender's after all (another sealing of it, sent at the same moment, used the entry)."""
        existing = await self.letter(recipient, letter_id)
        if existing is None or existing.sender != sender:
            keys = [_party(sender, "sent"), _party(sender, "outbox")]
            await self._run("release_outbox", keys, [letter_id])

    async def recipient_of(self, sender: str, letter_id: str) -> str | None:
        """The recipient of a letter `sender` sent, or None if `sender` sent no such letter."""
        value = await self._cmd("HGET", _party(sender, "sent"), letter_id)
        return value.decode() if value is not None else None

    async def letter(
        self, recipient: str, letter_id: str, *, with_ciphertext: bool = False
    ) -> LetterRecord | None:
        keys = [_party(recipient, f"letter:{letter_id}"), _party(recipient, f"ct:{letter_id}")]
        raw = await self._run("snapshot", keys, ["1" if with_ciphertext else "0"])
        return _record(letter_id, recipient, raw) if raw else None

    async def transition(
        self,
        recipient: str,
        letter_id: str,
        *,
        sender: str,
        expected_head: str,
        new_state: State,
        receipts: list[Receipt],
        events: list[bytes],
        terminal: bool,
        release: bool,
        retention_ms: int,
    ) -> TransitionResult:
        """Append receipts with compare-and-set on the chain head, with both parties' events
        (on a cluster the recipient's, and a fan-out mark for the sender's: see `fan_out`)."""
        if self.clustered:
            due, member, other = _party(recipient, "due"), letter_id, _party(recipient, "fanout")
        else:
            due, member = due_bucket(recipient), f"{recipient} {letter_id}"
            other = _party(sender, "events")
        keys = [
            _party(recipient, f"letter:{letter_id}"),
            _party(recipient, f"ct:{letter_id}"),
            due,
            _party(recipient, "events"),
            other,
        ]
        args = [
            letter_id,
            bytes.fromhex(expected_head),
            new_state.value,
            bytes.fromhex(receipts[-1].chain_hash()),
            "1" if terminal else "0",
            "1" if release else "0",
            retention_ms,
            EVENTS_MAXLEN,
            "mark" if self.clustered else "both",
            member,
            len(receipts),
            *(pack_receipt(r) for r in receipts),
            *events,
        ]
        outcome, released = await self._run("transition", keys, args)
        return TransitionResult(outcome.decode(), released or None)

    # --- the sender's live events on a cluster -------------------------------------------------

    async def fan_out(
        self,
        sender: str,
        letter_id: str,
        digest: str,
        events: list[bytes],
        *,
        retention_ms: int | None = None,
    ) -> int:
        """Give the sender the letter's events it lacks (all of them passed, in order); with
        `retention_ms` (the letter is terminal) its count then expires with the letter."""
        keys = [_party(sender, f"fanned:{letter_id}"), _party(sender, "events")]
        ttl = "" if retention_ms is None else retention_ms
        return int(await self._run("fan_out", keys, [EVENTS_MAXLEN, digest, ttl, *events]))

    async def settle_fanout(self, recipient: str, letter_id: str, count: int) -> None:
        await self._run("settle_fanout", [_party(recipient, "fanout")], [letter_id, count])

    async def pending_fanout(self, recipient: str, limit: int) -> list[str]:
        ids = await self._cmd("ZRANGE", _party(recipient, "fanout"), 0, limit - 1)
        return [i.decode() for i in ids]

    async def events_after(
        self, party: str, after: str, *, count: int = 100
    ) -> list[tuple[str, bytes]]:
        """(event id, event JSON) after `after`, oldest first, at most `count`; never waits
        (a watcher waits for `follow_appends` to announce an event instead)."""
        key = _party(party, "events")
        reply: Any = await self._call("XREAD", "COUNT", count, "STREAMS", key, after)
        if not reply:
            return []
        entries = reply[0][1]
        return [(entry_id.decode(), fields[b"e"]) for entry_id, fields in entries]

    async def event_bounds(self, party: str) -> tuple[str, str, bool]:
        """Ids of the oldest and newest events kept for `party` ("0-0" when none), and whether
        older ones were ever trimmed (a capped stream only shrinks to its cap)."""
        key = _party(party, "events")
        first = await self._call("XRANGE", key, "-", "+", "COUNT", 1)
        last = await self._call("XREVRANGE", key, "+", "-", "COUNT", 1)
        length = await self._call("XLEN", key)
        return (
            first[0][0].decode() if first else "0-0",
            last[0][0].decode() if last else "0-0",
            length >= EVENTS_MAXLEN,
        )

    async def inbox_ids(
        self, party: str, limit: int, before: str | None = None
    ) -> list[str] | None:
        """Letter ids, newest first (after `before`; None if `before` is not listed)."""
        return await self._newest(_party(party, "inbox"), limit, before)

    async def outbox_ids(
        self, party: str, limit: int, before: str | None = None
    ) -> list[tuple[str, str]] | None:
        """(letter id, recipient) pairs, newest first (after `before`; None if it is not listed)."""
        ids = await self._newest(_party(party, "outbox"), limit, before)
        if ids is None:
            return None
        if not ids:
            return []
        recipients = await self._cmd("HMGET", _party(party, "sent"), *ids)
        return [(i, r.decode()) for i, r in zip(ids, recipients, strict=True) if r is not None]

    async def letters(self, pairs: list[tuple[str, str]]) -> list[LetterRecord]:
        """Several letters, given (recipient, letter id) pairs, in one round trip."""
        if not pairs:
            return []
        if isinstance(self._redis, RedisCluster):
            try:
                results = await self._cluster_snapshots(self._redis, pairs)
            except _FAILURES as exc:
                raise self._failed(exc) from exc
            return [_record(i, r, raw) for (r, i), raw in zip(pairs, results, strict=True) if raw]
        # Issued in one event-loop turn, so sent in one pipeline.
        records = await asyncio.gather(*(self.letter(r, i) for r, i in pairs))
        return [record for record in records if record is not None]

    async def _cluster_snapshots(
        self, cluster: RedisCluster, pairs: list[tuple[str, str]]
    ) -> list[Any]:
        """`snapshot.lua` for letters in many slots: one pipeline, one round trip per master.

        A cluster pipeline refuses EVALSHA (it could not load a script a master lacks, e.g. one
        restarted since), so it sends the script's text with EVAL. Each call touches one slot.
        """
        pipe = cluster.pipeline(transaction=False)
        source = _lua("snapshot")
        for recipient, letter_id in pairs:
            keys = [_party(recipient, f"letter:{letter_id}"), _party(recipient, f"ct:{letter_id}")]
            pipe = pipe.execute_command("EVAL", source, 2, *keys, "0")  # queues, returns the pipe
        return await pipe.execute()

    async def due_letters(self, now_ms: int, limit: int) -> list[tuple[str, str]]:
        """(recipient, letter id) of letters past their deadline (single Redis): one read per
        due bucket, all in one pipeline, so a pass costs O(letters due), not O(parties)."""
        buckets = [f"{PREFIX}:{{due:{k}}}" for k in range(DUE_BUCKETS)]
        replies = await asyncio.gather(
            *(self._cmd("ZRANGEBYSCORE", b, "-inf", now_ms, "LIMIT", 0, limit) for b in buckets)
        )
        due = []
        for member in (m for reply in replies for m in reply):
            recipient, _, letter_id = member.decode().partition(" ")
            due.append((recipient, letter_id))
        return due

    async def forget_due(self, recipient: str, letter_id: str) -> None:
        """Drop the deadline of a letter that no longer exists (its records ran out)."""
        if self.clustered:
            await self._cmd("ZREM", _party(recipient, "due"), letter_id)
        else:
            await self._cmd("ZREM", due_bucket(recipient), f"{recipient} {letter_id}")

    async def due_ids(self, party: str, now_ms: int, limit: int) -> list[str]:
        """A party's letters past their deadline (Redis Cluster: deadlines are per party)."""
        ids = await self._cmd(
            "ZRANGEBYSCORE", _party(party, "due"), "-inf", now_ms, "LIMIT", 0, limit
        )
        return [i.decode() for i in ids]

    async def forget_missing(self, party: str, letter_ids: list[str]) -> None:
        """Drop index entries whose letters ran out their retention."""
        if letter_ids:
            await self._cmd("ZREM", _party(party, "inbox"), *letter_ids)

    async def _newest(self, key: str, limit: int, before: str | None) -> list[str] | None:
        if before is None:
            ids = await self._cmd("ZREVRANGE", key, 0, limit - 1)
        else:
            ids = await self._run("page", [key], [limit, before])
            if ids is None:
                return None
        return [i.decode() for i in ids]

    # --- the live-event reader (one per worker, server/hub.py) ---------------------------------
    # Watchers are woken by Redis's own keyevent notification for XADD, on pub/sub connections of
    # their own, so no write path changes; they then read their streams with `events_after`.

    async def follow_appends(
        self, on_append: Callable[[str], None], on_ready: Callable[[], None]
    ) -> None:
        """Call `on_append(P)` each time an event is appended to P's stream, until cancelled.

        One pub/sub connection per master: Redis publishes a keyevent notification on the node
        that ran the write, so a cluster needs one per master. `on_ready()` once every master is
        subscribed: events appended before that were not announced, so the caller reads them.
        Raises StoreUnavailable when a connection fails (call again, after a pause).
        """
        clients: list[aioredis.Redis] = []
        pubsubs: list[PubSub] = []
        tasks: list[asyncio.Task[None]] = []
        try:
            try:
                if isinstance(self._redis, RedisCluster):
                    clients = [_node_client(n) for n in await _masters(self._redis)]
                    db = 0
                else:
                    clients = [self._redis]
                    db = int(self._redis.connection_pool.connection_kwargs.get("db", 0))
                for client in clients:
                    await _announce_appends(client)
                    pubsub = client.pubsub(ignore_subscribe_messages=True)
                    pubsubs.append(pubsub)
                    await pubsub.subscribe(f"__keyevent@{db}__:xadd")
            except _FAILURES as exc:
                raise self._failed(exc) from exc
            on_ready()
            tasks = [asyncio.create_task(_relay(p, on_append)) for p in pubsubs]
            done, _ = await asyncio.wait(tasks, return_when=asyncio.FIRST_EXCEPTION)
            failure = next(t.exception() for t in done if t.exception() is not None)
            if isinstance(failure, _FAILURES):
                raise self._failed(failure) from failure
            raise failure  # type: ignore[misc]
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, *_FAILURES):
                    await task
            for pubsub in pubsubs:
                with contextlib.suppress(*_FAILURES):
                    await pubsub.aclose()
            if clients and clients[0] is not self._redis:
                for client in clients:
                    with contextlib.suppress(*_FAILURES):
                        await client.aclose()


class _Batcher:
    """Coalesces the commands issued in one event-loop turn into one pipeline: one write and one
    read on one connection for all of them, instead of a pool checkout and a round trip each.

    The first command of a turn schedules the flush with `call_soon`, which runs after every
    callback already ready in this turn, so everything the turn's tasks issue goes together.
    Each command gets its own reply or its own error; a failed connection fails them all.
    """

    def __init__(self, client: aioredis.Redis) -> None:
        self._client = client
        self._queued: list[tuple[tuple[Any, ...], asyncio.Future[Any]]] = []
        self._tasks: set[asyncio.Task[None]] = set()

    def execute(self, args: tuple[Any, ...]) -> asyncio.Future[Any]:
        loop = asyncio.get_running_loop()
        if not self._queued:
            loop.call_soon(self._flush)
        future: asyncio.Future[Any] = loop.create_future()
        self._queued.append((args, future))
        return future

    def _flush(self) -> None:
        batch, self._queued = self._queued, []
        task = asyncio.get_running_loop().create_task(self._send(batch))
        self._tasks.add(task)  # held until done: the loop keeps only weak references to tasks
        task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[tuple[Any, ...], asyncio.Future[Any]]]) -> None:
        try:
            if len(batch) == 1:
                replies: list[Any] = [await _reply_or_error(self._client, batch[0][0])]
            else:
                pipe = self._client.pipeline(transaction=False)
                for args, _ in batch:
                    pipe.execute_command(*args)
                replies = await pipe.execute(raise_on_error=False)
        except BaseException as exc:  # every waiter must hear of it, whatever it is
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
            return
        for (_, future), reply in zip(batch, replies, strict=True):
            if future.done():  # its caller was cancelled
                continue
            if isinstance(reply, Exception):
                future.set_exception(reply)
            else:
                future.set_result(reply)


async def _reply_or_error(client: aioredis.Redis, args: tuple[Any, ...]) -> Any:
    """One command alone, without a pipeline's bookkeeping; a Redis error reply is its result."""
    try:
        return await client.execute_command(*args)  # type: ignore[no-untyped-call]
    except RedisError as exc:
        if isinstance(exc, LostConnection | TimedOut):
            raise
        return exc


def _send_result(outcome: bytes, detail: bytes, sent: Receipt) -> SendResult:
    """The script's answer; for `exists`, the receipt stored by the first send of the letter."""
    name: SendOutcome = outcome.decode()  # type: ignore[assignment]
    if name == "limited":
        return SendResult(name, retry_after_ms=int(detail))
    if name == "created":
        return SendResult(name, sent)
    if name == "exists":
        first = unpack_receipt(
            detail, letter_id=sent.letter_id, seq=0, envelope_sha256=sent.envelope_sha256, prev=ZERO
        )
        return SendResult(name, first)
    return SendResult(name)


# How long a pub/sub read waits before checking the connection's health (a PING when idle).
_PUBSUB_WAIT = 10.0
_STREAM_KEY = (f"{PREFIX}:{{".encode(), b"}:events")


async def _relay(pubsub: PubSub, on_append: Callable[[str], None]) -> None:
    head, tail = _STREAM_KEY
    while True:
        message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=_PUBSUB_WAIT)
        if message is None or message["type"] != "message":
            continue
        key: bytes = message["data"]
        if key.startswith(head) and key.endswith(tail):
            on_append(key[len(head) : -len(tail)].decode())


async def _announce_appends(client: aioredis.Redis) -> None:
    """Have Redis publish a keyevent notification for every XADD: flags `E` (keyevent) and `t`
    (stream commands), added to whatever the server already has. A Redis that refuses CONFIG
    (some managed ones) must be configured with `notify-keyspace-events Et` (docs/events.md)."""
    try:
        config = await client.config_get("notify-keyspace-events")
    except ResponseError:
        return
    raw = next(iter(config.values()), b"")
    flags = raw.decode() if isinstance(raw, bytes) else str(raw)
    wanted = "E" + ("" if "A" in flags else "t")
    missing = "".join(flag for flag in wanted if flag not in flags)
    if missing:
        await client.config_set("notify-keyspace-events", flags + missing)


async def _masters(cluster: RedisCluster) -> list[ClusterNode]:
    cluster = await cluster.initialize()
    return list(cluster.get_primaries())


def _node_client(node: ClusterNode) -> aioredis.Redis:
    """A plain client for one cluster node, with the cluster client's credentials."""
    options = node.connection_kwargs
    return aioredis.Redis(
        host=node.host,
        port=int(node.port),
        username=options.get("username"),
        password=options.get("password"),
        decode_responses=False,
        socket_connect_timeout=2,
        health_check_interval=30,
    )


def _lua(name: str) -> str:
    return (
        resources.files("channel.courier").joinpath(f"lua/{name}.lua").read_text(encoding="utf-8")
    )


def _record(letter_id: str, recipient: str, raw: list[bytes]) -> LetterRecord:
    state, head, packed_envelope, seal, ciphertext, *receipts = raw
    env = unpack_envelope(packed_envelope, letter_id=letter_id, recipient=recipient)
    digest_hex = env.digest()  # kept nowhere: the envelope's canonical bytes give it
    return LetterRecord(
        id=letter_id,
        recipient=recipient,
        sender=env.sender,
        state=State(state.decode()),
        head=head.hex(),
        expires_ms=to_millis(env.expires_at),
        env=env,
        seal=seal,
        digest=digest_hex,
        ciphertext=ciphertext or None,
        chain=unpack_chain(receipts, letter_id=letter_id, envelope_sha256=digest_hex),
    )


def _cluster_client(url: str, max_connections: int) -> RedisCluster:
    """A cluster client from `redis+cluster://[user:password@]host:port[,host:port...]`.

    Any reachable node is enough to start: the client learns the slot map from it. Slots whose
    master is down do not stop the others from being served (`require_full_coverage=False`).

    A failed command is retried twice (the client refreshes its slot map before each retry, so a
    slot that moved to a promoted replica is found), not redis-py's ten times: with its 5 s socket
    timeout, ten retries kept a request to a hung (not dead) master waiting 55 s, longer than the
    client waits. Now: at most 3 x 8 s. No command blocks (live events wait on pub/sub
    connections of their own, `follow_appends`).
    """
    rest = url[len(CLUSTER_SCHEME) :].rstrip("/")
    userinfo, _, hosts = rest.rpartition("@")
    nodes = []
    for address in hosts.split(","):
        host, colon, port = address.strip().rpartition(":")
        if not colon or not host or not port.isdigit():
            raise ValueError(
                f"not a Redis Cluster URL ({CLUSTER_SCHEME}host:port[,host:port...]): "
                f"bad node address {address!r}"
            )
        nodes.append(ClusterNode(host.strip("[]"), int(port)))
    username, _, password = userinfo.partition(":")
    return RedisCluster(
        startup_nodes=nodes,
        decode_responses=False,
        username=unquote(username) or None,
        password=unquote(password) or None,
        require_full_coverage=False,
        health_check_interval=30,
        retry=Retry(NoBackoff(), retries=2),
        socket_connect_timeout=2,
        socket_timeout=8,
        max_connections=max_connections,
    )


async def _ping_any_master(cluster: RedisCluster) -> bool:
    """True if at least one master answers: with one master down, the others still serve."""
    cluster = await cluster.initialize()  # learn the masters (a no-op once they are known)
    replies = await asyncio.gather(
        *(cluster.ping(target_nodes=node) for node in cluster.get_primaries()),
        return_exceptions=True,
    )
    return any(reply is True for reply in replies)
