"""Backchannel on a real Redis Cluster: three masters, two courier replicas, one master killed.

The parties are picked so that each lives on its own master (every key of a party shares the
party's hash tag, so one slot, so one master), and every step is checked through both replicas.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from redis.crc import key_slot

from channel.courier.service import Courier
from channel.courier.store import PARTIES_KEY, Store
from channel.party.client import Client
from channel.protocol.canonical import now_utc
from channel.protocol.errors import InvalidTransition, LetterIdConflict, StoreUnavailable
from channel.protocol.httpsig import SignedBy
from channel.protocol.lifecycle import TERMINAL, State
from channel.protocol.models import LiveEvent, Receipt, RegisterRequest, SealedLetter
from channel.protocol.names import new_letter_id
from channel.protocol.seal import PartyKeys, decision_for, seal_letter, sign_decision
from tests.cluster import LocalCluster, Node
from tests.conftest import (
    SECRETS,
    Connect,
    CourierFactory,
    assert_problem,
    check_chain,
    couriers,
    identity,
    nonce_free,
    plaintext_needles,
    signed_call,
    store_blobs,
    store_snapshot,
)

ROUNDS = 20
# Plausible names; the first three that land on three different masters are used.
CANDIDATES = [
    "us.cia.director",
    "ir.irgc.quds",
    "fr.dgse.director",
    "ru.svr.director",
    "uk.sis.chief",
    "cn.mss.chief",
    "de.bnd.president",
    "tr.mit.head",
    "qa.mofa.envoy",
    "ch.fdfa.envoy",
]


# --- the cluster, the couriers and the parties -------------------------------------------------


@pytest.fixture(scope="session")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """Three masters, the embedded store's redis-server binary, created with its redis-cli."""
    local = LocalCluster(tmp_path_factory.mktemp("cluster"))
    local.start()
    yield local
    local.stop()


@dataclass(frozen=True)
class Cast:
    """Three party names, each on a different master."""

    director: str
    quds: str
    envoy: str


@pytest.fixture(scope="session")
def cast(cluster: LocalCluster) -> Cast:
    chosen: dict[int, str] = {}
    for name in CANDIDATES:
        chosen.setdefault(cluster.owner_of_party(name).port, name)
    assert len(chosen) == 3, chosen
    by_order = sorted(chosen.values(), key=CANDIDATES.index)
    return Cast(*by_order)


@pytest.fixture
async def masters(cluster: LocalCluster) -> AsyncIterator[dict[int, aioredis.Redis]]:
    """A plain connection to each master (port -> client); every master is flushed first."""
    for node in cluster.nodes:
        if node.process is None:  # a failed kill test left one down
            node.start()
    cluster.wait_healthy()
    cluster.flushall()
    clients = {node.port: aioredis.Redis(port=node.port) for node in cluster.nodes}
    yield clients
    for client in clients.values():
        await client.aclose()


@pytest.fixture
async def start_replica(
    masters: dict[int, aioredis.Redis],
    cluster: LocalCluster,
    courier_key: Ed25519PrivateKey,
    tmp_path: Path,
) -> AsyncIterator[CourierFactory]:
    """Start courier replicas on real sockets, all on the cluster, with one courier key."""
    # Limits high enough never to refuse a test's burst, so the limiter's script still runs.
    limits = {"rate_limit_per_second": 10_000, "rate_limit_burst": 10_000}
    async with couriers(cluster.url, courier_key, tmp_path, **limits) as start:
        yield start


@pytest.fixture
async def replicas(start_replica: CourierFactory) -> tuple[str, str]:
    return await start_replica(), await start_replica()


@dataclass
class Party:
    """One party, with a client through each replica."""

    a: Client
    b: Client

    @property
    def name(self) -> str:
        return identity(self.a).name


async def _join(urls: tuple[str, str], connect: Connect, name: str) -> Party:
    keys = PartyKeys.generate(name)
    party = Party(connect(urls[0], keys), connect(urls[1], keys))
    await party.a.register()
    return party


@dataclass
class Parties:
    director: Party
    quds: Party
    envoy: Party


