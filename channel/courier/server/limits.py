"""Per-party rate limits: a token bucket in Redis, shared by every worker and courier replica.

Each signed request takes one token from its party's bucket (`Store.take_token`, one script in
the party's slot); the bucket holds `rate_limit_burst` tokens and refills at
`rate_limit_per_second`. An empty bucket answers 429 `rate_limited` with Retry-After. (The other
request limit, the body size, is aiohttp's `client_max_size`: 413 `payload_too_large`.)
"""

from __future__ import annotations

import time

from channel.courier.settings import Settings
from channel.courier.store import Store
from channel.protocol.errors import RateLimited


async def take_token(store: Store, settings: Settings, party: str) -> None:
    """Spend one of `party`'s request tokens, or raise RateLimited saying when there is one."""
    if not settings.rate_limited:
        return
    taken, wait_ms = await store.take_token(
        party,
        capacity=settings.rate_limit_burst,
        per_second=settings.rate_limit_per_second,
        now_ms=int(time.time() * 1000),
    )
    if not taken:
        raise RateLimited(
            f"{party} is over its limit of {settings.rate_limit_per_second:g} requests a second "
            f"(bursts of {settings.rate_limit_burst}); try again in {wait_ms} ms",
            retry_after_ms=wait_ms,
        )
