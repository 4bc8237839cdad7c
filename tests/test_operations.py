"""Operations: per-party rate limits, Prometheus metrics, readiness, request ids in the logs, and
the metrics of several workers, all against real Redis and real sockets."""

from __future__ import annotations

import asyncio
import math
import os
import re
import select
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from pathlib import Path

import aiohttp
import pytest
import redis.asyncio as aioredis
import structlog
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import REGISTRY
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from channel.courier.embedded import EmbeddedRedis
from channel.courier.server import metrics
from channel.courier.server.app import create_app
from channel.courier.settings import Settings
from channel.party.client import Client
from channel.protocol.canonical import now_utc, parse_time
from channel.protocol.errors import RateLimited
from channel.protocol.lifecycle import State
from tests.conftest import (
    Connect,
    CourierFactory,
    Reply,
    assert_problem,
    free_port,
    identity,
    raw_call,
    signed_call,
    signed_headers,
    store_snapshot,
)

QUDS = "ir.irgc.quds"
DIRECTOR = "us.cia.director"
LATENCY = "backchannel_request_duration_seconds_count"
LETTERS = "backchannel_letter_events_total"

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


# --- helpers -------------------------------------------------------------------------------------


async def scrape(http: aiohttp.ClientSession, base: str) -> Samples:
    """GET /metrics, parsed: (sample name, sorted labels) -> value."""
    reply = await raw_call(http, "GET", f"{base}/metrics")
    assert reply.status == 200
    assert reply.content_type == "text/plain"
    samples: Samples = {}
    for family in text_string_to_metric_families(reply.body.decode()):
        for sample in family.samples:
            samples[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return samples


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def route_labels(samples: Samples) -> set[str]:
    return {v for (_, labels) in samples for k, v in labels if k == "route"}


async def inbox_as(http: aiohttp.ClientSession, base: str, acting: Client) -> Reply:
    return await signed_call(http, identity(acting), "GET", f"{base}/v1/inbox")


# --- rate limits ---------------------------------------------------------------------------------


async def test_a_burst_over_the_limit_is_429_with_retry_after(
    start_courier: CourierFactory,
    director: Client,
    quds: Client,
    connect: Connect,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
) -> None:
    """Past its burst a party gets 429 rate_limited with Retry-After; a send is refused unstored."""
    # One token every five seconds: nothing refills while the burst is spent.
    base = await start_courier(rate_limit_per_second=0.2, rate_limit_burst=3)
    for _ in range(3):
        assert (await inbox_as(http, base, director)).status == 200
    refused = await inbox_as(http, base, director)
    problem = assert_problem(refused, 429, "rate_limited")
    assert 0 < problem["retry_after_ms"] <= 5000
    assert refused.headers["Retry-After"] == str(math.ceil(problem["retry_after_ms"] / 1000))
    assert "X-Request-Id" in refused.headers
    sealed = await director.seal(QUDS, "over the limit")
    body = sealed.model_dump_json().encode()
    url = f"{base}/v1/letters"
    before = await store_snapshot(redis)
    send = await raw_call(
        http, "POST", url, body, signed_headers(identity(director), "POST", url, body)
    )
    assert_problem(send, 429, "rate_limited")
    assert await store_snapshot(redis) == before
    with pytest.raises(RateLimited):
        await connect(base, identity(director)).inbox()


async def test_rate_limit_is_per_party(
    start_courier: CourierFactory, director: Client, quds: Client, http: aiohttp.ClientSession
) -> None:
    """One party over its limit leaves another party's requests untouched."""
    base = await start_courier(rate_limit_per_second=0.2, rate_limit_burst=2)
    statuses = [(await inbox_as(http, base, director)).status for _ in range(3)]
    assert statuses == [200, 200, 429]
    assert [(await inbox_as(http, base, quds)).status for _ in range(2)] == [200, 200]
    assert (await inbox_as(http, base, director)).status == 429


async def test_a_limited_party_is_served_again_after_the_retry_time(
    start_courier: CourierFactory, director: Client, http: aiohttp.ClientSession
) -> None:
    """Once the time a 429 names has passed, the party's next request is served."""
    base = await start_courier(rate_limit_per_second=10, rate_limit_burst=2)
    for _ in range(100):
        reply = await inbox_as(http, base, director)
        if reply.status == 429:
            break
        assert reply.status == 200
    problem = assert_problem(reply, 429, "rate_limited")
    assert problem["retry_after_ms"] <= 100  # one token at 10 a second
    await asyncio.sleep(problem["retry_after_ms"] / 1000 + 0.02)
    assert (await inbox_as(http, base, director)).status == 200


async def test_bucket_key_expires_once_full_and_zero_turns_limits_off(
    start_courier: CourierFactory,
    director: Client,
    http: aiohttp.ClientSession,
    redis: aioredis.Redis,
) -> None:
    """A bucket key lives only until it would be full again; with a rate of 0 nothing is limited."""
    key = f"bc:{{{DIRECTOR}}}:bucket"
    limited = await start_courier(rate_limit_per_second=20, rate_limit_burst=3)
    assert (await inbox_as(http, limited, director)).status == 200
    assert 0 < await redis.pttl(key) <= 50  # one token at 20 a second
    await redis.delete(key)
    unlimited = await start_courier(rate_limit_per_second=0, rate_limit_burst=1)
    assert {(await inbox_as(http, unlimited, director)).status for _ in range(5)} == {200}
    assert not await redis.exists(key)


async def test_413_names_the_limit_and_spends_no_token(
    start_courier: CourierFactory, director: Client, quds: Client, http: aiohttp.ClientSession
) -> None:
    """An oversized body is refused before authentication: 413 naming the limit, no token spent."""
    base = await start_courier(max_body_bytes=4096, rate_limit_per_second=0.01, rate_limit_burst=1)
    sealed = await director.seal(QUDS, "x" * 8000)
    body = sealed.model_dump_json().encode()
    url = f"{base}/v1/letters"
    reply = await raw_call(
        http, "POST", url, body, signed_headers(identity(director), "POST", url, body)
    )
    problem = assert_problem(reply, 413, "payload_too_large")
    assert problem["max_bytes"] == 4096
    assert "4096 bytes" in problem["detail"]
    assert "X-Request-Id" in reply.headers
    assert (await inbox_as(http, base, director)).status == 200  # the one token was still there
    assert (await inbox_as(http, base, director)).status == 429


# --- metrics -------------------------------------------------------------------------------------


async def _wait_past(expires_at: str) -> None:
    remaining = (parse_time(expires_at) - now_utc()).total_seconds()
    await asyncio.sleep(max(remaining, 0) + 0.05)


async def test_metrics_count_every_receipt_and_time_requests_by_route_template(
    director: Client, quds: Client, http: aiohttp.ClientSession
) -> None:
    """/metrics counts each receipt issued by event and times requests by route template."""
    base = director.base_url
    before = await scrape(http, base)
    opened, _ = await director.send_letter(QUDS, "to be opened")
    returned, _ = await director.send_letter(QUDS, "to be returned")
    await quds.inbox()
    await quds.open_letter(opened.envelope.id)
    await quds.return_letter(returned.envelope.id, reason="no")
    withdrawn, _ = await director.send_letter(QUDS, "to be withdrawn")
    await director.withdraw_letter(withdrawn.envelope.id)
    expiring = await director.seal(QUDS, "to expire", expires_in=timedelta(seconds=1))
    await director.send(expiring)
    await _wait_past(expiring.envelope.expires_at)
    letters = [opened, returned, withdrawn, expiring]
    issued: Counter[str] = Counter()
    for letter in letters:
        issued.update(r.event.value for r in (await director.status(letter.envelope.id)).receipts)
    missing = await raw_call(http, "GET", f"{base}/v1/letters/nowhere/{opened.envelope.id}/x")
    assert missing.status == 404
    after = await scrape(http, base)

    assert set(issued) == {state.value for state in State}  # every event happened
    for event in State:
        grew = value(after, LETTERS, event=event.value) - value(before, LETTERS, event=event.value)
        assert grew == issued[event.value], event
    for route, method, status, times in [
        ("/v1/letters", "POST", "201", 4),
        ("/v1/inbox", "GET", "200", 1),
        ("/v1/letters/{letter_id}/open", "POST", "200", 1),
        ("/v1/letters/{letter_id}/return", "POST", "200", 1),
        ("/v1/letters/{letter_id}/withdraw", "POST", "200", 1),
        (metrics.UNMATCHED, "GET", "404", 1),
    ]:
        labels = {"route": route, "method": method, "status": status}
        assert value(after, LATENCY, **labels) - value(before, LATENCY, **labels) == times, labels
    routes = route_labels(after)
    assert "/v1/letters/{letter_id}" in routes
    assert not [r for r in routes if any(m.envelope.id in r for m in letters)]
    assert ("backchannel_event_streams_open", ()) in after


async def test_metrics_count_redis_failures(tmp_path: Path, http: aiohttp.ClientSession) -> None:
    """Each request that meets a Redis failure adds one to backchannel_redis_errors_total."""
    settings = Settings(port=0, data_dir=tmp_path, sweep_interval=3600)
    app = create_app(settings, f"redis://127.0.0.1:{free_port()}/0", Ed25519PrivateKey.generate())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        before = await scrape(http, base)
        for _ in range(2):
            assert_problem(
                await raw_call(http, "GET", f"{base}/v1/parties/{QUDS}"), 503, "store_unavailable"
            )
        after = await scrape(http, base)
    finally:
        await runner.cleanup()

    def failures(samples: Samples) -> float:
        return sum(
            v for (name, _), v in samples.items() if name == "backchannel_redis_errors_total"
        )

    assert failures(after) - failures(before) == 2
    assert value(after, "backchannel_redis_errors_total", error="ConnectionError") >= 2


def test_stream_helpers_move_the_open_streams_gauge() -> None:
    """stream_opened() and stream_closed() raise and lower backchannel_event_streams_open."""
    name = "backchannel_event_streams_open"
    start = REGISTRY.get_sample_value(name) or 0.0
    metrics.stream_opened()
    metrics.stream_opened()
    assert REGISTRY.get_sample_value(name) == start + 2
    metrics.stream_closed()
    metrics.stream_closed()
    assert REGISTRY.get_sample_value(name) == start


# --- readiness and logs --------------------------------------------------------------------------


@pytest.fixture
async def own_redis(tmp_path: Path) -> AsyncIterator[EmbeddedRedis]:
    """A redis-server of this test's own, which the test may stop and start again."""
    server = EmbeddedRedis(tmp_path / "redis", port=free_port(), fsync="everysec")
    server.start()
    yield server
    server.stop()


async def _ready_within(http: aiohttp.ClientSession, base: str, seconds: float) -> Reply:
    """/readyz, asked until it answers 200 or `seconds` pass (a restarted Redis reconnects)."""
    deadline = time.monotonic() + seconds
    while True:
        reply = await raw_call(http, "GET", f"{base}/readyz")
        if reply.status == 200 or time.monotonic() > deadline:
            return reply
        await asyncio.sleep(0.05)


async def test_readiness_follows_redis_down_and_back(
    own_redis: EmbeddedRedis, tmp_path: Path, http: aiohttp.ClientSession
) -> None:
    """/readyz is 200 while Redis answers, 503 with Retry-After while it is down, 200 once back."""
    settings = Settings(port=0, data_dir=tmp_path, sweep_interval=3600)
    app = create_app(settings, own_redis.url, Ed25519PrivateKey.generate())
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    base = f"http://127.0.0.1:{runner.addresses[0][1]}"
    try:
        up = await raw_call(http, "GET", f"{base}/readyz")
        assert (up.status, up.json()) == (200, {"status": "ready"})
        own_redis.stop()
        down = await raw_call(http, "GET", f"{base}/readyz")
        assert_problem(down, 503, "store_unavailable")
        assert down.headers["Retry-After"] == "1"
        assert (await raw_call(http, "GET", f"{base}/healthz")).status == 200  # alive, not ready
        own_redis.start()
        assert (await _ready_within(http, base, 10)).status == 200
    finally:
        await runner.cleanup()


def _contextvars() -> structlog.typing.Processor:
    return structlog.contextvars.merge_contextvars


async def test_log_lines_carry_the_request_id_given_or_made(
    director: Client, quds: Client, http: aiohttp.ClientSession
) -> None:
    """Every log line of a request carries its id: the client's when well-formed, else a new one."""
    url = f"{director.base_url}/v1/letters"
    sealed = await director.seal(QUDS, "logged by id")
    body = sealed.model_dump_json().encode()
    headers = signed_headers(identity(director), "POST", url, body) | {"X-Request-Id": "trace-7.a"}
    with capture_logs(processors=[_contextvars()]) as logs:
        sent = await raw_call(http, "POST", url, body, headers)
    assert sent.status == 201
    assert sent.headers["X-Request-Id"] == "trace-7.a"
    assert "letter_accepted" in [entry["event"] for entry in logs]
    assert {entry.get("request_id") for entry in logs} == {"trace-7.a"}

    missing = f"{director.base_url}/v1/letters/{sealed.envelope.id}x"
    headers = signed_headers(identity(director), "GET", missing) | {"X-Request-Id": "bad id <>"}
    with capture_logs(processors=[_contextvars()]) as logs:
        refused = await raw_call(http, "GET", missing, headers=headers)
    made = refused.headers["X-Request-Id"]
    assert re.fullmatch(r"[0-9a-f]{16}", made)
    assert "request_refused" in [entry["event"] for entry in logs]
    assert {entry.get("request_id") for entry in logs} == {made}


# --- several workers -----------------------------------------------------------------------------


READY = re.compile(r"Courier ready at (http://\S+)")


@pytest.fixture
def two_workers(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """`channel serve --config FILE` with two workers on one port; yields (URL, data dir)."""
    data = tmp_path / "data"
    (data / "metrics").mkdir(parents=True)
    (data / "metrics" / "stale.db").write_bytes(b"from an earlier run")
    config = tmp_path / "courier.toml"
    config.write_text(
        f'port = {free_port()}\nworkers = 2\ndata_dir = "data"\nopen_registration = true\n'
        'log_format = "json"\nlog_level = "warning"\nfsync = "everysec"\n'
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith(("CHANNEL_", "PROMETHEUS_"))}
    with (tmp_path / "courier.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "-m", "channel", "serve", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
        )
    try:
        yield _wait_ready(process, tmp_path / "courier.log"), data
    finally:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        assert process.stdout is not None
        process.stdout.close()


def _wait_ready(process: subprocess.Popen[str], log: Path) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and process.poll() is None:
        if select.select([process.stdout], [], [], 0.2)[0]:
            found = READY.search(process.stdout.readline())
            if found:
                return found.group(1)
    raise AssertionError(f"the courier did not start: {log.read_text()[-2000:]}")


def _metric_pids(directory: Path) -> set[str]:
    return {
        match.group(1) for p in directory.iterdir() if (match := re.search(r"_(\d+)\.db$", p.name))
    }


async def test_every_worker_reports_the_whole_courier(two_workers: tuple[str, Path]) -> None:
    """With two workers, /metrics from either one counts the requests both of them answered."""
    base, data = two_workers
    assert not (data / "metrics" / "stale.db").exists()  # the directory is emptied at start
    for _ in range(200):  # the second worker starts a little after the first
        if len(_metric_pids(data / "metrics")) == 2:
            break
        await asyncio.sleep(0.1)
    assert len(_metric_pids(data / "metrics")) == 2  # both processes keep their values there
    calls = 12
    labels = {"route": "/healthz", "method": "GET", "status": "200"}
    # A fresh connection per request, so the kernel spreads them over both workers.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as http:
        for _ in range(calls):
            assert (await raw_call(http, "GET", f"{base}/healthz")).status == 200
        for _ in range(4):
            assert value(await scrape(http, base), LATENCY, **labels) == calls