@pytest.fixture
async def parties(replicas: tuple[str, str], connect: Connect, cast: Cast) -> Parties:
    return Parties(
        await _join(replicas, connect, cast.director),
        await _join(replicas, connect, cast.quds),
        await _join(replicas, connect, cast.envoy),
    )


def _tag(key: bytes) -> str | None:
    start = key.find(b"{")
    end = key.find(b"}", start + 1)
    return key[start + 1 : end].decode() if start >= 0 and end > start + 1 else None


async def _letter_on(masters: dict[int, aioredis.Redis], letter_id: str) -> tuple[int, bytes]:
    """(master port, key) of the one hash holding this letter, found by scanning every master."""
    found = [
        (port, key)
        for port, client in masters.items()
        async for key in client.scan_iter(match=f"*:letter:{letter_id}")
    ]
    assert len(found) == 1, found
    return found[0]


def _events(receipts: list[Receipt]) -> list[State]:
    return [r.event for r in receipts]


# --- layout ------------------------------------------------------------------------------------


async def test_parties_live_on_different_masters(
    cluster: LocalCluster, cast: Cast, parties: Parties, masters: dict[int, aioredis.Redis]
) -> None:
    """Each party's keys all sit on one master, a different one per party, as the slot map says."""
    names = (cast.director, cast.quds, cast.envoy)
    owners = {name: cluster.owner_of_party(name).port for name in names}
    assert len(set(owners.values())) == 3
    for name, port in owners.items():
        slot = key_slot(f"bc:{{{name}}}:anything".encode())
        assert slot == key_slot(name.encode())  # the tag alone decides the slot
        assert cluster.slot_owner(slot).port == port
    # Traffic in every direction, then look at what each master really holds.
    d, q, e = parties.director, parties.quds, parties.envoy
    for sender, to in ((d.a, q.name), (q.b, e.name), (e.a, d.name), (d.b, e.name)):
        await sender.send_letter(to, "layout")
        await _recipient(parties, to).b.inbox()
    held: dict[int, set[str]] = {}
    for port, client in masters.items():
        keys = [key async for key in client.scan_iter()]
        held[port] = {tag for tag in map(_tag, keys) if tag is not None}
        # Untagged keys are single global keys (bc:parties, ...), each used by one command only.
        assert all(key.count(b":") == 1 for key in keys if _tag(key) is None), keys
    for port, tags in held.items():
        assert tags == {name for name, owner in owners.items() if owner == port}, (port, tags)
    parties_master = cluster.owner_of_key(PARTIES_KEY).port
    listed = await masters[parties_master].smembers(PARTIES_KEY)
    assert listed == {n.encode() for n in names}


def _recipient(parties: Parties, name: str) -> Party:
    return next(p for p in (parties.director, parties.quds, parties.envoy) if p.name == name)


class RecordingStore(Store):
    """The real store, noting the KEYS of every script it runs."""

    calls: list[tuple[str, list[str]]]

    async def _run(self, script: str, keys: list[str], args: list[Any]) -> Any:
        self.calls = [*getattr(self, "calls", []), (script, keys)]
        return await super()._run(script, keys, args)


async def test_every_script_keeps_to_one_slot(
    cluster: LocalCluster, cast: Cast, masters: dict[int, aioredis.Redis]
) -> None:
    """Every script call's KEYS carry one hash tag, a party name, so one slot (no CROSSSLOT)."""
    store = RecordingStore.from_url(cluster.url)
    assert isinstance(store, RecordingStore)
    try:
        await _exercise(Courier(store, Ed25519PrivateKey.generate(), open_registration=True), cast)
    finally:
        await store.close()
    scripts = {script for script, _ in store.calls}
    assert {
        "register",
        "reserve_outbox",
        "create_letter",
        "release_outbox",
        "snapshot",
        "transition",
        "fan_out",
        "settle_fanout",
    } <= scripts
    for script, keys in store.calls:
        tags = {_tag(k.encode()) for k in keys}
        assert len(tags) == 1, (script, keys)
        assert tags <= {cast.director, cast.quds, cast.envoy}, (script, keys)
        assert len({key_slot(k.encode()) for k in keys}) == 1


