"""Abuse on raw sockets: slow headers, slow bodies, hang-ups, huge or malformed requests.

Each attack gets its 4xx or a closed connection, none is logged or counted as a server error, and
the store is unchanged. The couriers here use timeouts of a second or two so the suite stays quick;
the defaults are checked by reading the settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Iterator, MutableMapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import aiohttp
import pytest
import redis.asyncio as aioredis
from structlog.testing import capture_logs

from channel.courier.embedded import EmbeddedRedis
from channel.courier.server.connections import RATE_GRACE, tick
from channel.courier.server.run import courier_in_process
from channel.courier.settings import Settings
from channel.protocol.seal import PartyKeys
from tests.conftest import (
    CourierFactory,
    PartyFactory,
    identity,
    nonce_free,
    signed_headers,
    store_snapshot,
)

Raw = tuple[asyncio.StreamReader, asyncio.StreamWriter]
WAIT = 20.0  # seconds any outcome may take on a loaded machine before the test fails


async def open_raw(base: str) -> Raw:
    parts = urlsplit(base)
    return await asyncio.open_connection(parts.hostname, parts.port)


def request_head(method: str, target: bytes, headers: list[tuple[bytes, bytes]]) -> bytes:
    """A request line and headers, byte for byte as given (any bytes, any number of headers)."""
    lines = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1"]
    lines += [name + b": " + value for name, value in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n"


def signed(who: PartyKeys, method: str, base: str, path: str, body: bytes) -> bytes:
    """A whole signed request with exactly this body, closing the connection after its answer."""
    headers = signed_headers(who, method, f"{base}{path}", body)  # with its Content-Type
    pairs = [(name.encode(), value.encode()) for name, value in headers.items()]
    pairs += [(b"Connection", b"close"), (b"Content-Length", str(len(body)).encode())]
    return request_head(method, path.encode(), pairs) + body


async def status_or_closed(reader: asyncio.StreamReader) -> int | None:
    """The answer's status, or None when the courier closed the connection without one."""
    try:
        async with asyncio.timeout(WAIT):
            line = await reader.readline()
    except ConnectionError:
        return None
    return int(line.split()[1]) if line else None


