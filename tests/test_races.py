"""Races between parties on two courier instances sharing one Redis: one winner, every time."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

import pytest
import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from channel.courier.embedded import EmbeddedRedis
from channel.courier.service import Courier
from channel.courier.store import Store
from channel.party.client import Client
from channel.protocol.canonical import now_utc
from channel.protocol.errors import (
    ChannelError,
    InvalidTransition,
    LetterIdConflict,
    NameTaken,
)
from channel.protocol.httpsig import SignedBy
from channel.protocol.lifecycle import TERMINAL, State
from channel.protocol.models import LetterStatus, RegisterRequest, SealedLetter
from channel.protocol.names import new_letter_id
from channel.protocol.seal import (
    PartyKeys,
    decision_for,
    raw_public,
    seal_letter,
    sign_decision,
    verify_chain,
)
from tests.conftest import Connect, CourierFactory, PartyFactory, check_chain, identity

ROUNDS = 30
RARE_ROUNDS = 100  # for an interleaving only a few rounds produce (~5% each)
QUDS = "ir.irgc.quds"
DIRECTOR = "us.cia.director"


@dataclass
class Side:
    """One party reachable through both courier instances."""

    one: Client
    two: Client


@dataclass
class Pair:
    director: Side
    quds: Side


async def _pair(urls: tuple[str, str], connect: Connect) -> Pair:
    sides = []
    for name in (DIRECTOR, QUDS):
        keys = PartyKeys.generate(name)
        one, two = connect(urls[0], keys), connect(urls[1], keys)
        await one.register()
        sides.append(Side(one, two))
    return Pair(*sides)


@pytest.fixture(autouse=True)
def no_rate_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    """The races are under test, not the rate limit: these bursts are far over a party's limit."""
    monkeypatch.setenv("CHANNEL_RATE_LIMIT_PER_SECOND", "0")


@pytest.fixture
async def pair(start_courier: CourierFactory, connect: Connect) -> Pair:
    """Director and commander, each with a client on each of two couriers."""
    return await _pair((await start_courier(), await start_courier()), connect)


def _moves(pair: Pair, sealed: SealedLetter) -> list[tuple[State, Awaitable[Any]]]:
    """Every terminal move both parties can try, through both couriers."""
    env = sealed.envelope
    me = identity(pair.quds.one)
    opened = sign_decision(me, decision_for(State.OPENED, env))
    returned = sign_decision(me, decision_for(State.RETURNED_UNOPENED, env, "no"))
    return [
        (State.OPENED, pair.quds.one.open(env.id, opened)),
        (State.RETURNED_UNOPENED, pair.quds.two.return_unopened(env.id, returned, "no")),
        (State.WITHDRAWN, pair.director.one.withdraw(env.id)),
        (State.OPENED, pair.quds.two.open(env.id, opened)),
        (State.RETURNED_UNOPENED, pair.quds.one.return_unopened(env.id, returned, "no")),
        (State.WITHDRAWN, pair.director.two.withdraw(env.id)),
    ]


async def _race(pair: Pair, sealed: SealedLetter) -> tuple[list[State], list[BaseException]]:
    moves = _moves(pair, sealed)
    results = await asyncio.gather(*(call for _, call in moves), return_exceptions=True)
    won = [
        event
        for (event, _), result in zip(moves, results, strict=True)
        if not isinstance(result, BaseException)
    ]
    lost = [result for result in results if isinstance(result, BaseException)]
    return won, lost


async def test_open_return_withdraw_race_has_one_winner(
    pair: Pair, courier_key: Ed25519PrivateKey
) -> None:
    """Each round one of open/return/withdraw wins, the rest get 409: one terminal receipt."""
    winners: Counter[State] = Counter()
    for round_no in range(ROUNDS):
        sealed, _ = await pair.director.one.send_letter(QUDS, f"round {round_no}")
        if round_no % 2:
            await pair.quds.two.inbox()  # half the rounds start delivered, half accepted
        won, lost = await _race(pair, sealed)
        assert len(won) == 1, (round_no, won, lost)
        for error in lost:
            assert isinstance(error, InvalidTransition), error
            assert error.status == 409
        status = await pair.director.two.status(sealed.envelope.id)
        terminal = [r for r in status.receipts if r.event in TERMINAL]
        assert [r.event for r in terminal] == won
        assert status.state is won[0]
        assert [r.event for r in status.receipts[:2]] == [
            State.ACCEPTED,
            State.DELIVERED,
        ] or won == [State.WITHDRAWN]
        check_chain(status.receipts, sealed, courier_key, pair.quds.one)
        winners[won[0]] += 1
    assert sum(winners.values()) == ROUNDS