async def _exercise(courier: Courier, cast: Cast) -> None:
    """Register, send, deliver, conflict (and release), open, list and sweep on the cluster."""
    director, quds, envoy = (PartyKeys.generate(n) for n in (cast.director, cast.quds, cast.envoy))
    for keys in (director, quds, envoy):
        await courier.register(RegisterRequest(**keys.public().model_dump()))
    letter_id = new_letter_id()

    def sealed(sender: PartyKeys, to: PartyKeys, body: str) -> SealedLetter:
        return seal_letter(
            sender,
            to.public(),
            letter_id=letter_id,
            subject="",
            body=body,
            sent_at=now_utc(),
            expires_at=now_utc() + timedelta(days=1),
        )

    first = sealed(director, quds, "one")
    await courier.send(SignedBy(director.name, new_letter_id()), first)
    await courier.inbox(quds.name, 10)
    with pytest.raises(LetterIdConflict):  # reserved by envoy, refused in quds's slot, released
        await courier.send(SignedBy(envoy.name, new_letter_id()), sealed(envoy, quds, "two"))
    signature = sign_decision(quds, decision_for(State.OPENED, first.envelope))
    await courier.open(quds.name, letter_id, signature)
    await courier.outbox(director.name, 10)
    await courier.sweep()


# --- the lifecycle through two replicas --------------------------------------------------------


async def test_send_deliver_open_across_replicas(
    parties: Parties, courier_key: Ed25519PrivateKey
) -> None:
    """Sent through A, listed through B (delivered), opened through A: body and chain check out."""
    d, q = parties.director, parties.quds
    sealed, receipt = await d.a.send_letter(q.name, "Across two masters and two couriers.")
    inbox = await q.b.inbox()
    assert [(s.id, s.state) for s in inbox] == [(sealed.envelope.id, State.DELIVERED)]
    content, opened = await q.a.open_letter(sealed.envelope.id)
    assert content.content.body == "Across two masters and two couriers."
    assert opened.letter == sealed
    assert opened.receipts[0] == receipt
    assert _events(opened.receipts) == [State.ACCEPTED, State.DELIVERED, State.OPENED]
    check_chain(opened.receipts, sealed, courier_key, q.a)
    status = await d.b.verified_status(sealed.envelope.id)
    assert status.receipts == opened.receipts


async def test_return_unopened_and_withdraw_across_replicas(
    parties: Parties, courier_key: Ed25519PrivateKey
) -> None:
    """Returned unopened through B comes back byte for byte through A; withdrawal through B."""
    d, q = parties.director, parties.quds
    returned, _ = await d.a.send_letter(q.name, "Return this one.")
    withdrawn, _ = await d.b.send_letter(q.name, "Withdraw this one.")
    await q.a.inbox()
    receipts = await q.b.return_letter(returned.envelope.id, reason="Not accepted")
    assert _events(receipts) == [State.ACCEPTED, State.DELIVERED, State.RETURNED_UNOPENED]
    back = await d.a.returned_letter(returned.envelope.id)
    assert back.state is State.RETURNED_UNOPENED
    assert back.letter.model_dump_json() == returned.model_dump_json()
    assert back.letter.envelope.signable() == returned.envelope.signable()
    assert (back.letter.seal, back.letter.ciphertext) == (returned.seal, returned.ciphertext)
    check_chain(back.receipts, returned, courier_key, q.a)

    receipts = await d.b.withdraw_letter(withdrawn.envelope.id)
    assert _events(receipts) == [State.ACCEPTED, State.DELIVERED, State.WITHDRAWN]
    with pytest.raises(InvalidTransition):
        await q.a.open_letter(withdrawn.envelope.id)
    assert (await d.a.returned_letter(withdrawn.envelope.id)).letter == withdrawn