async def whole_answer(reader: asyncio.StreamReader) -> int:
    """Read one answer, headers and body, leaving the connection ready for the next; its status."""
    async with asyncio.timeout(WAIT):
        status = int((await reader.readline()).split()[1])
        length = 0
        while (line := await reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        await reader.readexactly(length)
    return status


@dataclass(frozen=True)
class Answer:
    status: int
    head: bytes
    body: bytes

    def problem(self) -> dict[str, Any]:
        assert b"application/problem+json" in self.head.lower(), self.head
        problem: dict[str, Any] = json.loads(self.body)
        return problem


async def whole_answer_until_closed(reader: asyncio.StreamReader) -> Answer:
    """The one answer on a `Connection: close` request: everything until the courier closes."""
    async with asyncio.timeout(WAIT):
        received = await reader.read()
    head, _, body = received.partition(b"\r\n\r\n")
    assert head, "closed without an answer"
    return Answer(int(head.split()[1]), head, body)


async def still_open(reader: asyncio.StreamReader) -> bool:
    """Whether the connection is open: what has come so far is read, and then nothing ends it."""
    try:
        for _ in range(100):
            if not await asyncio.wait_for(reader.read(65536), 0.5):
                return False
    except TimeoutError:
        return True
    except ConnectionError:
        return False
    raise AssertionError("the courier keeps sending")


async def seconds_until_closed(reader: asyncio.StreamReader, started: float) -> float:
    """Read (and drop) whatever comes until the courier closes the connection; when that was."""
    try:
        async with asyncio.timeout(WAIT):
            while await reader.read(65536):
                pass
    except ConnectionError:
        pass  # a reset is a close too
    return time.monotonic() - started


async def dribble(writer: asyncio.StreamWriter, data: bytes, step: int, pause: float) -> None:
    """Send `data` `step` bytes at a time, `pause` seconds apart, until it ends or the courier
    hangs up."""
    for start in range(0, len(data), step):
        try:
            writer.write(data[start : start + step])
            await writer.drain()
        except ConnectionError:
            return
        await asyncio.sleep(pause)


async def seconds_until_cut_off(raw: Raw, data: bytes, step: int, pause: float) -> float:
    """Dribble `data` and wait for the courier to close the connection before it is all sent."""
    reader, writer = raw
    started = time.monotonic()
    sending = asyncio.create_task(dribble(writer, data, step, pause))
    try:
        took = await seconds_until_closed(reader, started)
        assert not sending.done(), "the courier waited for the whole slow request"
    finally:
        sending.cancel()
        writer.close()
    return took


@contextlib.contextmanager
def no_server_errors(
    caplog: pytest.LogCaptureFixture,
) -> Iterator[list[MutableMapping[str, Any]]]:
    """Capture the courier's structured logs; after the block, none is an error or a 500."""
    with caplog.at_level(logging.WARNING), capture_logs() as logs:
        yield logs
    assert not [entry for entry in logs if entry["log_level"] in ("error", "critical")], logs
    assert "unhandled_error" not in [entry["event"] for entry in logs]
    assert not [record for record in caplog.records if record.levelno >= logging.ERROR]


async def logged(logs: list[MutableMapping[str, Any]], event: str) -> MutableMapping[str, Any]:
    """The first log entry for `event`, waiting for it a bounded time."""
    for _ in range(int(WAIT * 20)):
        found = [entry for entry in logs if entry["event"] == event]
        if found:
            return found[0]
        await asyncio.sleep(0.05)
    raise AssertionError(f"no {event} in {logs}")


_COUNT = re.compile(r"^backchannel_request_duration_seconds_count\{(.*)\} (\S+)$", re.M)


async def answered_by_status(http: aiohttp.ClientSession, base: str) -> Counter[str]:
    """How many requests the courier's metrics count, by status."""
    async with http.get(f"{base}/metrics") as reply:
        text = await reply.text()
    counts: Counter[str] = Counter()
    for labels, value in _COUNT.findall(text):
        status = re.search(r'status="(\d+)"', labels)
        assert status is not None
        counts[status.group(1)] += int(float(value))
    return counts


def server_errors(counts: Counter[str]) -> int:
    return sum(count for status, count in counts.items() if status.startswith("5"))


# --- the defaults -------------------------------------------------------------------------------


def test_default_timeouts_cut_off_slow_clients_within_30_seconds() -> None:
    """By default a connection stuck in its headers is closed within 30 s, and a body is bounded."""
    defaults = Settings()
    assert defaults.header_timeout + tick(defaults) <= 30
    assert defaults.body_timeout + tick(defaults) <= 120
    assert defaults.body_min_rate > 0


# --- slow clients -------------------------------------------------------------------------------


@pytest.fixture
async def quick(start_courier: CourierFactory) -> str:
    """A courier with a one-second header timeout and a body floor of 1,000 bytes a second."""
    return await start_courier(header_timeout=1, body_timeout=30, body_min_rate=1000)


async def test_silent_connections_are_closed_after_the_header_timeout(
    quick: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Connections that never send a byte, a hundred of them, are closed once the header timeout
    has passed."""
    with no_server_errors(caplog) as logs:
        started = time.monotonic()
        connections = [await open_raw(quick) for _ in range(100)]
        took = await asyncio.gather(
            *(seconds_until_closed(reader, started) for reader, _ in connections)
        )
        for _, writer in connections:
            writer.close()
        entry = await logged(logs, "slow_client_cut_off")
    assert min(took) >= 1
    assert max(took) < WAIT
    assert entry["phase"] == "headers"
    assert entry["log_level"] == "info"
    assert len([entry for entry in logs if entry["event"] == "slow_client_cut_off"]) == 100


@pytest.fixture
def served(redis: aioredis.Redis, redis_server: EmbeddedRedis, tmp_path: Path) -> Iterator[str]:
    """`channel serve` in its own process with a one-second header timeout; yields its URL."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHANNEL_", "PROMETHEUS_"))}
    env |= {"CHANNEL_HEADER_TIMEOUT": "1", "CHANNEL_REDIS_URL": redis_server.url}
    command = [sys.executable, "-m", "channel", "serve", "--port", "0", "--data-dir", "data"]
    with (tmp_path / "courier.log").open("w") as log:
        process = subprocess.Popen(
            command, cwd=tmp_path, stdout=subprocess.PIPE, stderr=log, text=True, env=env
        )
    assert process.stdout is not None
    try:
        ready = re.search(r"Courier ready at (\S+)", process.stdout.readline())
        assert ready is not None, (tmp_path / "courier.log").read_text()
        yield ready.group(1)
    finally:
        process.terminate()
        process.wait(timeout=WAIT)
        process.stdout.close()


async def test_channel_serve_closes_a_silent_connection(served: str) -> None:
    """`channel serve` itself cuts off slow clients: a silent connection is closed in time."""
    started = time.monotonic()
    reader, writer = await open_raw(served)
    took = await seconds_until_closed(reader, started)
    writer.close()
    assert 1 <= took < WAIT


async def test_an_in_process_courier_closes_a_silent_connection(
    redis: aioredis.Redis, redis_server: EmbeddedRedis, tmp_path: Path
) -> None:
    """The courier the demo and exercises host in-process cuts off slow clients too."""
    async with courier_in_process(tmp_path, redis_server.url, header_timeout=1) as url:
        started = time.monotonic()
        reader, writer = await open_raw(url)
        took = await seconds_until_closed(reader, started)
        writer.close()
    assert 1 <= took < WAIT


