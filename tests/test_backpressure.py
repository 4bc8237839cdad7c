"""Backpressure, not failure: a bounded number of requests in flight per worker; beyond it a short
wait, then 503 `overloaded` with Retry-After, and every acknowledged letter is stored."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from urllib.parse import urlsplit

import aiohttp
import redis.asyncio as aioredis

from channel.party.client import Client
from channel.protocol.models import SealedLetter
from tests.conftest import (
    CourierFactory,
    Reply,
    assert_problem,
    identity,
    raw_call,
    signed_call,
)

QUDS = "ir.irgc.quds"
UNLIMITED = {"rate_limit_per_second": 0}
_BODY = 100  # the stalled request's announced body length


@asynccontextmanager
async def stalled_request(base: str) -> AsyncIterator[asyncio.StreamWriter]:
    """A request that holds an in-flight slot: its headers are in, its body is still to come.

    Finish it with `finish(writer)`; it is then answered (401, it is unsigned) and frees its slot.
    """
    url = urlsplit(base)
    _, writer = await asyncio.open_connection(url.hostname, url.port)
    writer.write(
        f"POST /v1/letters HTTP/1.1\r\nHost: {url.netloc}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {_BODY}\r\n\r\n{{".encode()
    )
    await writer.drain()
    try:
        yield writer
    finally:
        writer.close()
        await writer.wait_closed()


async def finish(writer: asyncio.StreamWriter) -> None:
    writer.write(b" " * (_BODY - 2) + b"}")
    await writer.drain()


async def until_overloaded(http: aiohttp.ClientSession, acting: Client, base: str) -> Reply:
    """The first 503 a signed request gets once every slot is taken (the stall has arrived)."""
    for _ in range(200):
        reply = await signed_call(http, identity(acting), "GET", f"{base}/v1/outbox")
        if reply.status == 503:
            return reply
        assert reply.status == 200
        await asyncio.sleep(0.01)
    raise AssertionError("the stalled request never took its slot")


async def test_a_request_beyond_the_bound_is_503_with_retry_after(
    start_courier: CourierFactory, director: Client, http: aiohttp.ClientSession
) -> None:
    """With every slot taken and no wait allowed: 503 overloaded, Retry-After, health still 200."""
    base = await start_courier(max_in_flight=1, busy_wait=0, **UNLIMITED)
    async with stalled_request(base) as stall:
        refused = await until_overloaded(http, director, base)
        assert_problem(refused, 503, "overloaded")
        assert refused.headers["Retry-After"] == "1"
        assert (await raw_call(http, "GET", f"{base}/healthz")).status == 200
        await finish(stall)
        for _ in range(200):  # the stall's answer frees the slot
            reply = await signed_call(http, identity(director), "GET", f"{base}/v1/outbox")
            if reply.status == 200:
                break
            await asyncio.sleep(0.01)
        assert reply.status == 200


async def test_a_request_beyond_the_bound_waits_for_a_slot(
    start_courier: CourierFactory, director: Client, http: aiohttp.ClientSession
) -> None:
    """A request that finds every slot taken waits; when one frees in time it is served."""
    waiting = await start_courier(max_in_flight=1, busy_wait=30, **UNLIMITED)
    async with stalled_request(waiting) as stall:
        await asyncio.sleep(0.1)  # the stall takes the only slot
        queued = asyncio.create_task(
            signed_call(http, identity(director), "GET", f"{waiting}/v1/outbox")
        )
        await asyncio.sleep(0.3)
        assert not queued.done()
        # Only one may wait: a second waiter is refused at once rather than queued.
        assert_problem(
            await signed_call(http, identity(director), "GET", f"{waiting}/v1/inbox"),
            503,
            "overloaded",
        )
        await finish(stall)
        assert (await asyncio.wait_for(queued, 10)).status == 200


async def test_at_twice_the_capacity_every_answer_is_2xx_or_503_and_every_2xx_is_stored(
    start_courier: CourierFactory,
    director: Client,
    quds: Client,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
) -> None:
    """Eight senders at once against four slots: sends succeed or are shed, none is lost."""
    base = await start_courier(max_in_flight=4, busy_wait=0, **UNLIMITED)
    url = f"{base}/v1/letters"
    letters = [[await director.seal(QUDS, f"{s}.{n}") for n in range(10)] for s in range(8)]
    answers: list[tuple[SealedLetter, Reply]] = []

    async def sender(batch: list[SealedLetter]) -> None:
        for sealed in batch:
            body = sealed.model_dump_json(exclude_none=True).encode()
            answers.append((sealed, await signed_call(http, identity(director), "POST", url, body)))

    await asyncio.gather(*(sender(batch) for batch in letters))
    statuses = {reply.status for _, reply in answers}
    assert statuses <= {201, 503}
    assert statuses == {201, 503}, "twice the capacity should both serve and shed"
    for sealed, reply in answers:
        if reply.status == 503:
            assert_problem(reply, 503, "overloaded")
            assert reply.headers["Retry-After"] == "1"
        else:
            key = f"bc:{{{QUDS}}}:letter:{sealed.envelope.id}"
            assert await redis.exists(key), f"acknowledged letter {sealed.envelope.id} is missing"
