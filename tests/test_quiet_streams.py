"""Live streams through long quiet spells (40, 60 and 90 s), on real sockets and a real Redis.

The three spells run at once, started by one module fixture, so the module costs about 95 s of
wall time rather than 190; each test then waits for its own scenario's findings.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import AsyncExitStack, aclosing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
import redis.asyncio as aioredis
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import REGISTRY
from structlog.testing import capture_logs

from channel.courier.embedded import EmbeddedRedis
from channel.courier.server.app import create_app
from channel.courier.settings import Settings
from channel.exercise.author.scenario import load_scenario
from channel.exercise.eventlog import read_log
from channel.exercise.run.control import CONTROL_FILE, send_command
from channel.exercise.run.play import RunOptions, play
from channel.party.client import Client
from channel.party.keyring import Keyring
from channel.protocol.models import LiveEvent
from channel.protocol.notice import CONTROL_PARTY
from channel.protocol.seal import PartyKeys
from tests.conftest import couriers, free_port, signed_headers

pytestmark = pytest.mark.asyncio(loop_scope="module")

IDLE, AWAY, PERSON = 40.0, 60.0, 90.0  # the quiet spells, in seconds
WAIT = 20.0  # for an event once it is sent, on a loaded machine
DIRECTOR, QUDS = "us.cia.director", "ir.irgc.quds"

SCENARIO = """\
title: A person after a quiet spell
parties:
  - {name: us.cia.director, play: "bot:quiet"}
  - {name: ir.irgc.quds, play: human, stand_in: "bot:quiet"}
clock:
  start: 2017-11-20T09:00:00Z
  speed: 60
  end: T+10:00:00
policies:
  quiet: {}
injects:
  - id: INJ-01
    at: T+05:00:00
    from: us.cia.director
    to: ir.irgc.quds
    subject: Warning
    body: Do not.
    expect:
      - {id: EXP-1, check: replied, from: us.cia.director, to: ir.irgc.quds, within: 10d}