async def test_headers_sent_a_byte_at_a_time_are_cut_off(
    quick: str, caplog: pytest.LogCaptureFixture
) -> None:
    """Headers that never end, a byte every 50 ms, do not keep a connection: it is closed."""
    endless = b"GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Pad: " + b"a" * 400
    with no_server_errors(caplog):
        took = await seconds_until_cut_off(await open_raw(quick), endless, 1, 0.05)
    assert 1 <= took < WAIT


async def test_a_connection_answers_then_idles_and_is_closed(quick: str) -> None:
    """A kept-alive connection is answered, then closed once idle for the header timeout."""
    reader, writer = await open_raw(quick)
    writer.write(request_head("GET", b"/healthz", []))
    assert await status_or_closed(reader) == 200
    started = time.monotonic()
    took = await seconds_until_closed(reader, started)
    writer.close()
    assert 0.5 <= took < WAIT  # its idle time may start a moment before the answer is read


async def test_a_busy_kept_alive_connection_stays_open(start_courier: CourierFactory) -> None:
    """Requests one after another on one connection, idle between them, keep it open past the
    header timeout: it is the time to send one request that is limited, not the connection's."""
    courier = await start_courier(header_timeout=2)
    reader, writer = await open_raw(courier)
    started = time.monotonic()
    answered = 0
    while time.monotonic() - started < 4:  # two header timeouts
        writer.write(request_head("GET", b"/healthz", []))
        assert await whole_answer(reader) == 200
        answered += 1
        await asyncio.sleep(0.25)
    writer.close()
    assert answered >= 5


async def test_a_live_event_stream_outlasts_the_header_timeout(
    quick: str, party: PartyFactory
) -> None:
    """An event stream is a request being answered, not an idle connection: it stays open."""
    who = identity(await party("ir.irgc.quds"))
    headers = signed_headers(who, "GET", f"{quick}/v1/events")
    reader, writer = await open_raw(quick)
    writer.write(
        request_head("GET", b"/v1/events", [(k.encode(), v.encode()) for k, v in headers.items()])
    )
    assert await status_or_closed(reader) == 200
    await asyncio.sleep(3)  # three header timeouts
    assert await still_open(reader)
    writer.close()


async def test_a_body_slower_than_the_floor_is_cut_off(
    quick: str, redis: aioredis.Redis, caplog: pytest.LogCaptureFixture
) -> None:
    """A body at 100 bytes a second, under a floor of 1,000, is cut off once its grace is over."""
    before = nonce_free(await store_snapshot(redis))
    body = b'{"envelope": "' + b"a" * 20_000 + b'"}'
    head = request_head("POST", b"/v1/letters", [(b"Content-Length", str(len(body)).encode())])
    with no_server_errors(caplog) as logs:
        raw = await open_raw(quick)
        raw[1].write(head)
        took = await seconds_until_cut_off(raw, body, 10, 0.1)
        entry = await logged(logs, "slow_client_cut_off")
        await logged(logs, "client_disconnected")
    assert RATE_GRACE <= took < RATE_GRACE + WAIT
    assert entry["phase"] == "body"
    assert nonce_free(await store_snapshot(redis)) == before


async def test_a_body_past_the_time_limit_is_cut_off(
    start_courier: CourierFactory, caplog: pytest.LogCaptureFixture
) -> None:
    """A body still arriving when its time limit is up is cut off, however fast it flows."""
    courier = await start_courier(body_timeout=1.5, body_min_rate=0)
    body = b"x" * 1_000_000
    head = request_head("POST", b"/v1/letters", [(b"Content-Length", str(len(body)).encode())])
    with no_server_errors(caplog) as logs:
        raw = await open_raw(courier)
        raw[1].write(head)
        took = await seconds_until_cut_off(raw, body, 1000, 0.05)
        entry = await logged(logs, "slow_client_cut_off")
    assert 1.5 <= took < WAIT
    assert entry["phase"] == "body"


