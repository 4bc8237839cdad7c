"""`make bench`: figures for the courier, printed, never asserted.

Starts `channel serve` (embedded Redis, appendfsync always) in a temp dir and measures:
  1. full sends/s: authenticated (RFC 9421), sealed, receipted; requests are prepared beforehand
     in another process so that the load generator's own crypto does not compete with the server;
  2. send latency p50/p99 at half the measured rate (open loop);
  3. send → inbox → open latency p50/p99 through the typed client;
  4. Redis memory per queued 1 KB letter;
  5. send → live event latency p50/p99 (send through replica A, watcher on replica B), with one
     replica (A = B) and with two `channel serve` processes sharing one Redis;
  6. scale-out: sends/s and send → live event latency with one replica and with two, on a single
     Redis and on a local three-master Redis Cluster;
  7. `channel --help` start-up time;
  8. each bundled exercise scenario at speed max, bots in every seat: the whole
     `channel exercise run` (embedded courier start, play, report) and the play alone.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from pathlib import Path

import aiohttp
import redis.asyncio as aioredis

from channel.party.client import Client
from channel.protocol.httpsig import sign_request
from channel.protocol.seal import PartyKeys

BODY_1K = "x" * 1024


@contextmanager
def courier(
    workers: int, fsync: str, *, data: Path | None = None, redis_url: str | None = None
) -> Iterator[tuple[str, str]]:
    """A real `channel serve` process; yields (base URL, Redis URL).

    With `redis_url` it joins that Redis as another replica (same data dir, so same courier key).
    """
    owned = data is None
    data = data or Path(tempfile.mkdtemp(prefix="bench-"))
    command = [
        sys.executable,
        "-m",
        "channel",
        "serve",
        "--port",
        "0" if workers == 1 else str(_free_port()),
        "--data-dir",
        str(data),
        "--open-registration",
        "--workers",
        str(workers),
        "--log-level",
        "warning",
    ]
    if redis_url:
        command += ["--redis", redis_url]
    # Per-party rate limits guard a real courier; the load here is deliberate, so they are off.
    env = os.environ | {"CHANNEL_FSYNC": fsync, "CHANNEL_RATE_LIMIT_PER_SECOND": "0"}
    process = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        match = re.search(r"(http://\S+)", line)
        if not match:
            raise SystemExit(f"the courier did not start: {line!r}")
        time.sleep(0.5 * workers)  # let the other workers bind the port
        yield match.group(1), redis_url or f"unix://{data}/redis/redis.sock"
    finally:
        process.terminate()
        process.wait(timeout=20)
        if owned:
            shutil.rmtree(data, ignore_errors=True)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def register_pairs(
    base: str, pairs: int, tag: str = "main"
) -> list[tuple[PartyKeys, PartyKeys]]:
    out = []
    async with Client(base) as anonymous:
        for i in range(pairs):
            sender = PartyKeys.generate(f"bench.{tag}.sender-{i}")
            recipient = PartyKeys.generate(f"bench.{tag}.recipient-{i}")
            await anonymous.as_party(sender).register()
            await anonymous.as_party(recipient).register()
            out.append((sender, recipient))
    return out


def prepare_sends(
    base: str, pairs: list[tuple[PartyKeys, PartyKeys]], count: int
) -> list[tuple[bytes, dict[str, str]]]:
    """Sealed letters with their signed request headers, ready to POST."""

    async def build() -> list[tuple[bytes, dict[str, str]]]:
        url = f"{base}/v1/letters"
        prepared = []
        async with Client(base) as anonymous:
            clients = [anonymous.as_party(s) for s, _ in pairs]
            for i in range(count):
                sender_client = clients[i % len(pairs)]
                recipient = pairs[i % len(pairs)][1]
                sealed = await sender_client.seal(
                    recipient.name, BODY_1K, expires_in=timedelta(days=1)
                )
                body = sealed.model_dump_json(exclude_none=True).encode()
                sender = pairs[i % len(pairs)][0]
                headers = sign_request(sender.name, sender.signing, "POST", url, body)
                headers["Content-Type"] = "application/json"
                prepared.append((body, headers))
        return prepared

    return asyncio.run(build())


async def fire(
    bases: list[str],
    prepared: list[tuple[bytes, dict[str, str]]],
    concurrency: int,
    rate: float | None,
) -> tuple[float, list[float], int]:
    """POST every prepared send, spread over the replicas in `bases` (signatures cover the path,
    not the host); closed loop at `concurrency`, or open loop at `rate` per second."""
    urls = [f"{base}/v1/letters" for base in bases]
    latencies: list[float] = []
    failures = 0
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def one(n: int, body: bytes, headers: dict[str, str]) -> None:
            nonlocal failures
            start = time.perf_counter()
            async with session.post(urls[n % len(urls)], data=body, headers=headers) as reply:
                await reply.read()
                if reply.status != 201:
                    failures += 1
            latencies.append(time.perf_counter() - start)

        started = time.perf_counter()
        if rate is None:
            queue = iter(enumerate(prepared))

            async def worker() -> None:
                for n, (body, headers) in queue:
                    await one(n, body, headers)

            await asyncio.gather(*(worker() for _ in range(concurrency)))
        else:
            tasks = []
            for i, (body, headers) in enumerate(prepared):
                delay = started + i / rate - time.perf_counter()
                if delay > 0:
                    await asyncio.sleep(delay)
                tasks.append(asyncio.create_task(one(i, body, headers)))
            await asyncio.gather(*tasks)
        elapsed = time.perf_counter() - started
    return elapsed, latencies, failures


async def round_trips(base: str, rounds: int) -> list[float]:
    """send → inbox → open through the typed client, one at a time."""
    async with Client(base) as anonymous:
        sender = anonymous.as_party(PartyKeys.generate("bench.rt-sender"))
        recipient = anonymous.as_party(PartyKeys.generate("bench.rt-recipient"))
        await sender.register()
        await recipient.register()
        await sender.courier_key()
        await recipient.courier_key()
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            sealed, _ = await sender.send_letter("bench.rt-recipient", BODY_1K)
            await recipient.inbox(limit=1)
            await recipient.open_letter(sealed.envelope.id)
            times.append(time.perf_counter() - start)
        return times


async def memory_per_letter(base: str, redis_url: str, letters: int) -> tuple[float, float]:
    """Bytes of Redis memory per queued letter: with its request nonce, and the letter alone."""
    redis = aioredis.Redis.from_url(redis_url)
    async with Client(base) as anonymous:
        sender = anonymous.as_party(PartyKeys.generate("bench.mem-sender"))
        await sender.register()
        await anonymous.as_party(PartyKeys.generate("bench.mem-recipient")).register()
        sealed = [await sender.seal("bench.mem-recipient", BODY_1K) for _ in range(letters)]
        before = (await redis.info("memory"))["used_memory"]
        for letter in sealed:
            await sender.send(letter)
        with_nonces = (await redis.info("memory"))["used_memory"]
        # A request nonce lives for two minutes after each request; it is not the letter's.
        async for key in redis.scan_iter(match="bc:{bench.mem-sender}:nonce:*", count=1000):
            await redis.delete(key)
        letters_only = (await redis.info("memory"))["used_memory"]
    await redis.aclose()
    return (with_nonces - before) / letters, (letters_only - before) / letters


async def delivery_latency(send_via: str, watch_via: str, rounds: int, tag: str) -> list[float]:
    """Seconds from just before a send (replica A) to its event at a watcher (replica B)."""
    sender = PartyKeys.generate(f"bench.live-sender-{tag}")
    recipient = PartyKeys.generate(f"bench.live-recipient-{tag}")
    async with Client(send_via, sender) as on_a, Client(watch_via, recipient) as on_b:
        await on_a.register()
        await on_b.register()
        sealed = [await on_a.seal(recipient.name, BODY_1K) for _ in range(rounds)]
        arrived: dict[str, float] = {}
        ready = asyncio.Event()

        async def watch() -> None:
            ready.set()
            async for event in on_b.watch():
                if event.kind == "letter":
                    arrived[event.letter_id] = time.perf_counter()
                    if len(arrived) == rounds:
                        return

        watcher = asyncio.create_task(watch())
        await ready.wait()
        await asyncio.sleep(0.3)  # the stream is open
        sent: dict[str, float] = {}
        for letter in sealed:
            sent[letter.envelope.id] = time.perf_counter()
            await on_a.send(letter)
            await asyncio.sleep(0.005)
        await asyncio.wait_for(watcher, 60)
    return [arrived[i] - sent[i] for i in sent]


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def cli_startup(runs: int = 10) -> float:
    channel = Path(sys.executable).with_name("channel")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(channel), "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def spread(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5) * 1000:.2f} ms  p99 {percentile(values, 0.99) * 1000:.2f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sends", type=int, default=6000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--fsync", default="always", choices=["always", "everysec"])
    parser.add_argument("--exercises-only", action="store_true", help="Only figure 8.")
    args = parser.parse_args()
    if args.exercises_only:
        exercises()
        return

    cores, workers = os.cpu_count(), args.workers
    print(f"Backchannel bench: {cores} cores, {workers} courier workers, appendfsync {args.fsync}")
    with courier(args.workers, args.fsync) as (base, redis_url):
        pairs = asyncio.run(register_pairs(base, 16))
        prepared = prepare_sends(base, pairs, args.sends)
        elapsed, latencies, failures = asyncio.run(fire([base], prepared, args.concurrency, None))
        rate = len(prepared) / elapsed
        print(f"full sends/s, closed loop at {args.concurrency} connections: {rate:,.0f}")
        print(f"  latency {spread(latencies)}  failures {failures}")
        half = prepare_sends(base, pairs, min(args.sends, int(rate / 2 * 3)))
        elapsed, latencies, failures = asyncio.run(fire([base], half, args.concurrency, rate / 2))
        print(f"send at {rate / 2:,.0f}/s, open loop: {spread(latencies)}  failures {failures}")
        trips = asyncio.run(round_trips(base, 300))
        print(f"send → inbox → open, typed client, one at a time: {spread(trips)}")
        with_nonce, alone = asyncio.run(memory_per_letter(base, redis_url, 2000))
        print(
            f"Redis memory per queued 1 KB letter: {alone / 1024:.2f} KB "
            f"({with_nonce / 1024:.2f} KB while its request nonce is remembered)"
        )
    live_delivery(args.fsync)
    scale_out(args.fsync, min(args.sends, 3000))
    print(f"channel --help start-up, median of 10: {cli_startup() * 1000:.0f} ms")
    exercises()


def exercises() -> None:
    """Bundled scenarios at speed max: the CLI end to end, and the play alone, in-process."""
    from channel.exercise.eventlog import read_log
    from channel.exercise.play import RunOptions, play
    from channel.exercise.scenario import bundled_dir, load_scenario
    from channel.logs import configure_logging

    configure_logging("console", "error")
    channel = Path(sys.executable).with_name("channel")
    print("exercise scenarios at speed max, bots in every seat:")
    for path in sorted(bundled_dir().glob("*.yaml")):
        with tempfile.TemporaryDirectory(prefix="bench-exercise-") as tmp:
            start = time.perf_counter()
            command = [str(channel), "exercise", "run", path.stem, "--rehearse", "--no-live"]
            subprocess.run(
                [*command, "--out", f"{tmp}/cli"],
                check=True,
                capture_output=True,
                stdin=subprocess.DEVNULL,
            )
            whole = time.perf_counter() - start
            start = time.perf_counter()
            options = RunOptions(source=load_scenario(path), out=Path(tmp) / "play", rehearse=True)
            played = asyncio.run(play(options))
            alone = time.perf_counter() - start
            records = read_log(played.log)
        letters = sum(1 for r in records if r["kind"] == "letter_sent")
        print(
            f"  {path.stem:<22} channel exercise run: {whole:.2f} s   play alone: {alone:.2f} s"
            f"   ({letters} letters, {len(records)} log records)"
        )


def scale_out(fsync: str, sends: int) -> None:
    """Sends/s and send → live event latency, one replica vs two, single Redis vs cluster."""
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    from tests.cluster import LocalCluster  # the tests' three-master cluster

    print("scale-out (each replica one `channel serve` process with one worker):")
    data = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    cluster = LocalCluster(data / "cluster")
    try:
        single = data / "single"
        with (
            courier(1, fsync, data=single) as (a, url),
            courier(1, fsync, data=single, redis_url=url) as (b, _),
        ):
            _scale_rows("single Redis", [a, b], sends)
        cluster.start()
        shared = data / "cluster-couriers"
        with (
            courier(1, fsync, data=shared, redis_url=cluster.url) as (a, _),
            courier(1, fsync, data=shared, redis_url=cluster.url) as (b, _),
        ):
            _scale_rows("3-master cluster", [a, b], sends)
    finally:
        cluster.stop()
        shutil.rmtree(data, ignore_errors=True)


def _scale_rows(store: str, replicas: list[str], sends: int) -> None:
    for count in (1, 2):
        bases = replicas[:count]
        tag = f"{store.split()[0].lower()}{count}"
        pairs = asyncio.run(register_pairs(bases[0], 16, tag))
        prepared = prepare_sends(bases[0], pairs, sends)
        elapsed, _, failures = asyncio.run(fire(bases, prepared, 64, None))
        live = asyncio.run(delivery_latency(bases[0], bases[-1], 200, tag))
        print(
            f"  {store}, {count} replica{'s' if count > 1 else ''}: "
            f"{len(prepared) / elapsed:,.0f} sends/s (failures {failures}); "
            f"send → live event {spread(live)}"
        )


def live_delivery(fsync: str) -> None:
    data = Path(tempfile.mkdtemp(prefix="bench-live-"))
    try:
        with courier(1, fsync, data=data) as (a, redis_url):
            one = asyncio.run(delivery_latency(a, a, 300, "one"))
            print(f"send → live event, one replica: {spread(one)}")
            with courier(1, fsync, data=data, redis_url=redis_url) as (b, _):
                two = asyncio.run(delivery_latency(a, b, 300, "two"))
                print(f"send on replica A → live event on replica B: {spread(two)}")
    finally:
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    main()
