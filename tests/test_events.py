"""Live events: per-party Server-Sent Events from capped Redis streams, across replicas."""

from __future__ import annotations

import asyncio
import json
from contextlib import aclosing
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from click.testing import CliRunner
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from channel.cli import cli
from channel.courier.embedded import EmbeddedRedis
from channel.courier.server.app import create_app
from channel.courier.service import Courier
from channel.courier.settings import Settings
from channel.courier.store import EVENTS_MAXLEN, Store
from channel.party.client import Client
from channel.protocol.lifecycle import State
from channel.protocol.models import LiveEvent
from channel.protocol.seal import PartyKeys
from tests.conftest import (
    Connect,
    CourierFactory,
    PartyFactory,
    assert_problem,
    free_port,
    identity,
    raw_call,
    signed_headers,
)

DIRECTOR, QUDS = "us.cia.director", "ir.irgc.quds"
WAIT = 10.0


async def take(client: Client, count: int, after: str | None = None) -> list[LiveEvent]:
    """The next `count` events for `client` (via watch, which reconnects by itself)."""
    taken: list[LiveEvent] = []
    async with aclosing(client.watch(after)) as events:
        async for event in events:
            taken.append(event)
            if len(taken) == count:
                break
    return taken


def states(events: list[LiveEvent]) -> list[tuple[str, State]]:
    return [(e.kind, e.state) for e in events]


async def two_replicas(start_courier: CourierFactory) -> tuple[str, str]:
    return await start_courier(), await start_courier()


async def test_letter_sent_through_one_replica_reaches_a_watcher_on_another(
    start_courier: CourierFactory, connect: Connect, party: PartyFactory
) -> None:
    """Recipient and sender, watching on replica B, see a letter sent and opened via replica A."""
    a, b = await two_replicas(start_courier)
    director, quds = await party(DIRECTOR), await party(QUDS)
    on_a = connect(a, identity(director))
    quds_on_b, director_on_b = connect(b, identity(quds)), connect(b, identity(director))
    recipient_sees = asyncio.create_task(take(quds_on_b, 3))
    sender_sees = asyncio.create_task(take(director_on_b, 3))
    await asyncio.sleep(0.3)  # both streams are open before anything happens
    sealed, _ = await on_a.send_letter(QUDS, "Nothing in this body may leave the ciphertext.")
    await connect(a, identity(quds)).open_letter(sealed.envelope.id)
    recipient, sender = await asyncio.wait_for(asyncio.gather(recipient_sees, sender_sees), WAIT)
    assert states(recipient) == [
        ("letter", State.ACCEPTED),
        ("receipt", State.DELIVERED),
        ("receipt", State.OPENED),
    ]
    assert states(sender) == [
        ("receipt", State.ACCEPTED),
        ("receipt", State.DELIVERED),
        ("receipt", State.OPENED),
    ]
    assert {e.letter_id for e in recipient + sender} == {sealed.envelope.id}
    for event in recipient + sender:
        assert "ciphertext" not in event.model_dump_json()
        assert "Nothing in this body" not in event.model_dump_json()


async def test_reconnecting_with_last_event_id_gets_everything_since_exactly_once(
    director: Client, quds: Client
) -> None:
    """Events missed while disconnected arrive on reconnect, in order, none twice."""
    first, _ = await director.send_letter(QUDS, "one")
    (seen,) = await take(quds, 1, after="0-0")
    assert (seen.kind, seen.letter_id) == ("letter", first.envelope.id)
    # Disconnected: three more events happen.
    second, _ = await director.send_letter(QUDS, "two")
    await quds.return_letter(first.envelope.id, reason="no")
    missed = await take(quds, 3, after=seen.id)
    assert [(e.letter_id, e.state) for e in missed] == [
        (second.envelope.id, State.ACCEPTED),
        (first.envelope.id, State.DELIVERED),
        (first.envelope.id, State.RETURNED_UNOPENED),
    ]
    ids = [seen.id, *(e.id for e in missed)]
    assert len(set(ids)) == len(ids)
    assert ids == sorted(ids, key=lambda i: tuple(map(int, str(i).split("-"))))