async def test_sweeper_expires_on_the_cluster(
    start_replica: CourierFactory,
    connect: Connect,
    cast: Cast,
    masters: dict[int, aioredis.Redis],
    cluster: LocalCluster,
    courier_key: Ed25519PrivateKey,
) -> None:
    """Untouched past its deadline, a letter on another master is expired by a replica's sweeper."""
    urls = (await start_replica(sweep_interval=0.1), await start_replica(sweep_interval=3600))
    d = await _join(urls, connect, cast.director)
    q = await _join(urls, connect, cast.quds)
    sealed = await d.b.seal(q.name, "Too late.", expires_in=timedelta(seconds=1))
    await d.b.send(sealed)
    port, key = await _letter_on(masters, sealed.envelope.id)
    assert port == cluster.owner_of_party(q.name).port  # the letter lives with its recipient
    for _ in range(200):  # the sweeper runs every 0.1 s; nothing touches the letter meanwhile
        if await masters[port].hget(key, "state") == b"expired":
            break
        await asyncio.sleep(0.05)
    assert await masters[port].hget(key, "state") == b"expired"
    status = await d.b.status(sealed.envelope.id)
    assert _events(status.receipts) == [State.ACCEPTED, State.EXPIRED]
    check_chain(status.receipts, sealed, courier_key, q.a)
    assert (await d.a.returned_letter(sealed.envelope.id)).letter == sealed


class CrashingStore(Store):
    """A store whose process "dies" right after the recipient's script of a transition: the
    sender's half (fan_out.lua, in the sender's slot) never runs."""

    async def fan_out(self, *args: Any, **kwargs: Any) -> int:
        raise asyncio.CancelledError  # what a courier killed mid-request leaves: nothing more


def _sealed_for(sender: PartyKeys, to: PartyKeys, body: str) -> SealedLetter:
    return seal_letter(
        sender,
        to.public(),
        letter_id=new_letter_id(),
        subject="",
        body=body,
        sent_at=now_utc(),
        expires_at=now_utc() + timedelta(days=1),
    )


async def _stream_states(store: Store, party: str) -> list[tuple[str, str]]:
    events = await store.events_after(party, "0-0")
    return [(json.loads(data)["letter_id"], json.loads(data)["state"]) for _, data in events]


async def test_a_crash_between_the_two_cluster_scripts_is_repaired_by_the_sweeper(
    cluster: LocalCluster, cast: Cast, masters: dict[int, aioredis.Redis]
) -> None:
    """Cluster: a send's sender event and a transition's, whose second script never ran (the
    courier died between the two slots), reach the sender's stream by the next sweep, once,
    in chain order; the marks are then settled and the counts expire with the letter."""
    key = Ed25519PrivateKey.generate()
    store, crashing = Store.from_url(cluster.url), CrashingStore.from_url(cluster.url)
    assert isinstance(crashing, CrashingStore)
    try:
        courier = Courier(store, key, open_registration=True, retention=timedelta(days=1))
        dying = Courier(crashing, key, open_registration=True, retention=timedelta(days=1))
        director, quds = PartyKeys.generate(cast.director), PartyKeys.generate(cast.quds)
        for keys in (director, quds):
            await courier.register(RegisterRequest(**keys.public().model_dump()))
        # A send is two scripts: the sender's slot, then the recipient's. The sender's own event
        # is left to the sweeper, so what a crash after the second leaves is the ordinary case.
        letter = _sealed_for(director, quds, "the courier dies between the slots")
        letter_id = letter.envelope.id
        await courier.send(SignedBy(director.name, new_letter_id()), letter)
        assert await _stream_states(store, quds.name) == [(letter_id, "accepted")]
        assert await _stream_states(store, director.name) == []
        # A transition whose sender half never runs: withdrawn, in the recipient's slot only.
        with pytest.raises(asyncio.CancelledError):
            await dying.withdraw(director.name, letter_id)
        assert await _stream_states(store, director.name) == []
        assert await store.pending_fanout(quds.name, 10) == [letter_id]
        await courier.sweep()
        expected = [(letter_id, "accepted"), (letter_id, "withdrawn")]
        assert await _stream_states(store, director.name) == expected
        assert await store.pending_fanout(quds.name, 10) == []
        await courier.sweep()  # nothing is copied twice
        assert await _stream_states(store, director.name) == expected
        sender = masters[cluster.owner_of_party(director.name).port]
        (fanned,) = [k async for k in sender.scan_iter(match=f"*:fanned:{letter_id}")]
        assert 0 < await sender.pttl(fanned) <= 24 * 3600 * 1000  # settled: it goes with the letter
        status = await courier.status(director.name, letter_id)
        assert _events(status.receipts) == [State.ACCEPTED, State.WITHDRAWN]
    finally:
        await store.close()
        await crashing.close()