"""


@dataclass
class Spells:
    idle: asyncio.Task[dict[str, Any]]
    away: asyncio.Task[tuple[list[LiveEvent], str]]
    person: asyncio.Task[tuple[list[dict[str, Any]], str]]
    logs: list[MutableMapping[str, Any]] = field(default_factory=list)
    redis_errors_before: float = 0.0


def redis_errors() -> float:
    return sum(
        sample.value
        for metric in REGISTRY.collect()
        if metric.name == "backchannel_redis_errors"
        for sample in metric.samples
        if sample.name == "backchannel_redis_errors_total"
    )


@pytest_asyncio.fixture(scope="module", loop_scope="module")
async def spells(
    redis_server: EmbeddedRedis, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Spells]:
    """Start the three quiet spells at once; stop whatever is left of them afterwards."""
    flush = aioredis.Redis.from_url(redis_server.url)
    await flush.flushdb()
    await flush.aclose()
    tmp = tmp_path_factory.mktemp("quiet")
    key = Ed25519PrivateKey.generate()
    with capture_logs() as logs:
        async with AsyncExitStack() as stack:
            start = await stack.enter_async_context(couriers(redis_server.url, key, tmp))
            before = redis_errors()
            found = Spells(
                asyncio.create_task(idle_stream(await start())),
                asyncio.create_task(away_and_back(redis_server, key, tmp, await start())),
                asyncio.create_task(person_after_quiet(tmp / "run")),
                logs,
                before,
            )
            yield found
            for task in (found.idle, found.away, found.person):
                task.cancel()
                await asyncio.gather(task, return_exceptions=True)


async def registered(base: str, name: str) -> Client:
    client = Client(base, PartyKeys.generate(name))
    await client.register()
    return client


async def idle_stream(base: str) -> dict[str, Any]:
    """Hold one raw stream quiet for IDLE seconds, then send it a letter."""
    svr, tass = await registered(base, "ru.svr.moscow"), await registered(base, "ru.tass.wire")
    url = f"{base}/v1/events"
    assert svr.identity is not None
    headers = signed_headers(svr.identity, "GET", url)
    timeout = aiohttp.ClientTimeout(total=None, sock_read=IDLE + WAIT)
    found: dict[str, Any] = {"pings": 0, "closed": False}
    async with (
        aiohttp.ClientSession() as session,
        session.get(url, headers=headers, timeout=timeout) as reply,
    ):
        found["status"] = reply.status
        until = time.monotonic() + IDLE
        while (left := until - time.monotonic()) > 0:
            try:
                line = await asyncio.wait_for(reply.content.readline(), left)
            except TimeoutError:
                break
            if not line:
                found["closed"] = True
                break
            found["pings"] += line == b": ping\r\n"
        sent, _ = await tass.send_letter("ru.svr.moscow", "after the quiet spell")
        found["sent"] = sent.envelope.id
        text = await asyncio.wait_for(reply.content.readuntil(b"\r\n\r\n"), WAIT)
        while b"event: event" not in text:
            text = await asyncio.wait_for(reply.content.readuntil(b"\r\n\r\n"), WAIT)
        found["event"] = text.decode()
    await svr.close()
    await tass.close()
    return found


async def away_and_back(
    redis_server: EmbeddedRedis, key: Ed25519PrivateKey, tmp: Path, other: str
) -> tuple[list[LiveEvent], str]:
    """A watcher connects without Last-Event-ID; AWAY seconds later its courier is down, a letter
    is sent through another courier, and the first comes back on the same port."""
    port = free_port()
    settings = Settings(open_registration=True, data_dir=tmp, port=port)

    async def serve() -> web.AppRunner:
        runner = web.AppRunner(create_app(settings, redis_server.url, key), access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        return runner

    courier = await serve()
    watcher = await registered(f"http://127.0.0.1:{port}", "ch.fdfa.bern")
    sender = await registered(other, "ir.mfa.tehran")
    seen: list[LiveEvent] = []

    async def watch() -> None:
        async with aclosing(watcher.watch()) as events:
            async for event in events:
                seen.append(event)

    watching = asyncio.create_task(watch())
    try:
        await asyncio.sleep(AWAY - 2)
        await courier.cleanup()  # the watcher is cut off and retries
        sent, _ = await sender.send_letter("ch.fdfa.bern", "sent while you were away")
        await asyncio.sleep(1)
        courier = await serve()
        for _ in range(int(WAIT * 10)):
            if seen:
                break
            await asyncio.sleep(0.1)
        return seen, sent.envelope.id
    finally:
        watching.cancel()
        await asyncio.gather(watching, return_exceptions=True)
        await watcher.close()
        await sender.close()
        await courier.cleanup()


async def person_after_quiet(out: Path) -> tuple[list[dict[str, Any]], str]:
    """A real-time run: control fires the warning, the person replies after PERSON seconds."""
    out.parent.mkdir(parents=True, exist_ok=True)
    source_path = out.parent / "quiet.yaml"
    source_path.write_text(SCENARIO, encoding="utf-8")
    running = asyncio.create_task(
        play(RunOptions(source=load_scenario(source_path), out=out, speed=1.0))
    )
    try:
        await poll(control_api(out), "the control API")
        assert (await send_command(out, "fire", "INJ-01"))["ok"]
        ring = Keyring(out / "keyring")
        url = read_log(out / "events.jsonl")[0]["evidence"]["courier_url"]
        async with Client(url, ring.load(QUDS)) as quds:

            async def warning() -> list[Any]:  # control's notices (started, ...) arrive too
                return [found for found in await quds.inbox() if found.sender != CONTROL_PARTY]

            letters = await poll(warning, "the warning in the person's inbox")
            await asyncio.sleep(PERSON)
            sent, _ = await quds.send_letter(DIRECTOR, "Noted.", in_reply_to=letters[0].id)
        await poll(lambda: met(out), "the person's reply scored", seconds=WAIT)
        await send_command(out, "speed", "max")
        played = await asyncio.wait_for(running, 60)
        return read_log(played.log), sent.envelope.id
    finally:
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)


async def met(out: Path) -> list[dict[str, Any]]:
    return [r for r in read_log(out / "events.jsonl") if r["kind"] == "expectation_met"]


def control_api(out: Path) -> Callable[[], Awaitable[bool]]:
    async def opened() -> bool:
        return (out / CONTROL_FILE).exists()

    return opened


async def poll(fetch: Callable[[], Awaitable[Any]], what: str, seconds: float = WAIT) -> Any:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        got = await fetch()
        if got:
            return got
        await asyncio.sleep(0.1)
    raise AssertionError(f"never saw {what}")


async def result(task: Awaitable[Any]) -> Any:
    return await asyncio.wait_for(task, PERSON + 60)


async def test_an_idle_stream_stays_open_with_keepalives_and_then_delivers(spells: Spells) -> None:
    """40 s idle: keep-alive comments, never closed by the server, no Redis error counted or
    anything logged as a warning or error; a letter sent after the spell arrives on it."""
    found = await result(spells.idle)
    assert found["status"] == 200
    assert not found["closed"]
    assert found["pings"] >= 2  # every 15 s
    assert f'"letter_id":"{found["sent"]}"' in found["event"].replace(" ", "")
    assert redis_errors() == spells.redis_errors_before
    loud = [e for e in spells.logs if e["log_level"] in ("warning", "error", "critical")]
    assert loud == []


async def test_a_watcher_without_an_id_sees_a_letter_sent_while_it_was_cut_off(
    spells: Spells,
) -> None:
    """Connected without Last-Event-ID, cut off 60 s later: the letter sent meanwhile arrives."""
    seen, sent = await result(spells.away)
    assert [event.letter_id for event in seen] == [sent]


async def test_the_exercise_runner_sees_a_persons_letter_after_90_s_of_quiet(
    spells: Spells,
) -> None:
    """The runner, watching from the run's start, scores a person's reply sent after 90 s."""
    records, sent = await result(spells.person)
    letters = [r["data"] for r in records if r["kind"] == "letter_sent"]
    assert [(d["from"], d["by"]) for d in letters] == [(DIRECTOR, "bot"), (QUDS, "human")]
    assert [r["data"]["expectation"] for r in records if r["kind"] == "expectation_met"] == [
        "EXP-1"
    ]
    assert sent in str(records)