async def test_a_client_that_hangs_up_mid_body_is_a_disconnect_not_a_500(
    courier_url: str,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A hang-up mid-body is logged at info as a client disconnect and counted as 499, not 5xx."""
    before = nonce_free(await store_snapshot(redis))
    counted = await answered_by_status(http, courier_url)
    head = request_head("POST", b"/v1/letters", [(b"Content-Length", b"10000")])
    with no_server_errors(caplog) as logs:
        _, writer = await open_raw(courier_url)
        writer.write(head + b'{"envelope": ')
        await writer.drain()
        await asyncio.sleep(0.2)  # the handler is reading the body
        writer.close()
        entry = await logged(logs, "client_disconnected")
    assert entry["log_level"] == "info"
    after = await answered_by_status(http, courier_url)
    assert server_errors(after) == server_errors(counted)
    assert after["499"] == counted["499"] + 1
    assert nonce_free(await store_snapshot(redis)) == before


# --- huge and malformed requests ----------------------------------------------------------------


@dataclass(frozen=True)
class Target:
    base: str
    who: PartyKeys  # a registered party


Attack = Callable[[Target], bytes]


def _many_headers(target: Target) -> bytes:
    headers = [(f"X-Header-{n}".encode(), b"v") for n in range(1000)]
    return request_head("GET", b"/healthz", headers)


def _huge_body(target: Target) -> bytes:
    return signed(target.who, "POST", target.base, "/v1/letters", b"{" + b" " * (3 * 2**20) + b"}")


def _deep_json(target: Target) -> bytes:
    deep = b"[" * 100_000 + b"]" * 100_000
    return signed(target.who, "POST", target.base, "/v1/letters", deep)


def _deep_json_unsigned(target: Target) -> bytes:
    deep = b'{"a":' * 100_000 + b"1" + b"}" * 100_000
    headers = [(b"Content-Length", str(len(deep)).encode()), (b"Connection", b"close")]
    return request_head("POST", b"/v1/parties", headers) + deep


def _latin1_body(target: Target) -> bytes:
    return signed(
        target.who, "POST", target.base, "/v1/letters", '{"envelope": "é"}'.encode("latin-1")
    )


def _invalid_utf8_body(target: Target) -> bytes:
    return signed(target.who, "POST", target.base, "/v1/letters", b'{"\xff\xfe": "\xc3\x28"}')


def _invalid_utf8_headers(target: Target) -> bytes:
    headers = [
        (b"Signature-Input", b'sig=("@method");keyid="\xff\xfe"'),
        (b"Signature", b"sig=:\xc3\x28:"),
        (b"X-Request-Id", b"\xe2\x82"),
        (b"Connection", b"close"),
    ]
    return request_head("GET", b"/v1/inbox", headers)


def _invalid_utf8_path(target: Target) -> bytes:
    return request_head("GET", b"/v1/parties/\xff\xfe\xc3\x28", [(b"Connection", b"close")])


def _escaped_utf8_path(target: Target) -> bytes:
    return request_head("GET", b"/v1/parties/%FF%FE%C3%28", [(b"Connection", b"close")])


# Each attack and what it gets: a status and, when the courier itself answers, a problem code
# (aiohttp answers a request it cannot parse in plain text, before the courier sees it).
ATTACKS: dict[str, tuple[Attack, int, str | None]] = {
    "1,000 headers": (_many_headers, 400, None),
    "a 3 MiB body": (_huge_body, 413, "payload_too_large"),
    "100k-deep JSON, signed": (_deep_json, 400, "bad_request"),
    "100k-deep JSON, unsigned registration": (_deep_json_unsigned, 400, "bad_request"),
    "a Latin-1 body": (_latin1_body, 400, "bad_request"),
    "a body of invalid UTF-8": (_invalid_utf8_body, 400, "bad_request"),
    "headers of invalid UTF-8": (_invalid_utf8_headers, 401, "unauthenticated"),
    "a path of invalid UTF-8": (_invalid_utf8_path, 400, None),
    "a percent-encoded path of invalid UTF-8": (_escaped_utf8_path, 400, "invalid_name"),
}


@pytest.fixture
async def target(courier_url: str, party: PartyFactory) -> Target:
    return Target(courier_url, identity(await party("us.cia.director")))


@pytest.mark.parametrize(("attack", "status", "code"), ATTACKS.values(), ids=ATTACKS.keys())
async def test_each_attack_gets_its_4xx_and_changes_nothing(
    attack: Attack,
    status: int,
    code: str | None,
    target: Target,
    redis: aioredis.Redis,
    http: aiohttp.ClientSession,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """The attack is refused with a 4xx (or its connection closed), nothing logs or counts a 5xx,
    and the store is as it was."""
    before = nonce_free(await store_snapshot(redis))
    counted = await answered_by_status(http, target.base)
    with no_server_errors(caplog) as logs:
        reader, writer = await open_raw(target.base)
        writer.write(attack(target))
        with contextlib.suppress(ConnectionError):  # refused before all was sent: still readable
            await writer.drain()
        answer = await whole_answer_until_closed(reader)
        writer.close()
    assert answer.status == status, answer
    if code is not None:
        assert answer.problem()["code"] == code, answer
    else:  # refused by aiohttp's parser: the client's fault, one line at info
        assert [entry["log_level"] for entry in logs if entry["event"] == "malformed_request"] == [
            "info"
        ]
    assert server_errors(await answered_by_status(http, target.base)) == server_errors(counted)
    assert nonce_free(await store_snapshot(redis)) == before