async def test_a_crash_after_the_senders_cluster_script_leaves_only_a_skipped_entry(
    cluster: LocalCluster, cast: Cast, masters: dict[int, aioredis.Redis]
) -> None:
    """Cluster: a send that died after the sender's script (before the letter existed) leaves an
    outbox entry that listings skip; the client's retry (a new nonce) completes the send."""
    store = Store.from_url(cluster.url)
    try:
        courier = Courier(store, Ed25519PrivateKey.generate(), open_registration=True)
        director, quds = PartyKeys.generate(cast.director), PartyKeys.generate(cast.quds)
        for keys in (director, quds):
            await courier.register(RegisterRequest(**keys.public().model_dump()))
        letter = _sealed_for(director, quds, "the courier dies after the sender's slot")
        env = letter.envelope
        names = [f"bc:{{{director.name}}}:{suffix}" for suffix in ("sent", "outbox")]
        names += [f"bc:{{{director.name}}}:letter:{env.id}", f"bc:{{{director.name}}}:nonce:n1"]
        names += [f"bc:{{{director.name}}}:bucket"]
        filed = await store._run("reserve_outbox", names, [env.id, quds.name, 1, 120_000, 0, 0, 0])
        assert filed == [b"new"]
        assert await courier.outbox(director.name, 10) == []
        receipt, created = await courier.send(SignedBy(director.name, new_letter_id()), letter)
        assert created
        assert [s.id for s in await courier.outbox(director.name, 10)] == [env.id]
        assert (await courier.status(quds.name, env.id)).receipts == [receipt]
    finally:
        await store.close()


# --- races -------------------------------------------------------------------------------------


def _moves(parties: Parties, sealed: SealedLetter) -> list[tuple[State, Awaitable[Any]]]:
    env = sealed.envelope
    d, q = parties.director, parties.quds
    me = identity(q.a)
    opened = sign_decision(me, decision_for(State.OPENED, env))
    returned = sign_decision(me, decision_for(State.RETURNED_UNOPENED, env, "no"))
    return [
        (State.OPENED, q.a.open(env.id, opened)),
        (State.RETURNED_UNOPENED, q.b.return_unopened(env.id, returned, "no")),
        (State.WITHDRAWN, d.a.withdraw(env.id)),
        (State.OPENED, q.b.open(env.id, opened)),
        (State.RETURNED_UNOPENED, q.a.return_unopened(env.id, returned, "no")),
        (State.WITHDRAWN, d.b.withdraw(env.id)),
    ]


async def test_open_return_withdraw_race_across_replicas(
    parties: Parties, courier_key: Ed25519PrivateKey
) -> None:
    """Six clients on two replicas race open/return/withdraw: one wins each round, chain intact."""
    winners: Counter[State] = Counter()
    d, q = parties.director, parties.quds
    for round_no in range(ROUNDS):
        sealed, _ = await (d.a if round_no % 2 else d.b).send_letter(q.name, f"round {round_no}")
        if round_no % 2:
            await q.b.inbox()  # half the rounds start delivered, half accepted
        moves = _moves(parties, sealed)
        results = await asyncio.gather(*(call for _, call in moves), return_exceptions=True)
        won = [e for (e, _), r in zip(moves, results, strict=True) if not isinstance(r, Exception)]
        assert len(won) == 1, (round_no, results)
        for result in results:
            if isinstance(result, Exception):
                assert isinstance(result, InvalidTransition), result
        status = await d.a.status(sealed.envelope.id)
        assert [r.event for r in status.receipts if r.event in TERMINAL] == won
        check_chain(status.receipts, sealed, courier_key, q.a)
        winners[won[0]] += 1
    assert sum(winners.values()) == ROUNDS