async def test_a_party_only_ever_receives_its_own_events(
    director: Client, quds: Client, party: PartyFactory
) -> None:
    """A third party's stream stays empty while two others exchange letters."""
    svr = await party("ru.svr.director")
    watched: list[LiveEvent] = []

    async def watch_svr() -> None:
        async with aclosing(svr.watch()) as events:
            async for event in events:
                watched.append(event)

    watcher = asyncio.create_task(watch_svr())
    await asyncio.sleep(0.3)
    sealed, _ = await director.send_letter(QUDS, "between two parties")
    await quds.open_letter(sealed.envelope.id)
    await take(director, 3, after="0-0")  # everything has been fanned out by now
    await asyncio.sleep(0.3)
    watcher.cancel()
    with pytest.raises(asyncio.CancelledError):
        await watcher
    assert watched == []


async def test_stream_requests_are_authenticated_like_any_other(
    quds: Client, http: aiohttp.ClientSession
) -> None:
    """Unsigned, replayed and malformed-cursor stream requests get 4xx problems."""
    url = f"{quds.base_url}/v1/events"
    assert_problem(await raw_call(http, "GET", url), 401, "unauthenticated")
    headers = signed_headers(identity(quds), "GET", url)
    bad_cursor = headers | {"Last-Event-ID": "yesterday"}
    assert_problem(await raw_call(http, "GET", url, b"", bad_cursor), 400, "bad_request")
    assert_problem(await raw_call(http, "GET", url, b"", headers), 401, "replayed")


async def test_shutdown_sends_a_retry_hint_and_watchers_move_to_another_replica(
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    courier_key: Ed25519PrivateKey,
    tmp_path: Path,
    start_courier: CourierFactory,
    party: PartyFactory,
    connect: Connect,
) -> None:
    """A courier going down ends its streams with a retry hint; watch() carries on elsewhere."""
    survivor = await start_courier()
    doomed = web.AppRunner(
        create_app(
            Settings(open_registration=True, data_dir=tmp_path), redis_server.url, courier_key
        )
    )
    await doomed.setup()
    await web.TCPSite(doomed, "127.0.0.1", 0).start()
    doomed_url = f"http://127.0.0.1:{doomed.addresses[0][1]}"
    director, quds = await party(DIRECTOR), await party(QUDS)
    url = f"{doomed_url}/v1/events"
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=signed_headers(identity(quds), "GET", url)) as reply,
    ):
        assert reply.status == 200
        reading = asyncio.create_task(reply.read())
        await asyncio.sleep(0.2)
        await doomed.cleanup()
        raw = (await asyncio.wait_for(reading, WAIT)).decode()
    assert "event: shutdown" in raw
    assert "retry: 1000" in raw
    # The same watcher, resumed against the surviving replica, misses nothing.
    sealed, _ = await director.send_letter(QUDS, "after the shutdown")
    (event,) = await take(connect(survivor, identity(quds)), 1, after="0-0")
    assert event.letter_id == sealed.envelope.id


async def test_watch_cli_prints_events_as_json_lines(
    courier_url: str, tmp_path: Path, director: Client
) -> None:
    """`channel watch --json --count 2` prints the party's next events, one JSON per line."""
    runner = CliRunner()
    home = tmp_path / "home"
    base = ["--server", courier_url, "--home", str(home)]
    for command in (["keys", "new", QUDS], ["register", QUDS]):
        made = await asyncio.to_thread(runner.invoke, cli, [*base, *command])
        assert made.exit_code == 0, made.output
    args = [*base, "watch", "--as", QUDS, "--json", "--count", "2", "--after", "0-0"]
    watching = asyncio.create_task(asyncio.to_thread(runner.invoke, cli, args))
    sealed, _ = await director.send_letter(QUDS, "watched from the command line")
    await director.withdraw_letter(sealed.envelope.id)
    result = await asyncio.wait_for(watching, WAIT)
    assert result.exit_code == 0, result.output
    # The in-process courier's log lines share the captured stdout; the events are the JSON ones.
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [(e["kind"], e["state"]) for e in lines] == [
        ("letter", "accepted"),
        ("receipt", "withdrawn"),
    ]
    assert all(e["letter_id"] == sealed.envelope.id and e["id"] for e in lines)