async def test_race_with_expiry_has_one_terminal_receipt(
    start_courier: CourierFactory, connect: Connect, courier_key: Ed25519PrivateKey
) -> None:
    """Moves racing each other and two sweepers around the deadline end in one terminal receipt."""
    urls = (await start_courier(sweep_interval=0.05), await start_courier(sweep_interval=0.05))
    pair = await _pair(urls, connect)
    letters = [
        await pair.director.one.seal(QUDS, f"letter {n}", expires_in=timedelta(seconds=1))
        for n in range(ROUNDS)
    ]
    for letter in letters:
        await pair.director.two.send(letter)
    outcomes: Counter[str] = Counter()
    for (
        letter
    ) in letters:  # the rounds straddle the deadline: early ones race moves, late ones expiry
        won, lost = await _race(pair, letter)
        assert len(won) <= 1, won
        for error in lost:
            assert isinstance(error, InvalidTransition), error
            assert error.status == 409
        status = await pair.quds.two.status(letter.envelope.id)
        terminal = [r.event for r in status.receipts if r.event in TERMINAL]
        assert terminal == (won or [State.EXPIRED])
        check_chain(status.receipts, letter, courier_key, pair.quds.one)
        outcomes[terminal[0].value] += 1
        await asyncio.sleep(0.05)
    assert sum(outcomes.values()) == ROUNDS