async def test_identical_sends_across_replicas_store_one_letter(parties: Parties) -> None:
    """The same sealed letter sent four times at once through both replicas: one letter."""
    d, q = parties.director, parties.quds
    for round_no in range(ROUNDS // 4):
        sealed = await d.a.seal(q.name, f"round {round_no}")
        receipts = await asyncio.gather(
            d.a.send(sealed), d.b.send(sealed), d.a.send(sealed), d.b.send(sealed)
        )
        assert all(r == receipts[0] for r in receipts)
        assert (await q.a.status(sealed.envelope.id)).receipts == [receipts[0]]
    assert len(await q.b.inbox()) == ROUNDS // 4
    assert len(await d.b.outbox()) == ROUNDS // 4


async def test_letter_id_conflicts_across_masters(
    parties: Parties, masters: dict[int, aioredis.Redis]
) -> None:
    """A reused id is refused on every master, changing nothing; of racing sends, one wins."""
    d, q, e = parties.director, parties.quds, parties.envoy
    sealed, receipt = await d.a.send_letter(q.name, "the original")
    letter_id = sealed.envelope.id
    before = {port: nonce_free(await store_snapshot(c)) for port, c in masters.items()}
    for sender, to in ((d.b, q.name), (d.a, e.name), (e.b, q.name)):
        other = await sender.seal(to, "a different letter", letter_id=letter_id)
        with pytest.raises(LetterIdConflict):
            await sender.send(other)
    after = {port: nonce_free(await store_snapshot(c)) for port, c in masters.items()}
    # Only the rate limiter's buckets may differ.
    assert _without_buckets(after) == _without_buckets(before)
    assert (await d.b.status(letter_id)).receipts == [receipt]

    for _ in range(ROUNDS // 2):
        letter_id = new_letter_id()
        letters = [
            await d.a.seal(to, f"version {n}", letter_id=letter_id)
            for n, to in enumerate((q.name, e.name, q.name, e.name))
        ]
        clients = (d.a, d.b)
        results = await asyncio.gather(
            *(clients[n % 2].send(x) for n, x in enumerate(letters)), return_exceptions=True
        )
        accepted = [r for r in results if isinstance(r, Receipt)]
        assert len(accepted) == 1, results
        assert all(isinstance(r, LetterIdConflict) for r in results if r not in accepted)
        assert (await d.b.status(letter_id)).receipts == accepted


def _without_buckets(snapshots: dict[int, dict[bytes, object]]) -> dict[int, dict[bytes, object]]:
    return {
        port: {k: v for k, v in snapshot.items() if not k.endswith(b":bucket")}
        for port, snapshot in snapshots.items()
    }


# --- no plaintext anywhere ---------------------------------------------------------------------


async def test_plaintext_reaches_no_master(
    parties: Parties, masters: dict[int, aioredis.Redis]
) -> None:
    """After sends, an open and a return across masters, no master holds a subject or body."""
    d, q, e = parties.director, parties.quds, parties.envoy
    letters = []
    for (subject, body), (sender, to) in zip(
        SECRETS, ((d.a, q.name), (e.b, q.name), (q.a, d.name)), strict=True
    ):
        sealed, _ = await sender.send_letter(to, body, subject=subject)
        letters.append(sealed)
    content, _ = await q.b.open_letter(letters[0].envelope.id)
    assert content.content.body == SECRETS[0][1]
    await q.a.return_letter(letters[1].envelope.id, reason="Not accepted")
    blobs = [blob for client in masters.values() for blob in await store_blobs(client)]
    assert any(letters[2].ciphertext == blob for blob in blobs)  # the scan does see letter data
    for subject, body in SECRETS:
        for needle in plaintext_needles(subject) + plaintext_needles(body):
            assert not any(needle in blob for blob in blobs), needle


# --- one master dies ---------------------------------------------------------------------------


@dataclass
class Outcome:
    sealed: SealedLetter
    sender: Party
    receipt: Receipt | None = None
    error: Exception | None = None
    seconds: float = 0.0


async def _send(sender: Party, client: Client, sealed: SealedLetter) -> Outcome:
    started = time.monotonic()
    try:
        receipt = await client.send(sealed)
    except Exception as exc:  # recorded and checked by the caller
        return Outcome(sealed, sender, error=exc, seconds=time.monotonic() - started)
    return Outcome(sealed, sender, receipt=receipt, seconds=time.monotonic() - started)


async def test_a_killed_master_loses_no_accepted_letter(
    cluster: LocalCluster,
    start_replica: CourierFactory,
    connect: Connect,
    cast: Cast,
    masters: dict[int, aioredis.Redis],
    http: aiohttp.ClientSession,
) -> None:
    """SIGKILL a master mid-run: fast 503s for its party only, no acknowledged letter lost."""
    urls = (await start_replica(), await start_replica())
    d = await _join(urls, connect, cast.director)
    q = await _join(urls, connect, cast.quds)
    e = await _join(urls, connect, cast.envoy)
    victim: Node = cluster.owner_of_party(q.name)
    assert cluster.owner_of_party(d.name) is not victim
    assert cluster.owner_of_party(e.name) is not victim
    routes = [(d, q), (q, d), (d, e), (e, d), (e, q), (q, e)]
    sealed = {
        (s.name, r.name): [await s.a.seal(r.name, f"letter {n}") for n in range(40)]
        for s, r in routes
    }

    warmed_up, killed = asyncio.Event(), asyncio.Event()
    outcomes: list[Outcome] = []

    async def traffic(sender: Party, recipient: Party) -> None:
        for n, letter in enumerate(sealed[(sender.name, recipient.name)]):
            client = sender.a if n % 2 else sender.b
            outcomes.append(await _send(sender, client, letter))
            if sum(o.receipt is not None for o in outcomes) >= 30:
                warmed_up.set()
            if killed.is_set() and n % 10 == 9:
                return

    async def kill_soon() -> None:
        await warmed_up.wait()
        victim.kill()  # SIGKILL, with sends in flight on every route
        killed.set()

    await asyncio.gather(kill_soon(), *(traffic(s, r) for s, r in routes))
    assert killed.is_set()

    # While it is down: a clear 503 for letters to or from the victim's party, fast ...
    to_victim = await d.a.seal(q.name, "during the outage")
    reply = await signed_call(
        http,
        identity(d.a),
        "POST",
        f"{d.a.base_url}/v1/letters",
        to_victim.model_dump_json(exclude_none=True).encode(),
    )
    problem = assert_problem(reply, 503, "store_unavailable")
    assert reply.headers["Retry-After"] == "1"
    assert "the store failed" in problem["detail"]
    started = time.monotonic()
    with pytest.raises(StoreUnavailable):
        await q.b.send_letter(e.name, "from the dead master")
    assert time.monotonic() - started < 5
    # ... while the parties on the surviving masters carry on, through both replicas,
    # ... also with letters from the victim's party: opening one releases its ciphertext once,
    # so it must reach the recipient although the sender's live events must wait for the restart.
    from_victim = next(o for o in outcomes if o.sender is q and o.receipt is not None)
    assert from_victim.sealed.envelope.recipient in (d.name, e.name)
    opener = d if from_victim.sealed.envelope.recipient == d.name else e
    content, opened = await opener.a.open_letter(from_victim.sealed.envelope.id)
    assert content.content.body == "letter 0"
    assert _events(opened.receipts)[-1] is State.OPENED
    alive, _ = await e.b.send_letter(d.name, "still working")
    assert (await d.a.inbox(limit=500))[0].id == alive.envelope.id
    content, _ = await d.b.open_letter(alive.envelope.id)
    assert content.content.body == "still working"
    # ... and the couriers stay ready: the other masters answer.
    async with http.get(f"{urls[0]}/readyz") as ready:
        assert ready.status == 200

    failed = [o for o in outcomes if o.error is not None]
    acknowledged = [o for o in outcomes if o.receipt is not None]
    assert failed, "the kill should have failed some sends"
    for outcome in failed:
        assert isinstance(outcome.error, StoreUnavailable), outcome.error
        assert outcome.error.status == 503
        assert outcome.seconds < 5  # never a hang (the client gives up after 30 s)
        pair = (outcome.sender.name, outcome.sealed.envelope.recipient)
        assert q.name in pair  # only letters to or from the victim's party failed
    for outcome in outcomes:
        if q.name not in (outcome.sender.name, outcome.sealed.envelope.recipient):
            assert outcome.receipt is not None, outcome.error

    # Restart it on the same port and data dir (its AOF), wait for a healthy cluster.
    victim.start()
    cluster.wait_healthy()

    # Every acknowledged letter is there, with the receipt its sender got.
    for outcome in acknowledged:
        status = await outcome.sender.b.status(outcome.sealed.envelope.id)
        assert status.receipts[0] == outcome.receipt
        assert status.envelope == outcome.sealed.envelope
    inbox = {s.id for s in await q.a.inbox(limit=500)}
    to_quds = {o.sealed.envelope.id for o in acknowledged if o.sealed.envelope.recipient == q.name}
    assert to_quds <= inbox
    # Outbox entries filed before a failed create are skipped by readers ...
    d_sent = {s.id for s in await d.a.outbox(limit=500)}
    d_acknowledged = {o.sealed.envelope.id for o in acknowledged if o.sender is d}
    assert d_sent <= d_acknowledged | {o.sealed.envelope.id for o in failed if o.sender is d}
    assert d_acknowledged <= d_sent
    # ... and resending each failed letter completes it: accepted once, listed once.
    for outcome in [*failed, Outcome(to_victim, d)]:
        receipt = await outcome.sender.a.send(outcome.sealed)
        assert receipt.event is State.ACCEPTED
        status = await outcome.sender.b.status(outcome.sealed.envelope.id)
        assert status.receipts[0] == receipt  # a create that did commit may be listed since
        assert _events(status.receipts).count(State.ACCEPTED) == 1
    for party in (d, q, e):
        out = [s.id for s in await party.b.outbox(limit=500)]
        assert len(out) == len(set(out))
        sent_by = [o for o in outcomes if o.sender is party]
        assert set(out) >= {o.sealed.envelope.id for o in sent_by}
        inbox_ids = [s.id for s in await party.a.inbox(limit=500)]
        assert len(inbox_ids) == len(set(inbox_ids))
    # The victim's party works again, through both replicas.
    back, _ = await q.a.send_letter(d.name, "back again")
    assert back.envelope.id in {s.id for s in await d.b.inbox(limit=500)}


# --- live events across replicas ---------------------------------------------------------------


async def _next(stream: AsyncIterator[LiveEvent], seconds: float = 5.0) -> LiveEvent:
    return await asyncio.wait_for(anext(stream), seconds)


async def test_live_events_cross_replicas_and_resume_once(parties: Parties) -> None:
    """A send through replica A reaches a watcher on B; resuming gets missed events exactly once."""
    d, q = parties.director, parties.quds
    first, _ = await d.a.send_letter(q.name, "before watching")
    stream = q.b.events("0-0")
    try:
        seen = await _next(stream)
        assert (seen.kind, seen.letter_id) == ("letter", first.envelope.id)
        live, _ = await d.a.send_letter(q.name, "while watching")  # through the other replica
        seen = await _next(stream)
        assert (seen.kind, seen.letter_id, seen.state) == (
            "letter",
            live.envelope.id,
            State.ACCEPTED,
        )
        last_id = seen.id
    finally:
        await stream.aclose()

    missed, _ = await d.b.send_letter(q.name, "while away")
    await d.a.withdraw(live.envelope.id)
    resumed = q.a.events(last_id)
    try:
        got = [await _next(resumed), await _next(resumed)]
        assert [(x.kind, x.letter_id, x.state) for x in got] == [
            ("letter", missed.envelope.id, State.ACCEPTED),
            ("receipt", live.envelope.id, State.WITHDRAWN),
        ]
        assert len({last_id, *(x.id for x in got)}) == 3
        with pytest.raises(TimeoutError):
            await _next(resumed, 1.0)  # nothing else: no event twice
    finally:
        await resumed.aclose()
    # The sender's stream (its own master) got the receipts of its letters too.
    mine = d.b.events("0-0")
    try:
        states = [(x.letter_id, x.state) for x in [await _next(mine) for _ in range(4)]]
    finally:
        await mine.aclose()
    assert (live.envelope.id, State.WITHDRAWN) in states