async def test_a_client_behind_the_capped_stream_is_told_to_resync(
    quds: Client, director: Client, redis: aioredis.Redis
) -> None:
    """Events trimmed before a client caught up are announced (on_gap), then the rest flow."""
    sealed, _ = await director.send_letter(QUDS, "first")
    (first,) = await take(quds, 1, after="0-0")
    stream = f"bc:{{{QUDS}}}:events"
    template = (await redis.xrange(stream))[0][1]  # type: ignore[index]
    pipe = redis.pipeline(transaction=False)
    for _ in range(EVENTS_MAXLEN + 500):
        pipe.xadd(stream, template, maxlen=EVENTS_MAXLEN, approximate=True)  # type: ignore[arg-type,unused-awaitable]
    await pipe.execute()
    gaps: list[bool] = []
    async with aclosing(quds.events("0-1", on_gap=lambda: gaps.append(True))) as events:
        async for event in events:
            assert event.letter_id == sealed.envelope.id
            break
    assert gaps == [True]
    assert first.id is not None


async def test_watch_reconnects_by_itself_when_its_courier_restarts(
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    courier_key: Ed25519PrivateKey,
    tmp_path: Path,
    director: Client,
    connect: Connect,
) -> None:
    """One watch() keeps going across a courier restart and misses nothing sent meanwhile."""
    port = free_port()
    settings = Settings(open_registration=True, data_dir=tmp_path, port=port)

    async def start() -> web.AppRunner:
        runner = web.AppRunner(create_app(settings, redis_server.url, courier_key))
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    courier = await start()
    quds = connect(f"http://127.0.0.1:{port}", PartyKeys.generate(QUDS))
    await quds.register()
    watching = asyncio.create_task(take(quds, 3))
    await asyncio.sleep(0.3)
    first, _ = await director.send_letter(QUDS, "before the restart")
    await asyncio.sleep(0.3)
    await courier.cleanup()
    during, _ = await director.send_letter(QUDS, "while it is down")
    courier = await start()
    after, _ = await director.send_letter(QUDS, "after the restart")
    try:
        events = await asyncio.wait_for(watching, WAIT)
    finally:
        await courier.cleanup()
    assert [e.letter_id for e in events] == [
        first.envelope.id,
        during.envelope.id,
        after.envelope.id,
    ]


async def test_two_replicas_sweeping_at_once_expire_each_letter_exactly_once(
    director: Client, quds: Client, redis_server: EmbeddedRedis, courier_key: Ed25519PrivateKey
) -> None:
    """Concurrent sweepers on two replicas: one `expired` receipt and one event per letter."""
    letters = [
        await director.seal(QUDS, f"deadline {n}", expires_in=timedelta(seconds=1))
        for n in range(10)
    ]
    for letter in letters:
        await director.send(letter)
    await asyncio.sleep(1.1)
    stores = [Store.from_url(redis_server.url) for _ in range(2)]
    try:
        sweepers = [Courier(store, courier_key) for store in stores]
        expired = await asyncio.gather(*(s.sweep() for s in sweepers for _ in range(3)))
        assert sum(expired) == len(letters)
    finally:
        for store in stores:
            await store.close()
    for letter in letters:
        status = await director.verified_status(letter.envelope.id)
        assert [r.event for r in status.receipts] == [State.ACCEPTED, State.EXPIRED]
    sender_events = await take(director, 2 * len(letters), after="0-0")
    expired_events = [e.letter_id for e in sender_events if e.state is State.EXPIRED]
    assert sorted(expired_events) == sorted(letter.envelope.id for letter in letters)


async def test_a_reused_letter_id_gets_its_own_sender_events(
    redis: aioredis.Redis, redis_server: EmbeddedRedis
) -> None:
    """Fan-out counts per envelope digest: a later letter under an old id starts from zero."""
    store = Store.from_url(redis_server.url)
    try:
        letter_id, old, new = "5" * 26, "aa" * 32, "bb" * 32
        assert await store.fan_out(DIRECTOR, letter_id, old, [b'{"n":0}', b'{"n":1}']) == 2
        assert await store.fan_out(DIRECTOR, letter_id, old, [b'{"n":0}', b'{"n":1}']) == 0
        assert await store.fan_out(DIRECTOR, letter_id, new, [b'{"n":"new"}']) == 1
        events = await store.events_after(DIRECTOR, "0-0")
        assert [data for _, data in events] == [b'{"n":0}', b'{"n":1}', b'{"n":"new"}']
    finally:
        await store.close()
