"""Real parts only: a redis-server on a free port in a temp dir, the courier on a real socket,
driven by the real client. No mocks, no fakeredis."""

from __future__ import annotations

import base64
import io
import json
import socket
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import redis.asyncio as aioredis
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from multidict import CIMultiDict

from channel.courier.embedded import EmbeddedRedis
from channel.courier.server.app import create_app
from channel.courier.server.connections import GuardedRunner
from channel.courier.service import Courier
from channel.courier.settings import Settings
from channel.courier.store import Store
from channel.party.client import Client
from channel.protocol.httpsig import sign_request
from channel.protocol.models import Receipt, SealedLetter
from channel.protocol.seal import PartyKeys, raw_public, verify_chain


@pytest.fixture(autouse=True)
def _own_state_home(
    tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Each test's registry of live exercise runs is its own (never the user's ~/.local/state)."""
    monkeypatch.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedRedis]:
    """One redis-server for the whole session, the same binary the embedded courier uses."""
    server = EmbeddedRedis(tmp_path_factory.mktemp("redis"), port=free_port(), fsync="everysec")
    server.start()
    yield server
    server.stop()


@pytest.fixture
async def redis(redis_server: EmbeddedRedis) -> AsyncIterator[aioredis.Redis]:
    """A raw connection for inspecting the store; the database is flushed before each test."""
    client = aioredis.Redis.from_url(redis_server.url)
    await client.flushdb()
    yield client
    await client.aclose()


@pytest.fixture
def courier_key() -> Ed25519PrivateKey:
    return Ed25519PrivateKey.generate()


CourierFactory = Callable[..., Awaitable[str]]


@asynccontextmanager
async def couriers(
    redis_url: str, key: Ed25519PrivateKey, data_dir: Path, **defaults: object
) -> AsyncIterator[CourierFactory]:
    """A factory of couriers on real sockets sharing one store and key; stops them all after."""
    runners: list[web.AppRunner] = []

    async def start(**overrides: object) -> str:
        options = {"open_registration": True, "data_dir": data_dir, "port": 0}
        options |= defaults | overrides
        app = create_app(Settings(**options), redis_url, key)  # type: ignore[arg-type]
        runner = GuardedRunner(app, access_log=None)  # as `channel serve`: slow clients cut off
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        runners.append(runner)
        return f"http://127.0.0.1:{runner.addresses[0][1]}"

    try:
        yield start
    finally:
        for runner in runners:
            await runner.cleanup()


@pytest.fixture
async def start_courier(
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    courier_key: Ed25519PrivateKey,
    tmp_path: Path,
) -> AsyncIterator[CourierFactory]:
    """Start couriers on real sockets (several may share the Redis); returns each base URL."""
    async with couriers(redis_server.url, courier_key, tmp_path) as start:
        yield start


@pytest.fixture
async def courier_url(start_courier: CourierFactory) -> str:
    """An open-registration courier."""
    return await start_courier()


@pytest.fixture
async def client(courier_url: str) -> AsyncIterator[Client]:
    """An anonymous client; use `party()` for signed ones."""
    async with Client(courier_url) as anonymous:
        yield anonymous


PartyFactory = Callable[[str], Awaitable[Client]]


@pytest.fixture
async def party(client: Client) -> PartyFactory:
    """Create and register a party, returning a client acting as it."""

    async def make(name: str) -> Client:
        acting = client.as_party(PartyKeys.generate(name))
        await acting.register()
        return acting

    return make


@pytest.fixture
async def director(party: PartyFactory) -> Client:
    return await party("us.cia.director")


@pytest.fixture
async def quds(party: PartyFactory) -> Client:
    return await party("ir.irgc.quds")


async def store_snapshot(redis: aioredis.Redis) -> dict[bytes, object]:
    """Every key and its value, to prove a refused request changed nothing.

    Rate-limit buckets are left out: every signed request takes a token, even a refused one, and
    a bucket's key expires by itself once it is full again."""
    snapshot: dict[bytes, object] = {}
    async for key in redis.scan_iter(count=1000):
        if key.endswith(b":bucket"):
            continue
        kind = await redis.type(key)
        if kind == b"string":
            snapshot[key] = await redis.get(key)
        elif kind == b"hash":
            snapshot[key] = await redis.hgetall(key)
        elif kind == b"list":
            snapshot[key] = await redis.lrange(key, 0, -1)
        elif kind == b"set":
            snapshot[key] = await redis.smembers(key)
        elif kind == b"zset":
            snapshot[key] = await redis.zrange(key, 0, -1, withscores=True)
    return snapshot


async def store_blobs(redis: aioredis.Redis) -> list[bytes]:
    """Every key, field, member and value in the store, as bytes (for scanning for plaintext)."""
    blobs: list[bytes] = []
    for key, value in (await store_snapshot(redis)).items():
        blobs.append(key)
        if isinstance(value, bytes):
            blobs.append(value)
        elif isinstance(value, dict):
            blobs += [*value.keys(), *value.values()]
        elif isinstance(value, list | set):
            blobs += [item if isinstance(item, bytes) else item[0] for item in value]
    return blobs