async def test_concurrent_inbox_listings_deliver_once(pair: Pair) -> None:
    """Listings at once, through both couriers, record exactly one `delivered` per letter."""
    for round_no in range(ROUNDS // 3):
        sealed, _ = await pair.director.one.send_letter(QUDS, f"round {round_no}")
        listings = await asyncio.gather(
            pair.quds.one.inbox(),
            pair.quds.two.inbox(),
            pair.quds.one.inbox(),
            pair.quds.two.inbox(),
        )
        for listing in listings:
            assert listing[0].id == sealed.envelope.id
            assert listing[0].state is State.DELIVERED
        status = await pair.director.one.status(sealed.envelope.id)
        assert [r.event for r in status.receipts] == [State.ACCEPTED, State.DELIVERED]


async def test_concurrent_identical_sends_store_one_letter(
    pair: Pair, redis: aioredis.Redis
) -> None:
    """The same sealed letter sent at once through both couriers is accepted once, same receipt."""
    for round_no in range(ROUNDS // 3):
        sealed = await pair.director.one.seal(QUDS, f"round {round_no}")
        receipts = await asyncio.gather(
            pair.director.one.send(sealed),
            pair.director.two.send(sealed),
            pair.director.one.send(sealed),
            pair.director.two.send(sealed),
        )
        assert all(r == receipts[0] for r in receipts)
        status = await pair.quds.one.status(sealed.envelope.id)
        assert status.receipts == [receipts[0]]
    assert len(await pair.quds.two.inbox()) == ROUNDS // 3
    assert len(await pair.director.two.outbox()) == ROUNDS // 3


async def _conflicting_sends(pair: Pair, to: list[str]) -> tuple[list[SealedLetter], list[Any]]:
    letter_id = new_letter_id()
    letters = [
        await pair.director.one.seal(name, f"version {n}", letter_id=letter_id)
        for n, name in enumerate(to)
    ]
    clients = [pair.director.one, pair.director.two]
    results = await asyncio.gather(
        *(clients[n % 2].send(letter) for n, letter in enumerate(letters)), return_exceptions=True
    )
    return letters, results


async def test_different_letters_under_one_id_to_different_recipients(
    pair: Pair, party: PartyFactory, connect: Connect
) -> None:
    """Different letters under one id sent at once to two recipients: exactly one is accepted."""
    svr_keys = PartyKeys.generate("ru.svr.director")
    await connect(pair.director.one.base_url, svr_keys).register()
    for _ in range(ROUNDS // 2):
        letters, results = await _conflicting_sends(pair, [QUDS, "ru.svr.director"])
        accepted = [r for r in results if not isinstance(r, BaseException)]
        assert len(accepted) == 1, results
        assert all(isinstance(r, LetterIdConflict) for r in results if isinstance(r, BaseException))
        status = await pair.director.one.status(letters[0].envelope.id)
        assert status.receipts == accepted


async def test_losing_conflicting_send_does_not_hide_the_winner(pair: Pair) -> None:
    """Different letters under one id to one recipient at once: the accepted one stays visible."""
    for _ in range(RARE_ROUNDS):  # the losing interleaving is rare per round; stop at the first
        letters, results = await _conflicting_sends(pair, [QUDS] * 6)
        accepted = [r for r in results if not isinstance(r, BaseException)]
        assert len(accepted) == 1, results
        assert all(isinstance(r, LetterIdConflict) for r in results if isinstance(r, BaseException))
        letter_id = letters[0].envelope.id
        status = await pair.director.one.status(
            letter_id
        )  # UnknownLetter when the entry was dropped
        assert status.receipts == accepted
        assert letter_id in [s.id for s in await pair.director.two.outbox()]


async def test_concurrent_registration_of_one_name(
    start_courier: CourierFactory, connect: Connect, client: Client
) -> None:
    """One name registered at once with different keys on two couriers: one wins, the rest 409."""
    urls = (client.base_url, await start_courier())
    for round_no in range(ROUNDS // 3):
        name = f"party-{round_no}"
        keys = [PartyKeys.generate(name) for _ in range(4)]
        results = await asyncio.gather(
            *(connect(urls[n % 2], k).register() for n, k in enumerate(keys)),
            return_exceptions=True,
        )
        won = [n for n, r in enumerate(results) if not isinstance(r, BaseException)]
        assert len(won) == 1, results
        assert all(isinstance(r, NameTaken) for r in results if isinstance(r, BaseException))
        record = await client.party(name)
        assert record.signing_key == keys[won[0]].public().signing_key


async def test_reads_racing_expiry_never_fail(
    start_courier: CourierFactory, connect: Connect
) -> None:
    """Status and inbox reads at once on letters past their deadline succeed and show `expired`."""
    urls = (await start_courier(sweep_interval=3600), await start_courier(sweep_interval=3600))
    pair = await _pair(urls, connect)
    letters = [
        await pair.director.one.seal(QUDS, f"letter {n}", expires_in=timedelta(seconds=1))
        for n in range(ROUNDS // 2)
    ]
    for letter in letters:
        await pair.director.one.send(letter)
    await asyncio.sleep(1.1)
    failures: list[BaseException] = []
    for letter in letters:
        letter_id = letter.envelope.id
        reads = await asyncio.gather(
            pair.director.one.status(letter_id),
            pair.director.two.status(letter_id),
            pair.quds.one.status(letter_id),
            pair.quds.two.inbox(),
            return_exceptions=True,
        )
        failures += [r for r in reads if isinstance(r, BaseException)]
        states = [
            r.state if isinstance(r, LetterStatus) else {s.id: s.state for s in r}[letter_id]
            for r in reads
            if not isinstance(r, BaseException)
        ]
        assert set(states) <= {State.EXPIRED}
    assert failures == [], Counter(
        type(f).__name__ for f in failures if isinstance(f, ChannelError)
    )


async def test_chain_from_couriers_with_slightly_different_clocks_verifies(
    redis_server: EmbeddedRedis, redis: aioredis.Redis, courier_key: Ed25519PrivateKey
) -> None:
    """Receipts issued by two instances whose clocks are 200 ms apart still form a valid chain."""
    ahead = Store.from_url(redis_server.url)
    behind = Store.from_url(redis_server.url)
    try:
        first = Courier(ahead, courier_key, open_registration=True)
        second = Courier(
            behind,
            courier_key,
            open_registration=True,
            clock=lambda: now_utc() - timedelta(milliseconds=200),
        )
        director, quds = PartyKeys.generate(DIRECTOR), PartyKeys.generate(QUDS)
        for keys in (director, quds):
            await first.register(RegisterRequest(**keys.public().model_dump()))
        sealed = seal_letter(
            director,
            quds.public(),
            letter_id=new_letter_id(),
            subject="",
            body="two clocks",
            sent_at=now_utc() - timedelta(seconds=1),
            expires_at=now_utc() + timedelta(days=1),
        )
        await first.send(SignedBy(DIRECTOR, "n" * 32), sealed)
        await second.inbox(QUDS, 10)  # delivered by the instance whose clock is behind
        status = await first.status(DIRECTOR, sealed.envelope.id)
        assert [r.event for r in status.receipts] == [State.ACCEPTED, State.DELIVERED]
        verify_chain(
            status.receipts,
            status.envelope,
            courier_key=raw_public(courier_key),
            recipient_key=quds.public().signing_key,
        )
    finally:
        await ahead.close()
        await behind.close()
