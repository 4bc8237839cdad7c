"""Admission of a signed request: replays are refused before they spend a token, and a sealed
letter is accepted only from its sender (docs/protocol.md, "Why a send carries two signatures")."""

from __future__ import annotations

import aiohttp
import redis.asyncio as aioredis

from channel.party.client import Client
from channel.protocol.models import SealedLetter
from tests.conftest import (
    CourierFactory,
    assert_problem,
    identity,
    nonce_free,
    raw_call,
    signed_call,
    signed_headers,
    store_snapshot,
)

QUDS = "ir.irgc.quds"
# One token every 100 s: nothing refills during a test, so every token spent shows.
SLOW = {"rate_limit_per_second": 0.01, "rate_limit_burst": 2}


def _body(sealed: SealedLetter) -> bytes:
    return sealed.model_dump_json(exclude_none=True).encode()


async def test_a_replayed_request_spends_no_token(
    start_courier: CourierFactory, director: Client, http: aiohttp.ClientSession
) -> None:
    """Replaying a captured request, however often, leaves its signer's next token untouched."""
    base = await start_courier(**SLOW)
    url = f"{base}/v1/outbox"
    captured = signed_headers(identity(director), "GET", url)
    assert (await raw_call(http, "GET", url, b"", captured)).status == 200  # token 1 of 2
    for _ in range(5):
        assert_problem(await raw_call(http, "GET", url, b"", captured), 401, "replayed")
    assert (await signed_call(http, identity(director), "GET", url)).status == 200  # token 2
    assert_problem(await signed_call(http, identity(director), "GET", url), 429, "rate_limited")


async def test_a_replayed_send_spends_no_token(
    start_courier: CourierFactory,
    director: Client,
    quds: Client,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
) -> None:
    """A replayed send is 401 `replayed`, changes nothing and spends none of the sender's tokens."""
    base = await start_courier(**SLOW)
    url = f"{base}/v1/letters"
    body = _body(await director.seal(QUDS, "once"))
    captured = signed_headers(identity(director), "POST", url, body)
    assert (await raw_call(http, "POST", url, body, captured)).status == 201  # token 1 of 2
    before = await store_snapshot(redis)
    for _ in range(3):
        assert_problem(await raw_call(http, "POST", url, body, captured), 401, "replayed")
    assert await store_snapshot(redis) == before
    inbox = f"{base}/v1/inbox"
    assert (await signed_call(http, identity(director), "GET", inbox)).status == 200  # token 2
    assert_problem(await signed_call(http, identity(director), "GET", inbox), 429, "rate_limited")


async def test_a_rate_limited_request_can_be_sent_again(
    start_courier: CourierFactory, director: Client, http: aiohttp.ClientSession
) -> None:
    """A 429 writes nothing: the nonce of a refused request is not spent either."""
    base = await start_courier(rate_limit_per_second=0.01, rate_limit_burst=1)
    url = f"{base}/v1/outbox"
    assert (await signed_call(http, identity(director), "GET", url)).status == 200
    captured = signed_headers(identity(director), "GET", url)
    assert_problem(await raw_call(http, "GET", url, b"", captured), 429, "rate_limited")
    assert_problem(await raw_call(http, "GET", url, b"", captured), 429, "rate_limited")


async def test_a_sealed_letter_is_accepted_only_from_its_sender(
    director: Client,
    quds: Client,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
) -> None:
    """Whoever holds a copy of a sealed letter (its recipient, a log) cannot post it again."""
    sealed, _ = await director.send_letter(QUDS, "for the commander")
    await director.withdraw(sealed.envelope.id)
    url = f"{director.base_url}/v1/letters"
    body = _body(sealed)
    before = nonce_free(await store_snapshot(redis))
    unsigned = await raw_call(http, "POST", url, body, {"Content-Type": "application/json"})
    assert_problem(unsigned, 401, "unauthenticated")
    assert_problem(await signed_call(http, identity(quds), "POST", url, body), 403, "forbidden")
    assert nonce_free(await store_snapshot(redis)) == before
    # Its sender may: a re-send is idempotent, the letter keeps its ending.
    again = await signed_call(http, identity(director), "POST", url, body)
    assert again.status == 200
    assert nonce_free(await store_snapshot(redis)) == before