def check_chain(
    receipts: list[Receipt], sealed: SealedLetter, courier_key: Ed25519PrivateKey, recipient: Client
) -> None:
    """The receipts verify as the chain of `sealed`, signed by this courier and recipient."""
    verify_chain(
        receipts,
        sealed.envelope,
        courier_key=raw_public(courier_key),
        recipient_key=identity(recipient).public().signing_key,
    )


def nonce_free(snapshot: dict[bytes, object]) -> dict[bytes, object]:
    """A snapshot without request nonces (every signed request, even a refused one, uses one)."""
    return {k: v for k, v in snapshot.items() if b":nonce:" not in k}


# --- Raw HTTP and courier helpers for the API, race, security and bad-input suites ---


Connect = Callable[[str, PartyKeys], Client]


@pytest.fixture
async def connect() -> AsyncIterator[Connect]:
    """Clients for existing identities on any courier URL (e.g. a second instance); closed after."""
    made: list[Client] = []

    def make(url: str, identity: PartyKeys) -> Client:
        made.append(Client(url, identity))
        return made[-1]

    yield make
    for each in made:
        await each.close()


@pytest.fixture
async def local_courier(
    redis: aioredis.Redis, redis_server: EmbeddedRedis, courier_key: Ed25519PrivateKey
) -> AsyncIterator[Courier]:
    """A Courier object on the test Redis, outside any app: for minting invitations."""
    store = Store.from_url(redis_server.url)
    yield Courier(store, courier_key)
    await store.close()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    """A plain aiohttp session for hand-made requests."""
    async with aiohttp.ClientSession() as session:
        yield session


@dataclass(frozen=True)
class Reply:
    status: int
    content_type: str
    headers: CIMultiDict[str]  # case-insensitive, as HTTP header names are
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


async def raw_call(
    session: aiohttp.ClientSession,
    method: str,
    url: str,
    body: bytes = b"",
    headers: dict[str, str] | None = None,
) -> Reply:
    """Send exactly these bytes and headers; return status, content type, headers and body."""
    # aiohttp warns (an error here) about large raw bodies: stream those from a buffer instead.
    data = io.BytesIO(body) if len(body) > 1024 * 1024 else body or None
    async with session.request(method, url, data=data, headers=headers or {}) as reply:
        return Reply(
            reply.status, reply.content_type, CIMultiDict(reply.headers), await reply.read()
        )


def signed_headers(
    identity: PartyKeys, method: str, url: str, body: bytes = b"", **options: Any
) -> dict[str, str]:
    """RFC 9421 headers for one request by `identity` (options: created=, nonce=)."""
    headers = sign_request(identity.name, identity.signing, method, url, body, **options)
    if body:
        headers["Content-Type"] = "application/json"
    return headers


async def signed_call(
    session: aiohttp.ClientSession,
    identity: PartyKeys,
    method: str,
    url: str,
    body: bytes = b"",
) -> Reply:
    """A correctly signed request by `identity` with exactly this body."""
    return await raw_call(session, method, url, body, signed_headers(identity, method, url, body))


PROBLEM_FIELDS = {"type", "title", "status", "code", "detail"}


def assert_problem(reply: Reply, status: int, code: str) -> dict[str, Any]:
    """The reply is RFC 9457 problem JSON with this status and stable code."""
    assert reply.status == status, reply.body
    assert reply.content_type == "application/problem+json"
    problem: dict[str, Any] = reply.json()
    assert problem.keys() >= PROBLEM_FIELDS
    assert problem["status"] == status
    assert problem["code"] == code, problem
    assert problem["type"] == f"urn:backchannel:problem:{code}"
    assert isinstance(problem["title"], str)
    assert isinstance(problem["detail"], str)
    assert problem["title"]
    assert problem["detail"]
    return problem


def identity(acting: Client) -> PartyKeys:
    """The private keys a party client acts with."""
    assert acting.identity is not None
    return acting.identity


# Letters whose subjects and bodies must never appear in the store, raw or base64.
SECRETS = [
    ("Operation Nightjar at the Baghdad airport", "The asset code-named KESTREL is ready."),
    ("Quarterly exchange of prisoners", "Proposal: twelve for twelve at the border crossing."),
    ("Ceasefire terms, second draft", "Artillery withdraws 20 km behind the line by Friday."),
]


def plaintext_needles(text: str) -> list[bytes]:
    """The text's bytes, and its base64 at each of the three alignments (minus ragged ends)."""
    raw = text.encode()
    needles = [raw]
    for shift in range(3):
        encoded = base64.b64encode(raw[shift:])
        needles.append(encoded[4:-4])
        needles.append(base64.urlsafe_b64encode(raw[shift:])[4:-4])
    return needles
