"""The Store: the only module that speaks to Redis. It owns every key name and every Lua script.

Key layout (docs/store.md explains it). Every key a script touches carries a hash tag, so each
script touches a single Redis Cluster slot (`bc:parties` is only used by single-key commands).
A party's tag is its name: its registration, invitations, nonces, inbox, outbox and every letter
addressed to it live in one slot, so accepting a letter (letter, receipt, inbox entry, deadline)
is one atomic script. The one step that spans two parties, filing
the letter in the sender's outbox, runs first as its own idempotent script (a retried send
repeats it); readers skip outbox entries whose letter does not exist (yet).

    bc:{P}:party            hash    P's public keys and registration time
    bc:{P}:invite           string  sha256 of P's one-time invitation token (expires)
    bc:{P}:nonce:N          string  a request nonce P used (expires after the auth window)
    bc:{P}:bucket           hash    P's rate-limit token bucket (expires once full again)
    bc:{P}:inbox            zset    letter ids addressed to P, scored by sent time (ms)
    bc:{P}:due              zset    P's unfinished letters, scored by deadline (ms)
    bc:{P}:letter:ID        hash    envelope, seal, ciphertext, state, chain head and the signed
                                    receipts (fields r:0, r:1, ...) of letter ID to P
    bc:{P}:outbox           zset    letter ids P sent, scored by sent time (ms)
    bc:{P}:sent             hash    letter id -> recipient, for P's letters
    bc:{P}:events           stream  P's live events (new letters, receipts on its letters), capped
    bc:{P}:fanout           zset    letters to P whose receipts its sender's stream may still lack
    bc:{P}:fanned           hash    letter id -> how many of its events P (as sender) has had
    bc:parties              set     every registered name (the sweeper walks it)
    bc:courier              string  the courier's public key: every replica must sign with it
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass
from importlib import resources
from typing import Any, Literal
from urllib.parse import unquote

import redis.asyncio as aioredis
from redis.asyncio.client import Pipeline, PubSub
from redis.asyncio.cluster import ClusterNode, RedisCluster
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.commands.core import AsyncScript
from redis.exceptions import NoScriptError, RedisClusterException, RedisError, ResponseError

from channel.errors import StoreUnavailable
from channel.lifecycle import State

PREFIX = "bc"
# Each party's event stream keeps about this many events; a client further behind must resync.
EVENTS_MAXLEN = 10_000
PARTIES_KEY = f"{PREFIX}:parties"
COURIER_KEY = f"{PREFIX}:courier"
# `redis+cluster://[user:password@]host:port[,host:port...]`: a Redis Cluster (docs/cluster.md).
CLUSTER_SCHEME = "redis+cluster://"
# What a store failure looks like. The cluster client's own errors (no reachable node, a slot no
# master serves) are not RedisErrors. Nor is a connection closed under a write: redis-py 8.1 lets
# that escape as AttributeError or TypeError (redis/redis-py#3546, #4287); the cluster client
# hits it when a master dies mid-request. Only Redis calls sit inside the `try` blocks.
_FAILURES = (RedisError, OSError, RedisClusterException, AttributeError, TypeError)

Admission = Literal["open", "invite", "pinned"]
Registration = Literal["created", "exists", "taken", "closed"]


def _party(name: str, suffix: str) -> str:
    return f"{PREFIX}:{{{name}}}:{suffix}"


@dataclass(frozen=True)
class StoredParty:
    signing_key: bytes
    encryption_key: bytes
    registered_at: str


@dataclass(frozen=True)
class LetterRecord:
    """A letter as the store holds it: no plaintext, ever."""

    id: str
    recipient: str
    sender: str
    state: State
    head: str
    expires_ms: int
    envelope: bytes  # canonical JSON, exactly as sealed
    seal: bytes
    digest: str
    ciphertext: bytes | None  # only when asked for, and only until it is released
    receipts: list[bytes]  # canonical JSON, in chain order


@dataclass(frozen=True)
class CreateResult:
    outcome: Literal["created", "exists", "conflict"]
    receipt: bytes


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
        self._scripts: dict[str, AsyncScript] = {
            name: client.register_script(_lua(name))
            for name in (
                "create_letter",
                "transition",
                "reserve_outbox",
                "release_outbox",
                "register",
                "snapshot",
                "rate_limit",
                "fan_out",
                "settle_fanout",
            )
        }

    @classmethod
    def from_url(cls, url: str) -> Store:
        if url.startswith(CLUSTER_SCHEME):
            return cls(_cluster_client(url))
        return cls(aioredis.Redis.from_url(url, decode_responses=False, health_check_interval=30))

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
        """Run a script. On a cluster, a master that lacks it (new, or restarted) gets it by EVAL,
        which also caches it there: redis-py's own fallback, SCRIPT LOAD, goes to every master,
        so one dead master would stop every script not yet loaded on the others."""
        try:
            if not isinstance(self._redis, RedisCluster):
                return await self._scripts[script](keys=keys, args=args)
            sha = self._scripts[script].sha
            try:
                return await self._redis.execute_command("EVALSHA", sha, len(keys), *keys, *args)
            except NoScriptError:
                return await self._redis.execute_command(
                    "EVAL", _lua(script), len(keys), *keys, *args
                )
        except _FAILURES as exc:
            raise self._failed(exc) from exc

    async def _call(self, command: str, *args: Any, **options: Any) -> Any:
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
            await self._call("SADD", PARTIES_KEY, name)
        return outcome

    async def courier_key(self, public_key: bytes) -> bytes:
        """The courier key this store belongs to: the first one offered, kept forever."""
        await self._call("SET", COURIER_KEY, public_key, "NX")
        stored: bytes = await self._call("GET", COURIER_KEY)
        return stored

    async def get_party(self, name: str) -> StoredParty | None:
        fields = await self._call(
            "HMGET", _party(name, "party"), "signing", "encryption", "registered_at"
        )
        if fields[0] is None:
            return None
        return StoredParty(fields[0], fields[1], fields[2].decode())

    async def party_names(self) -> list[str]:
        members = await self._call("SMEMBERS", PARTIES_KEY)
        return sorted(m.decode() for m in members)

    async def add_invite(self, name: str, token_hash: str, ttl_seconds: int) -> None:
        await self._call("SET", _party(name, "invite"), token_hash, "EX", ttl_seconds)

    async def claim_nonce(self, party: str, nonce: str, ttl_ms: int) -> bool:
        """True the first time a party uses `nonce` within `ttl_ms`; False for a replay."""
        return bool(
            await self._call("SET", _party(party, f"nonce:{nonce}"), b"1", "NX", "PX", ttl_ms)
        )

    async def take_token(
        self, party: str, *, capacity: int, per_second: float, now_ms: int, cost: int = 1
    ) -> tuple[bool, int]:
        """Take `cost` tokens from P's bucket: (taken, ms until enough tokens; 0 when taken)."""
        args = [capacity, per_second, now_ms, cost]
        taken, wait_ms = await self._run("rate_limit", [_party(party, "bucket")], args)
        return bool(taken), int(wait_ms)

    # --- letters -------------------------------------------------------------------------------

    async def create_letter(
        self,
        *,
        letter_id: str,
        sender: str,
        recipient: str,
        digest: str,
        envelope: bytes,
        seal: bytes,
        ciphertext: bytes,
        sent_ms: int,
        expires_ms: int,
        receipt: bytes,
        receipt_hash: str,
        event: bytes,
    ) -> CreateResult:
        keys = [
            _party(recipient, f"letter:{letter_id}"),
            _party(recipient, "inbox"),
            _party(recipient, "due"),
            _party(recipient, "sent"),
            _party(recipient, "events"),
            _party(recipient, "fanout"),
        ]
        # Digests and chain hashes are stored as raw bytes: half the size of their hex.
        args = [
            letter_id,
            bytes.fromhex(digest),
            envelope,
            seal,
            ciphertext,
            sender,
            sent_ms,
            expires_ms,
            receipt,
            bytes.fromhex(receipt_hash),
            event,
            EVENTS_MAXLEN,
        ]
        outcome, stored = await self._run("create_letter", keys, args)
        return CreateResult(outcome.decode(), stored or b"")

    async def reserve_outbox(
        self,
        sender: str,
        letter_id: str,
        recipient: str,
        sent_ms: int,
        *,
        nonce: str,
        nonce_ttl_ms: int,
    ) -> Literal["new", "same", "other", "replayed"]:
        keys = [
            _party(sender, "sent"),
            _party(sender, "outbox"),
            _party(sender, f"letter:{letter_id}"),
            _party(sender, f"nonce:{nonce}"),
        ]
        args = [letter_id, recipient, sent_ms, nonce_ttl_ms]
        outcome: bytes = await self._run("reserve_outbox", keys, args)
        return outcome.decode()  # type: ignore[return-value]

    async def release_outbox(self, sender: str, letter_id: str) -> None:
        await self._run(
            "release_outbox", [_party(sender, "sent"), _party(sender, "outbox")], [letter_id]
        )

    async def recipient_of(self, sender: str, letter_id: str) -> str | None:
        """The recipient of a letter `sender` sent, or None if `sender` sent no such letter."""
        value = await self._call("HGET", _party(sender, "sent"), letter_id)
        return value.decode() if value is not None else None

    async def letter(
        self, recipient: str, letter_id: str, *, with_ciphertext: bool = False
    ) -> LetterRecord | None:
        keys = [_party(recipient, f"letter:{letter_id}")]
        raw = await self._run("snapshot", keys, ["1" if with_ciphertext else "0"])
        return _record(letter_id, recipient, raw) if raw else None

    async def transition(
        self,
        recipient: str,
        letter_id: str,
        *,
        expected_head: str,
        new_state: State,
        new_head: str,
        receipts: list[bytes],
        events: list[bytes],
        terminal: bool,
        release: bool,
        retention_ms: int,
    ) -> TransitionResult:
        keys = [
            _party(recipient, f"letter:{letter_id}"),
            _party(recipient, "due"),
            _party(recipient, "events"),
            _party(recipient, "fanout"),
        ]
        args = [
            letter_id,
            bytes.fromhex(expected_head),
            new_state.value,
            bytes.fromhex(new_head),
            "1" if terminal else "0",
            "1" if release else "0",
            retention_ms,
            EVENTS_MAXLEN,
            len(receipts),
            *receipts,
            *events,
        ]
        outcome, released = await self._run("transition", keys, args)
        return TransitionResult(outcome.decode(), released or None)

    # --- live events ---------------------------------------------------------------------------

    async def fan_out(self, sender: str, letter_id: str, digest: str, events: list[bytes]) -> int:
        """Give the sender the letter's events it lacks (all of them passed, in order)."""
        keys = [_party(sender, "fanned"), _party(sender, "events")]
        args = [letter_id, EVENTS_MAXLEN, digest, *events]
        return int(await self._run("fan_out", keys, args))

    async def settle_fanout(self, recipient: str, letter_id: str, count: int) -> None:
        await self._run("settle_fanout", [_party(recipient, "fanout")], [letter_id, count])

    async def pending_fanout(self, recipient: str, limit: int) -> list[str]:
        ids = await self._call("ZRANGE", _party(recipient, "fanout"), 0, limit - 1)
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

    async def inbox_ids(self, party: str, limit: int) -> list[str]:
        return await self._newest(_party(party, "inbox"), limit)

    async def outbox_ids(self, party: str, limit: int) -> list[tuple[str, str]]:
        """(letter id, recipient) pairs, newest first."""
        ids = await self._newest(_party(party, "outbox"), limit)
        if not ids:
            return []
        recipients = await self._call("HMGET", _party(party, "sent"), *ids)
        return [(i, r.decode()) for i, r in zip(ids, recipients, strict=True) if r is not None]

    async def letters(self, pairs: list[tuple[str, str]]) -> list[LetterRecord]:
        """Several letters, given (recipient, letter id) pairs, in one round trip."""
        if not pairs:
            return []
        try:
            if isinstance(self._redis, RedisCluster):
                results = await self._cluster_snapshots(self._redis, pairs)
            else:
                pipe: Pipeline = self._redis.pipeline(transaction=False)
                for recipient, letter_id in pairs:
                    keys = [_party(recipient, f"letter:{letter_id}")]
                    await self._scripts["snapshot"](keys=keys, args=["0"], client=pipe)
                results = await pipe.execute()
        except _FAILURES as exc:
            raise self._failed(exc) from exc
        return [
            _record(letter_id, recipient, raw)
            for (recipient, letter_id), raw in zip(pairs, results, strict=True)
            if raw
        ]

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
            key = _party(recipient, f"letter:{letter_id}")
            pipe = pipe.execute_command("EVAL", source, 1, key, "0")  # queues, returns the pipe
        return await pipe.execute()

    async def due_ids(self, party: str, now_ms: int, limit: int) -> list[str]:
        ids = await self._call(
            "ZRANGEBYSCORE", _party(party, "due"), "-inf", now_ms, "LIMIT", 0, limit
        )
        return [i.decode() for i in ids]

    async def forget_missing(self, party: str, letter_ids: list[str]) -> None:
        """Drop index entries whose letters ran out their retention."""
        if letter_ids:
            await self._call("ZREM", _party(party, "inbox"), *letter_ids)

    async def _newest(self, key: str, limit: int) -> list[str]:
        ids = await self._call("ZREVRANGE", key, 0, limit - 1)
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
    return resources.files("channel").joinpath(f"lua/{name}.lua").read_text(encoding="utf-8")


def _record(letter_id: str, recipient: str, raw: list[bytes]) -> LetterRecord:
    state, head, sender, exp, env, seal, digest, ciphertext, *receipts = raw
    return LetterRecord(
        id=letter_id,
        recipient=recipient,
        sender=sender.decode(),
        state=State(state.decode()),
        head=head.hex(),
        expires_ms=int(exp),
        envelope=env,
        seal=seal,
        digest=digest.hex(),
        ciphertext=ciphertext or None,
        receipts=receipts,
    )


def _cluster_client(url: str) -> RedisCluster:
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
    )


async def _ping_any_master(cluster: RedisCluster) -> bool:
    """True if at least one master answers: with one master down, the others still serve."""
    cluster = await cluster.initialize()  # learn the masters (a no-op once they are known)
    replies = await asyncio.gather(
        *(cluster.ping(target_nodes=node) for node in cluster.get_primaries()),
        return_exceptions=True,
    )
    return any(reply is True for reply in replies)
