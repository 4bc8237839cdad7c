"""Bad requests, by hand: each gets RFC 9457 problem JSON and leaves the store as it was."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from channel.courier.server.app import create_app
from channel.courier.settings import Settings
from channel.party.client import Client
from channel.protocol.canonical import now_utc
from channel.protocol.errors import StoreUnavailable
from channel.protocol.models import SealedLetter
from channel.protocol.names import new_letter_id
from channel.protocol.seal import PartyKeys, seal_letter
from tests.conftest import (
    CourierFactory,
    assert_problem,
    free_port,
    identity,
    nonce_free,
    raw_call,
    signed_headers,
    store_snapshot,
)

QUDS = "ir.irgc.quds"
DIRECTOR = "us.cia.director"


@dataclass
class Ctx:
    base: str
    director: Client
    quds: Client
    sealed: SealedLetter  # a valid letter, not sent
    sent_id: str  # a letter already sent, director -> quds


@dataclass
class Request:
    method: str
    url: str
    body: bytes = b""
    headers: dict[str, str] | None = None


@pytest.fixture
async def ctx(director: Client, quds: Client) -> Ctx:
    sent, _ = await director.send_letter(QUDS, "already here")
    return Ctx(
        director.base_url,
        director,
        quds,
        await director.seal(QUDS, "not sent yet"),
        sent.envelope.id,
    )


def _json(letter: SealedLetter) -> dict[str, Any]:
    parsed: dict[str, Any] = json.loads(letter.model_dump_json(exclude_none=True))
    return parsed


def _send(ctx: Ctx, body: bytes | dict[str, Any], keys: PartyKeys | None = None) -> Request:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    url = f"{ctx.base}/v1/letters"
    return Request(
        "POST", url, raw, signed_headers(keys or identity(ctx.director), "POST", url, raw)
    )


def _signed(ctx: Ctx, method: str, path: str, body: bytes = b"", by: str = "quds") -> Request:
    keys = identity(ctx.quds if by == "quds" else ctx.director)
    url = f"{ctx.base}{path}"
    return Request(method, url, body, signed_headers(keys, method, url, body))


def _letter(ctx: Ctx, *, sent_ago: timedelta, lasts: timedelta, to: str = QUDS) -> SealedLetter:
    recipient = identity(ctx.quds).public() if to == QUDS else PartyKeys.generate(to).public()
    sent = now_utc() - sent_ago
    return seal_letter(
        identity(ctx.director),
        recipient,
        letter_id=new_letter_id(),
        subject="",
        body="timing",
        sent_at=sent,
        expires_at=sent + lasts,
    )


def _with(letter: SealedLetter, path: str, value: Any) -> dict[str, Any]:
    data = _json(letter)
    *parents, leaf = path.split(".")
    target = data
    for part in parents:
        target = target[part]
    target[leaf] = value
    return data


def _tampered(letter: SealedLetter) -> bytes:
    flipped = bytes([letter.ciphertext[0] ^ 1]) + letter.ciphertext[1:]
    return letter.model_copy(update={"ciphertext": flipped}).model_dump_json().encode()


Build = Callable[[Ctx], Awaitable[Request] | Request]

CASES: dict[str, tuple[Build, int, str]] = {
    "malformed-json": (lambda c: _send(c, b'{"envelope": {'), 400, "bad_request"),
    "not-utf8": (lambda c: _send(c, b'{"envelope": "\xff\xfe"}'), 400, "bad_request"),
    "json-array": (lambda c: _send(c, b"[]"), 400, "bad_request"),
    "empty-body": (lambda c: _send(c, b""), 400, "bad_request"),
    "unknown-field": (
        lambda c: _send(c, {**_json(c.sealed), "priority": "high"}),
        400,
        "bad_request",
    ),
    "unknown-envelope-field": (
        lambda c: _send(c, _with(c.sealed, "envelope.cc", "ru.svr.director")),
        400,
        "bad_request",
    ),
    "missing-field": (
        lambda c: _send(c, {k: v for k, v in _json(c.sealed).items() if k != "seal"}),
        400,
        "bad_request",
    ),
    "ciphertext-not-string": (
        lambda c: _send(c, _with(c.sealed, "ciphertext", 12)),
        400,
        "bad_request",
    ),
    "seal-not-base64": (lambda c: _send(c, _with(c.sealed, "seal", "*" * 88)), 400, "bad_request"),
    "seal-wrong-length": (lambda c: _send(c, _with(c.sealed, "seal", "AAAA")), 400, "bad_request"),
    "size-not-int": (
        lambda c: _send(c, _with(c.sealed, "envelope.ciphertext_size", "many")),
        400,
        "bad_request",
    ),
    "unknown-precedence": (
        lambda c: _send(c, _with(c.sealed, "envelope.precedence", "urgent")),
        400,
        "bad_request",
    ),
    "bad-timestamp": (
        lambda c: _send(c, _with(c.sealed, "envelope.sent_at", "yesterday")),
        400,
        "bad_request",
    ),
    "bad-recipient-name": (
        lambda c: _send(c, _with(c.sealed, "envelope.recipient", "IR_IRGC")),
        400,
        "bad_request",
    ),
    "bad-letter-id-in-envelope": (
        lambda c: _send(c, _with(c.sealed, "envelope.id", "../../etc")),
        400,
        "bad_request",
    ),
    "unknown-recipient": (
        lambda c: _send(
            c, _json(_letter(c, sent_ago=timedelta(0), lasts=timedelta(days=1), to="nobody.here"))
        ),
        404,
        "unknown_party",
    ),
    "sender-not-signer": (lambda c: _send(c, _json(c.sealed), identity(c.quds)), 403, "forbidden"),
    "tampered-ciphertext": (lambda c: _send(c, _tampered(c.sealed)), 400, "invalid_letter"),
    "tampered-envelope": (
        lambda c: _send(c, _with(c.sealed, "envelope.precedence", "flash")),
        400,
        "invalid_letter",
    ),
    "deadline-passed": (
        lambda c: _send(
            c, _json(_letter(c, sent_ago=timedelta(minutes=2), lasts=timedelta(minutes=1)))
        ),
        400,
        "invalid_letter",
    ),
    "dated-in-future": (
        lambda c: _send(
            c, _json(_letter(c, sent_ago=-timedelta(hours=1), lasts=timedelta(days=1)))
        ),
        400,
        "invalid_letter",
    ),
    "deadline-too-far": (
        lambda c: _send(c, _json(_letter(c, sent_ago=timedelta(0), lasts=timedelta(days=400)))),
        400,
        "invalid_letter",
    ),
    "to-oneself": (
        lambda c: _send(
            c,
            _json(
                seal_letter(
                    identity(c.director),
                    identity(c.director).public(),
                    letter_id=new_letter_id(),
                    subject="",
                    body="note to self",
                    sent_at=now_utc(),
                    expires_at=now_utc() + timedelta(days=1),
                )
            ),
        ),
        400,
        "bad_request",
    ),
    "sealed-to-another-key": (
        lambda c: _send(
            c,
            _json(
                seal_letter(
                    identity(c.director),
                    PartyKeys.generate(QUDS).public(),
                    letter_id=new_letter_id(),
                    subject="",
                    body="wrong key",
                    sent_at=now_utc(),
                    expires_at=now_utc() + timedelta(days=1),
                )
            ),
        ),
        400,
        "invalid_letter",
    ),
    "bad-party-name-path": (
        lambda c: Request("GET", f"{c.base}/v1/parties/Not_Valid"),
        400,
        "invalid_name",
    ),
    "short-party-name-path": (
        lambda c: Request("GET", f"{c.base}/v1/parties/ab"),
        400,
        "invalid_name",
    ),
    "unknown-party-path": (
        lambda c: Request("GET", f"{c.base}/v1/parties/nobody.here"),
        404,
        "unknown_party",
    ),
    "bad-letter-id-status": (lambda c: _signed(c, "GET", "/v1/letters/short"), 400, "invalid_name"),
    "uppercase-letter-id": (
        lambda c: _signed(c, "POST", f"/v1/letters/{c.sent_id.upper()}/withdraw", by="director"),
        400,
        "invalid_name",
    ),
    "unknown-letter": (
        lambda c: _signed(c, "GET", f"/v1/letters/{new_letter_id()}"),
        404,
        "unknown_letter",
    ),
    "open-without-signature": (
        lambda c: _signed(c, "POST", f"/v1/letters/{c.sent_id}/open", b"{}"),
        400,
        "bad_request",
    ),
    "return-reason-too-long": (
        lambda c: _signed(
            c,
            "POST",
            f"/v1/letters/{c.sent_id}/return",
            json.dumps({"reason": "x" * 501, "signature": "A" * 86 + "=="}).encode(),
        ),
        400,
        "bad_request",
    ),
    "return-empty-reason": (
        lambda c: _signed(
            c,
            "POST",
            f"/v1/letters/{c.sent_id}/return",
            json.dumps({"reason": "", "signature": "A" * 86 + "=="}).encode(),
        ),
        400,
        "bad_request",
    ),
    "limit-zero": (lambda c: _signed(c, "GET", "/v1/inbox?limit=0"), 400, "bad_request"),
    "limit-huge": (lambda c: _signed(c, "GET", "/v1/inbox?limit=100000"), 400, "bad_request"),
    "limit-not-number": (lambda c: _signed(c, "GET", "/v1/outbox?limit=all"), 400, "bad_request"),
    "unregistered-signer": (
        lambda c: Request(
            "GET",
            f"{c.base}/v1/inbox",
            headers=signed_headers(PartyKeys.generate("nobody.here"), "GET", f"{c.base}/v1/inbox"),
        ),
        404,
        "unknown_party",
    ),
    "malformed-signature-input": (
        lambda c: Request(
            "GET",
            f"{c.base}/v1/inbox",
            headers={"Signature-Input": "party=(((", "Signature": "party=:AAAA:"},
        ),
        401,
        "unauthenticated",
    ),
    "unknown-path": (lambda c: Request("GET", f"{c.base}/v1/letterz"), 404, "not_found"),
    "unknown-version": (lambda c: Request("GET", f"{c.base}/v2/inbox"), 404, "not_found"),
    "wrong-method": (
        lambda c: Request("DELETE", f"{c.base}/v1/letters"),
        405,
        "method_not_allowed",
    ),
    "get-on-post-route": (
        lambda c: Request("GET", f"{c.base}/v1/letters/{c.sent_id}/withdraw"),
        405,
        "method_not_allowed",
    ),
    "bad-register-name": (
        lambda c: Request(
            "POST",
            f"{c.base}/v1/parties",
            json.dumps(
                {**json.loads(PartyKeys.generate("abc").public().model_dump_json()), "name": "A B"}
            ).encode(),
            {"Content-Type": "application/json"},
        ),
        400,
        "bad_request",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
async def test_bad_request_is_refused_with_a_problem(
    case: str, ctx: Ctx, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    """Each bad request gets its documented status and code as problem JSON, and changes nothing."""
    build, status, code = CASES[case]
    made = build(ctx)
    request = await made if not isinstance(made, Request) else made
    before = nonce_free(await store_snapshot(redis))
    reply = await raw_call(http, request.method, request.url, request.body, request.headers)
    problem = assert_problem(reply, status, code)
    assert problem["instance"] == urlsplit(request.url).path
    assert "X-Request-Id" in reply.headers
    assert nonce_free(await store_snapshot(redis)) == before


async def test_body_over_the_configured_limit_is_413(
    start_courier: CourierFactory,
    ctx: Ctx,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
) -> None:
    """A letter larger than max_body_bytes is refused with 413 payload_too_large, nothing stored."""
    small = await start_courier(max_body_bytes=4096)
    letter = await ctx.director.seal(QUDS, "x" * 8000)
    body = letter.model_dump_json().encode()
    url = f"{small}/v1/letters"
    before = await store_snapshot(redis)
    reply = await raw_call(
        http, "POST", url, body, signed_headers(identity(ctx.director), "POST", url, body)
    )
    assert_problem(reply, 413, "payload_too_large")
    assert await store_snapshot(redis) == before
    fits = await ctx.director.seal(QUDS, "short")
    fits_body = fits.model_dump_json().encode()
    ok = await raw_call(
        http, "POST", url, fits_body, signed_headers(identity(ctx.director), "POST", url, fits_body)
    )
    assert ok.status == 201


async def test_body_over_two_mebibytes_is_413_by_default(
    ctx: Ctx, http: aiohttp.ClientSession, redis: aioredis.Redis
) -> None:
    """Without configuration the courier refuses bodies over 2 MiB, before reading the signature."""
    body = b'{"pad": "' + b"a" * (2 * 1024 * 1024 + 10) + b'"}'
    url = f"{ctx.base}/v1/letters"
    before = await store_snapshot(redis)
    reply = await raw_call(
        http, "POST", url, body, signed_headers(identity(ctx.director), "POST", url, body)
    )
    assert_problem(reply, 413, "payload_too_large")
    assert await store_snapshot(redis) == before


async def test_problem_for_bad_json_says_what_is_wrong(
    ctx: Ctx, http: aiohttp.ClientSession
) -> None:
    """The problem detail names the fault: invalid JSON, or the unknown field by name."""
    reply = await raw_call(http, **vars(_send(ctx, b"{nope")))
    assert "not valid JSON" in assert_problem(reply, 400, "bad_request")["detail"]
    reply = await raw_call(http, **vars(_send(ctx, {**_json(ctx.sealed), "bcc": "x"})))
    assert "bcc" in assert_problem(reply, 400, "bad_request")["detail"]


async def test_405_names_the_allowed_methods(ctx: Ctx, http: aiohttp.ClientSession) -> None:
    """A 405 carries an Allow header listing the methods the path accepts."""
    reply = await raw_call(http, "DELETE", f"{ctx.base}/v1/letters")
    assert_problem(reply, 405, "method_not_allowed")
    assert reply.headers.get("Allow") == "POST"
    reply = await raw_call(http, "PUT", f"{ctx.base}/v1/letters/{ctx.sent_id}")
    assert_problem(reply, 405, "method_not_allowed")
    assert reply.headers.get("Allow") == "GET"


@pytest.fixture
async def courier_without_redis(tmp_path: Path) -> AsyncIterator[str]:
    """A courier whose Redis is not there (a closed port), on a real socket."""
    settings = Settings(port=0, data_dir=tmp_path, open_registration=True, sweep_interval=3600)
    app = create_app(settings, f"redis://127.0.0.1:{free_port()}/0", Ed25519PrivateKey.generate())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    await runner.cleanup()


async def test_store_down_is_503_with_retry_after(
    courier_without_redis: str, http: aiohttp.ClientSession
) -> None:
    """Without Redis the courier stays up: liveness is 200, store calls are 503 with Retry-After."""
    health = await raw_call(http, "GET", f"{courier_without_redis}/healthz")
    assert health.status == 200
    for path in ("/readyz", f"/v1/parties/{QUDS}"):
        reply = await raw_call(http, "GET", f"{courier_without_redis}{path}")
        assert_problem(reply, 503, "store_unavailable")
        assert reply.headers["Retry-After"] == "1"
    keys = PartyKeys.generate(QUDS)
    async with Client(courier_without_redis, keys) as acting:
        with pytest.raises(StoreUnavailable):
            await acting.register()


async def test_readiness_when_the_store_is_up(ctx: Ctx, http: aiohttp.ClientSession) -> None:
    """GET /readyz answers 200 when Redis answers."""
    reply = await raw_call(http, "GET", f"{ctx.base}/readyz")
    assert reply.status == 200
    assert reply.json() == {"status": "ready"}
