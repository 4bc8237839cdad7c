"""Per-request limits: replay and per-party rate limits, and a bound on requests in flight.

Each worker handles at most `max_in_flight` requests at once (`InFlight`). One more waits up to
`busy_wait` seconds for a slot; past that, or when as many are already waiting, it is answered
503 `overloaded` with Retry-After at once. Overload is met with backpressure, not failure: the
Redis pool has a connection for every request in flight, so no request fails for want of one.

Each signed request takes one token from its party's bucket (`Store.take_token`, one script in
the party's slot); the bucket holds `rate_limit_burst` tokens and refills at
`rate_limit_per_second`. An empty bucket answers 429 `rate_limited` with Retry-After. The same
script first refuses a replayed nonce (401 `replayed`), so a replay never spends the signer's
tokens, and claims the nonce with the token: one round trip. (The body size is aiohttp's
`client_max_size`: 413 `payload_too_large`.)
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from channel.courier.settings import Settings
from channel.courier.store import Store
from channel.protocol.errors import Overloaded, RateLimited, Replayed
from channel.protocol.httpsig import NONCE_TTL_MS, SignedBy

# Pooled Redis connections beyond the requests in flight: the sweeper and the live streams' setup.
POOL_HEADROOM = 8
REPLAYED = "this request was already received (its nonce was used)"


async def admit(store: Store, settings: Settings, signed: SignedBy) -> None:
    """Refuse a replayed request, then spend one of its signer's tokens and claim its nonce, in
    one script. Raises Replayed, or RateLimited saying when there will be a token. (A send does
    all three in its own script, with the letter.)"""
    taken, wait_ms = await store.take_token(
        signed.party,
        capacity=settings.rate_limit_burst if settings.rate_limited else 0,
        per_second=settings.rate_limit_per_second,
        now_ms=int(time.time() * 1000),
        nonce=signed.nonce,
        nonce_ttl_ms=NONCE_TTL_MS,
    )
    if taken is None:
        raise Replayed(REPLAYED)
    if not taken:
        raise _limited(settings, signed.party, wait_ms)


def _limited(settings: Settings, party: str, wait_ms: int) -> RateLimited:
    return RateLimited(
        f"{party} is over its limit of {settings.rate_limit_per_second:g} requests a second "
        f"(bursts of {settings.rate_limit_burst}); try again in {wait_ms} ms",
        retry_after_ms=wait_ms,
    )


class InFlight:
    """At most `limit` requests at once; a request beyond them waits up to `wait` seconds for a
    slot, with at most `limit` waiting. Per worker: each process has its own."""

    def __init__(self, limit: int, wait: float) -> None:
        self.limit = limit
        self._wait = wait
        self._slots = asyncio.Semaphore(limit)
        self._waiting = 0

    @asynccontextmanager
    async def slot(self) -> AsyncIterator[None]:
        """Hold one slot for the duration; raises Overloaded if none comes free in time."""
        if self._slots.locked():
            if self._waiting >= self.limit or self._wait <= 0:
                raise self._overloaded()
            self._waiting += 1
            try:
                async with asyncio.timeout(self._wait):
                    await self._slots.acquire()
            except TimeoutError:
                raise self._overloaded() from None
            finally:
                self._waiting -= 1
        else:
            await self._slots.acquire()  # free: returns at once
        try:
            yield
        finally:
            self._slots.release()

    def _overloaded(self) -> Overloaded:
        return Overloaded(
            f"the courier is handling as many requests as it can ({self.limit} per worker); "
            "try again shortly"
        )
