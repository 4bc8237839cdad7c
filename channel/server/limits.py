"""Per-request limits: replay and per-party rate limits, and a bound on requests in flight.

Each signed request takes one token from its party's bucket (`Store.take_token`, one script in
the party's slot); the bucket holds `rate_limit_burst` tokens and refills at
`rate_limit_per_second`. An empty bucket answers 429 `rate_limited` with Retry-After. The same
script first refuses a replayed nonce (401 `replayed`), so a replay never spends the signer's
tokens, and claims the nonce with the token: one round trip. (The body size is aiohttp's
`client_max_size`: 413 `payload_too_large`.)
"""

from __future__ import annotations

import time

from channel.errors import RateLimited, Replayed
from channel.httpsig import NONCE_TTL_MS, SignedBy
from channel.settings import Settings
from channel.store import Store

REPLAYED = "this request was already received (its nonce was used)"


async def admit(store: Store, settings: Settings, signed: SignedBy, *, claim: bool = True) -> None:
    """Refuse a replayed request, then spend one of its signer's tokens and claim its nonce.

    `claim=False` only looks at the nonce: the handler claims it in its own script (a send).
    Raises Replayed, or RateLimited saying when there will be a token.
    """
    taken, wait_ms = await store.take_token(
        signed.party,
        capacity=settings.rate_limit_burst if settings.rate_limited else 0,
        per_second=settings.rate_limit_per_second,
        now_ms=int(time.time() * 1000),
        nonce=signed.nonce,
        nonce_ttl_ms=NONCE_TTL_MS if claim else 0,
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
