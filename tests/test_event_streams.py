"""Live event streams at scale: caps per party and per courier, and where a stream starts."""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

import aiohttp
import redis.asyncio as aioredis
from multidict import CIMultiDict

from channel.party.client import Client
from channel.protocol.seal import PartyKeys
from tests.conftest import (
    CourierFactory,
    PartyFactory,
    Reply,
    assert_problem,
    identity,
    signed_headers,
)

DIRECTOR, QUDS = "us.cia.director", "ir.irgc.quds"
WAIT = 10.0
_STREAMING = aiohttp.ClientTimeout(total=None, sock_read=60)


async def open_stream(
    stack: AsyncExitStack, session: aiohttp.ClientSession, base: str, keys: PartyKeys
) -> aiohttp.ClientResponse | Reply:
    """An open stream (kept open by `stack`), or the refusal as a Reply."""
    url = f"{base}/v1/events"
    headers = signed_headers(keys, "GET", url)
    reply = await stack.enter_async_context(session.get(url, headers=headers, timeout=_STREAMING))
    if reply.status == 200:
        return reply
    return Reply(reply.status, reply.content_type, CIMultiDict(reply.headers), await reply.read())


def refused(reply: aiohttp.ClientResponse | Reply) -> Reply:
    assert isinstance(reply, Reply)
    assert_problem(reply, 429, "too_many_streams")
    assert reply.headers["Retry-After"] == "10"
    return reply


async def test_one_partys_extra_streams_get_429_while_another_party_is_served(
    start_courier: CourierFactory, party: PartyFactory
) -> None:
    """200 streams from one party: past its cap each gets 429 + Retry-After, and meanwhile
    another party's sends and inbox listings all answer 2xx (no Redis pool is exhausted)."""
    base = await start_courier(rate_limit_per_second=0, event_streams_per_party=16)
    director, quds = await party(DIRECTOR), await party(QUDS)
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector) as session, AsyncExitStack() as stack:
        # 20 at a time: a burst of 200 requests at once is the backpressure tests' business.
        gate = asyncio.Semaphore(20)

        async def one() -> aiohttp.ClientResponse | Reply:
            async with gate:
                return await open_stream(stack, session, base, identity(director))

        replies = await asyncio.gather(*(one() for _ in range(200)))
        opened = [r for r in replies if isinstance(r, aiohttp.ClientResponse)]
        assert len(opened) == 16
        assert len([refused(r) for r in replies if isinstance(r, Reply)]) == 184
        for stream in opened:  # each open stream first says where it starts
            assert await stream.content.readline() == b"id: 0-0\r\n"
        for n in range(30):  # each raises unless answered 2xx
            await quds.send_letter(DIRECTOR, f"still served {n}")
            assert len(await quds.outbox()) == n + 1
        assert len(await director.inbox()) == 30
        for stream in opened:  # and the open streams carry the letters
            text = await asyncio.wait_for(stream.content.readuntil(b"event: event"), WAIT)
            assert text.endswith(b"event: event")


async def test_the_courier_wide_cap_refuses_any_party_past_it(
    start_courier: CourierFactory, party: PartyFactory
) -> None:
    """With max_event_streams=3 a fourth stream gets 429, even from a party under its own cap;
    once a stream closes, its place is free again."""
    base = await start_courier(max_event_streams=3)
    director, quds = await party(DIRECTOR), await party(QUDS)
    async with aiohttp.ClientSession() as session, AsyncExitStack() as stack:
        first = await open_stream(stack, session, base, identity(director))
        assert isinstance(first, aiohttp.ClientResponse)
        for acting in (director, quds):
            assert isinstance(
                await open_stream(stack, session, base, identity(acting)), aiohttp.ClientResponse
            )
        refused(await open_stream(stack, session, base, identity(quds)))
        first.close()
        for _ in range(100):  # the courier notices the closed stream at once, or nearly
            async with AsyncExitStack() as retry:
                again = await open_stream(retry, session, base, identity(quds))
                if isinstance(again, aiohttp.ClientResponse):
                    break
            await asyncio.sleep(0.05)
        else:
            raise AssertionError("the closed stream's place never came free")


async def test_a_watch_started_without_an_id_misses_nothing_sent_while_it_was_away(
    start_courier: CourierFactory, party: PartyFactory
) -> None:
    """A stream opened without Last-Event-ID starts at the stream's position then; watching
    from that position later still delivers a letter sent in between, and nothing older."""
    base = await start_courier()
    director, quds = await party(DIRECTOR), await party(QUDS)
    await director.send_letter(QUDS, "before the watcher connected")
    position = await quds.event_position()
    assert position != "0-0"  # the first letter's event is there: the stream starts after it
    sent, _ = await director.send_letter(QUDS, "while nobody watched")
    async with Client(base, identity(quds)) as watcher:
        watching = watcher.watch(position)
        event = await asyncio.wait_for(anext(watching), WAIT)
        await watching.aclose()
    assert event.letter_id == sent.envelope.id


async def test_a_partys_streams_woken_together_share_one_read(
    start_courier: CourierFactory, party: PartyFactory, redis: aioredis.Redis
) -> None:
    """Ten streams of one party each get all of 20 letters' events, with far fewer event reads
    (XREAD) than one per stream per letter: streams at the same cursor share one read."""
    base = await start_courier(rate_limit_per_second=0)
    director, quds = await party(DIRECTOR), await party(QUDS)
    letters = 20
    async with aiohttp.ClientSession() as session, AsyncExitStack() as stack:
        streams = []
        for _ in range(10):
            stream = await open_stream(stack, session, base, identity(quds))
            assert isinstance(stream, aiohttp.ClientResponse)
            await stream.content.readuntil(b"event: ready")
            streams.append(stream)
        await asyncio.sleep(0.2)  # each stream's first read is done: count from here
        before = await _xreads(redis)
        sent = [
            (await director.send_letter(QUDS, f"letter {n}"))[0].envelope.id for n in range(letters)
        ]
        for stream in streams:
            text = b""
            while not all(letter.encode() in text for letter in sent):
                text += await asyncio.wait_for(stream.content.readuntil(b"\r\n\r\n"), WAIT)
        reads = await _xreads(redis) - before
    assert reads <= letters * 3, f"{reads} reads for {letters} letters on 10 streams"


async def _xreads(redis: aioredis.Redis) -> int:
    stats = await redis.info("commandstats")
    return int(stats.get("cmdstat_xread", {}).get("calls", 0))
