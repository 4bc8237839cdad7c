"""`make bench`: the courier's figures, side by side with a minimal relay, printed, never asserted.

One run starts, on 127.0.0.1 only:
  - the courier, `channel serve` (embedded Redis, appendfsync always, `--workers` workers), and
  - the baseline relay, bench/relay.py (one Ed25519 verify + one Lua EVALSHA per send, the same
    redis-server build with appendfsync always, the same number of workers, reuse_port),
and measures both with one load generator (bench/load.py: raw keep-alive HTTP in a process of its
own, replaying requests prepared and signed beforehand in two other processes):
  1. sends/s, closed loop at `--connections` connections, in interleaved pairs (relay, courier,
     relay, courier, ...), and their ratio; server CPU (its worker processes, /proc/PID/stat)
     and Redis CPU per send; Redis commands per send (INFO commandstats: script calls, and all
     commands including those a script runs) and client reads per send (INFO stats: a pipeline
     counts once, so this is round trips); the load generator's own CPU per send;
  2. p50/p99 at 500/s and 1,000/s, open loop, each latency from the request's scheduled time (no
     coordinated omission), and the answers that were not 2xx; and the courier's send → inbox →
     open through the typed client, one at a time;
  3. Redis memory per queued 1 KB letter, live events included;
  4. the courier's send → live event latency at 500 sends/s with 1,000 watchers connected (signed
     `GET /v1/events`, 100 parties x 10 streams: a per-party stream cap of 10 or more admits
     them all, and `--streams-per-party N` spreads them over 1,000 / N parties instead; a
     courier-wide cap must allow 1,000, or 10,000 with --long: set its CHANNEL_ variable if lower);
  5. `channel --help` start-up time;
  6. scale-out: sends/s and send → live event latency with one `channel serve` replica and two,
     on a single Redis and on a local three-master Redis Cluster;
  7. each bundled exercise scenario at speed max, bots in every seat.
With `--long`, also: 10,000 idle watchers (1,000 parties x 10) held for 5 minutes: streams dropped
by the server (the watchers never reconnect), keep-alive comments seen, Redis errors counted.

The load generator is Python rather than wrk: wrk has no open loop (wrk2 is not packaged), one
generator serves every figure, and its own CPU per send is printed to show it is not the limit.
Per-party rate limits are off (CHANNEL_RATE_LIMIT_PER_SECOND=0): the load is deliberate. Other
CHANNEL_* variables in the environment reach the courier unchanged.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import load
import prepare
import redis
from load import Outcome, Watched
from prepare import RawParty, raw_party

from channel.courier.embedded import running_url
from channel.party.client import Client
from channel.protocol.httpsig import NONCE_TTL_MS
from channel.protocol.seal import PartyKeys, raw_public

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
SENDERS = 16  # sender → recipient routes per server


@dataclass
class Server:
    """A running server: the courier or the relay, with its processes and its Redis."""

    name: str
    base: str
    pid: int
    redis_url: str
    redis_pid: int
    routes: list[tuple[RawParty, str]]
    build: Callable[..., tuple[list[bytes], list[str]]]

    @property
    def port(self) -> int:
        return int(self.base.rsplit(":", 1)[1])

    def server_pids(self) -> list[int]:
        return [pid for pid in _descendants(self.pid) if pid != self.redis_pid]


# --- processes: start, stop, CPU --------------------------------------------------------------


def _descendants(root: int) -> list[int]:
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            parents[int(entry.name)] = int(stat.rsplit(")", 1)[1].split()[1])
    found, frontier = [root], [root]
    while frontier:
        frontier = [pid for pid, parent in parents.items() if parent in frontier]
        found += frontier
    return found


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU of these processes (all their threads), from /proc/PID/stat."""
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])
    return total / os.sysconf("SC_CLK_TCK")


def _start(
    command: list[str], env: dict[str, str], ready: str
) -> tuple[subprocess.Popen[str], str]:
    # Its stderr goes to a file (shown if it fails): the table stays readable.
    descriptor, log = tempfile.mkstemp(prefix="bench-server-", suffix=".log")
    with os.fdopen(descriptor, "w") as stderr:
        process = subprocess.Popen(
            command, stdout=subprocess.PIPE, stderr=stderr, text=True, env=env
        )
    _logs[process.pid] = Path(log)
    assert process.stdout is not None
    line = process.stdout.readline()
    match = re.search(r"(http://\S+)", line)
    if ready not in line or not match:
        _stop(process, command[1])
        raise SystemExit(f"{command[1:4]} did not start: {line!r}")
    return process, match.group(1)


_logs: dict[int, Path] = {}


def _stop(process: subprocess.Popen[str], what: str) -> None:
    """SIGTERM, then wait; a server that does not stop is reported and killed, never waited on."""
    process.terminate()
    started = time.monotonic()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        print(f"   ! {what} ignored SIGTERM for 30 s: killed")
        process.kill()
        process.wait()
    took = time.monotonic() - started
    if took > 5:
        print(f"   ! {what} took {took:.1f} s to stop")
    log = _logs.pop(process.pid)
    notable = ("Traceback", "rror", "did not finish")
    errors = [line for line in log.read_text().splitlines() if any(w in line for w in notable)]
    log.unlink()
    if process.returncode not in (0, -signal.SIGTERM) or errors:
        print(f"   ! {what} exited {process.returncode}; {len(errors)} notable lines in its log")
        for line in errors[:3]:
            print(f"     {line[:160]}")
    if process.stdout is not None:
        process.stdout.close()


def _redis_url(data: Path) -> str:
    """The URL of the embedded Redis a courier or relay runs for `data` (its socket lives in a
    private runtime dir of its own, named in the data dir's address file)."""
    url = running_url(data)
    if url is None:
        raise RuntimeError(f"no embedded Redis is running for {data}")
    return url


def _redis_pid(data: Path) -> int:
    try:
        return int((data / "redis" / "redis.pid").read_text().strip())
    except (OSError, ValueError):
        return -1  # an external Redis: not ours to measure


@contextmanager
def courier(
    workers: int, *, data: Path | None = None, redis_url: str | None = None
) -> Iterator[tuple[str, str, subprocess.Popen[str], Path]]:
    """A real `channel serve`; yields (base URL, Redis URL, process, data dir).

    With `redis_url` it joins that Redis as another replica (same data dir, so same courier key).
    """
    owned = data is None
    data = data or Path(tempfile.mkdtemp(prefix="bench-courier-"))
    port = "0" if workers == 1 else str(_free_port())
    command = [sys.executable, "-m", "channel", "serve", "--port", port, "--data-dir", str(data)]
    command += ["--open-registration", "--workers", str(workers), "--log-level", "error"]
    if redis_url:
        command += ["--redis", redis_url]
    env = os.environ | {"CHANNEL_FSYNC": "always", "CHANNEL_RATE_LIMIT_PER_SECOND": "0"}
    process, base = _start(command, env, "Courier ready")
    try:
        _wait_workers(workers)
        yield base, redis_url or _redis_url(data), process, data
    finally:
        _stop(process, "the courier")
        if owned:
            shutil.rmtree(data, ignore_errors=True)


@contextmanager
def relay(
    workers: int, keys: dict[str, bytes]
) -> Iterator[tuple[str, subprocess.Popen[str], Path]]:
    data = Path(tempfile.mkdtemp(prefix="bench-relay-"))
    keys_file = data / "keys.json"
    keys_file.write_text(json.dumps({name: key.hex() for name, key in keys.items()}))
    command = [sys.executable, str(HERE / "relay.py"), "--data-dir", str(data)]
    command += ["--keys", str(keys_file), "--workers", str(workers)]
    process, base = _start(command, dict(os.environ), "Relay ready")
    try:
        _wait_workers(workers)
        yield base, process, data
    finally:
        _stop(process, "the relay")
        shutil.rmtree(data, ignore_errors=True)


def _wait_workers(workers: int) -> None:
    """Let spawned workers import and bind the shared port before any load arrives."""
    time.sleep(1.0 * (workers - 1) + 0.3)


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# --- registration, preparation and runs ---------------------------------------------------------


async def register(base: str, names: list[str]) -> list[PartyKeys]:
    keys = [PartyKeys.generate(name) for name in names]
    async with Client(base) as anonymous:
        for start in range(0, len(keys), 50):
            await asyncio.gather(
                *(anonymous.as_party(k).register() for k in keys[start : start + 50])
            )
    return keys


class Bench:
    """The worker processes every section shares: two preparers and one load generator."""

    def __init__(self, connections: int, seconds: float) -> None:
        context = multiprocessing.get_context("spawn")
        self.preparers = ProcessPoolExecutor(2, mp_context=context)
        self.generator = ProcessPoolExecutor(1, mp_context=context)
        self.connections = connections
        self.seconds = seconds
        self.fast = prepare.signer_agrees()
        if not self.fast:
            print(
                "  (the quick RFC 9421 signer disagrees with the library: signing with the library)"
            )

    def close(self) -> None:
        self.preparers.shutdown()
        self.generator.shutdown()

    def prepare(self, server: Server, count: int, offset: int = 0) -> tuple[list[bytes], list[str]]:
        half = count // 2
        jobs = [
            self.preparers.submit(server.build, server.port, server.routes, n, start, self.fast)
            for n, start in ((half, offset), (count - half, offset + half))
        ]
        requests, ids = [], []
        for job in jobs:
            more, more_ids = job.result()
            requests += more
            ids += more_ids
        return requests, ids

    def closed(
        self, ports: list[int], requests: list[bytes], connections: int | None = None
    ) -> Outcome:
        job = self.generator.submit(
            load.closed_loop, ports, requests, connections or self.connections, self.seconds
        )
        return job.result()

    def open(self, port: int, requests: list[bytes], rate: float) -> Outcome:
        return self.generator.submit(
            load.open_loop, port, requests, rate, self.connections
        ).result()


def percentile(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * p))]


def spread(values: list[float]) -> str:
    return (
        f"p50 {percentile(values, 0.5) * 1000:.2f} ms  p99 {percentile(values, 0.99) * 1000:.2f} ms"
    )


def not_2xx(outcome: Outcome) -> int:
    return sum(n for status, n in outcome.statuses.items() if not 200 <= status < 300)


def _statuses(outcome: Outcome) -> str:
    bad = {status: n for status, n in sorted(outcome.statuses.items()) if not 200 <= status < 300}
    named = {status: "connection lost" if status == load.LOST else status for status in bad}
    return ", ".join(f"{n} × {named[status]}" for status, n in bad.items()) or "none"


@dataclass
class Closed:
    rate: float
    server_us: float
    redis_us: float
    client_us: float
    scripts: float
    commands: float
    reads: float | None
    failed: int


def closed_run(bench: Bench, server: Server, expected_rate: float) -> Closed:
    count = max(1000, int(expected_rate * bench.seconds * 1.3))
    requests, _ = bench.prepare(server, count)
    store = redis.Redis.from_url(server.redis_url)
    before_stats, before_commands = store.info("stats"), store.info("commandstats")
    servers = server.server_pids()
    server_cpu, redis_cpu = cpu_seconds(servers), cpu_seconds([server.redis_pid])
    outcome = bench.closed([server.port], requests)
    server_cpu, redis_cpu = (
        cpu_seconds(servers) - server_cpu,
        cpu_seconds([server.redis_pid]) - redis_cpu,
    )
    after_stats, after_commands = store.info("stats"), store.info("commandstats")
    store.close()
    sends = max(outcome.completed, 1)

    def calls(stats: dict[str, Any], *names: str) -> int:
        return sum(
            int(value["calls"])
            for key, value in stats.items()
            if (not names and key != "cmdstat_info") or key.removeprefix("cmdstat_") in names
        )

    reads = None
    if "total_reads_processed" in after_stats:
        reads = (
            after_stats["total_reads_processed"] - before_stats["total_reads_processed"]
        ) / sends
    return Closed(
        rate=outcome.completed / outcome.elapsed,
        server_us=server_cpu / sends * 1e6,
        redis_us=redis_cpu / sends * 1e6,
        client_us=outcome.client_cpu / sends * 1e6,
        scripts=(
            calls(after_commands, "evalsha", "eval") - calls(before_commands, "evalsha", "eval")
        )
        / sends,
        commands=(calls(after_commands) - calls(before_commands)) / sends,
        reads=reads,
        failed=not_2xx(outcome),
    )


# --- sections -----------------------------------------------------------------------------------


def side_by_side(bench: Bench, args: argparse.Namespace) -> None:
    relay_keys = [PartyKeys.generate(f"bench.relay.p{i}") for i in range(2 * SENDERS)]
    with ExitStack() as stack:
        base, _, courier_process, data = stack.enter_context(courier(args.workers))
        keys = asyncio.run(register(base, [f"bench.main.p{i}" for i in range(2 * SENDERS)]))
        full = Server(
            "courier",
            base,
            courier_process.pid,
            _redis_url(data),
            _redis_pid(data),
            [(raw_party(keys[i]), keys[SENDERS + i].name) for i in range(SENDERS)],
            prepare.courier_sends,
        )
        relay_base, relay_process, relay_data = stack.enter_context(
            relay(args.workers, {k.name: raw_public(k.signing) for k in relay_keys})
        )
        floor = Server(
            "relay",
            relay_base,
            relay_process.pid,
            _redis_url(relay_data),
            _redis_pid(relay_data),
            [(raw_party(relay_keys[i]), relay_keys[SENDERS + i].name) for i in range(SENDERS)],
            prepare.relay_sends,
        )
        print(
            f"1. closed loop, {args.connections} connections, {args.seconds:.0f} s per run, "
            f"{args.pairs} interleaved pairs (relay, courier, ...):"
        )
        runs: dict[str, list[Closed]] = {"relay": [], "courier": []}
        guess = {"relay": 6000.0, "courier": 2000.0}
        for n in range(args.pairs):
            for server in (floor, full):
                run = closed_run(bench, server, guess[server.name])
                guess[server.name] = run.rate
                runs[server.name].append(run)
                print(
                    f"   pair {n + 1} {server.name:<8} {run.rate:7,.0f} sends/s   server CPU "
                    f"{run.server_us:6,.0f} µs/send   Redis CPU {run.redis_us:5,.0f} µs/send   "
                    f"not 2xx {run.failed}"
                )
        _summary(runs)
        print("2. open loop (latency from each request's scheduled time):")
        for rate in (500, 1000):
            for server in (floor, full):
                requests, _ = bench.prepare(server, int(rate * args.seconds))
                outcome = bench.open(server.port, requests, rate)
                print(
                    f"   {rate:5,}/s {server.name:<8} {spread(outcome.latencies)}  "
                    f"max {max(outcome.latencies) * 1000:.1f} ms   not 2xx: {_statuses(outcome)}"
                )
        trips = asyncio.run(round_trips(full.base, 200))
        print(f"   courier, typed client, send → inbox → open, one at a time: {spread(trips)}")
        memory(bench, full)


def _summary(runs: dict[str, list[Closed]]) -> None:
    def median(name: str, field: str) -> float:
        return float(statistics.median(getattr(run, field) for run in runs[name]))

    ratios = [c.rate / r.rate for r, c in zip(runs["relay"], runs["courier"], strict=True)]
    rows = [
        ("sends/s", "rate", "{:,.0f}"),
        ("server CPU µs per send", "server_us", "{:,.0f}"),
        ("Redis CPU µs per send", "redis_us", "{:,.0f}"),
        ("Redis script calls per send", "scripts", "{:.2f}"),
        ("Redis commands per send (incl. in scripts)", "commands", "{:.2f}"),
        ("load generator CPU µs per send", "client_us", "{:,.0f}"),
    ]
    print(f"   {'median of the pairs':<44}{'relay':>10}{'courier':>10}")
    for label, field, form in rows:
        relay_value, courier_value = median("relay", field), median("courier", field)
        print(f"   {label:<44}{form.format(relay_value):>10}{form.format(courier_value):>10}")
    if all(run.reads is not None for run in runs["relay"] + runs["courier"]):
        relay_reads, courier_reads = median("relay", "reads"), median("courier", "reads")
        label = "Redis round trips per send (client reads)"
        print(f"   {label:<44}{relay_reads:>10.2f}{courier_reads:>10.2f}")
    print(
        f"   courier / relay sends/s: {statistics.median(ratios):.2f} "
        f"(pairs: {', '.join(f'{r:.2f}' for r in ratios)})"
    )


async def round_trips(base: str, rounds: int) -> list[float]:
    """send → inbox → open through the typed client (sealing and opening included)."""
    keys = await register(base, ["bench.rt.sender", "bench.rt.recipient"])
    async with Client(base) as anonymous:
        sender, recipient = anonymous.as_party(keys[0]), anonymous.as_party(keys[1])
        times = []
        for _ in range(rounds):
            start = time.perf_counter()
            sealed, _ = await sender.send_letter(keys[1].name, prepare.BODY_1K)
            await recipient.inbox(limit=1)
            await recipient.open_letter(sealed.envelope.id)
            times.append(time.perf_counter() - start)
        return times


def memory(bench: Bench, server: Server, letters: int = 2000) -> None:
    """Redis memory per queued 1 KB letter: with its request nonce, and after nonces are gone."""
    requests, _ = bench.prepare(server, letters)
    store = redis.Redis.from_url(server.redis_url)
    _drop_nonces(store)  # earlier runs' nonces, which would expire while this one measures
    before = store.info("memory")["used_memory"]
    outcome = bench.closed([server.port], requests, connections=16)
    with_nonces = store.info("memory")["used_memory"]
    _drop_nonces(store)
    alone = store.info("memory")["used_memory"]
    store.close()
    sent = max(outcome.completed - not_2xx(outcome), 1)
    print(
        f"3. Redis memory per queued 1 KB letter, live events included: "
        f"{(alone - before) / sent / 1024:.2f} KB "
        f"({(with_nonces - before) / sent / 1024:.2f} KB while its request nonce is remembered)"
    )


def _drop_nonces(store: redis.Redis) -> None:
    """Delete request nonces: whatever the key layout, the keys named so or due to expire within
    a nonce's lifetime (two minutes); letters live for days."""
    keys = list(store.scan_iter(count=1000))
    with store.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.pttl(key)
        ttls = pipe.execute()
    doomed = [
        k for k, ttl in zip(keys, ttls, strict=True) if b"nonce" in k or 0 < ttl <= NONCE_TTL_MS
    ]
    for start in range(0, len(doomed), 1000):
        store.delete(*doomed[start : start + 1000])


def _watchers(
    port: int, streams: list[RawParty], fast: bool, limit: float
) -> tuple[multiprocessing.process.BaseProcess, Any, tuple[Any, ...]]:
    context = multiprocessing.get_context("spawn")
    ours, theirs = context.Pipe()
    process = context.Process(target=load.run_watchers, args=(port, streams, fast, theirs, limit))
    process.start()
    if not ours.poll(300):
        process.kill()
        raise SystemExit("the watchers did not connect in 5 minutes")
    return process, ours, ours.recv()


def _stop_watchers(process: multiprocessing.process.BaseProcess, pipe: Any) -> Watched:
    pipe.send("stop")
    if not pipe.poll(120):
        process.kill()
        raise SystemExit("the watchers did not report")
    _, watched = pipe.recv()
    process.join(10)
    assert isinstance(watched, Watched)
    return watched


def live_with_watchers(bench: Bench, args: argparse.Namespace, rate: int = 500) -> None:
    per_party = args.streams_per_party
    parties = max(1, 1000 // per_party)
    with courier(args.workers) as (base, _, process, data):
        recipients = asyncio.run(register(base, [f"bench.watch.r{i}" for i in range(parties)]))
        senders = asyncio.run(register(base, [f"bench.watch.s{i}" for i in range(SENDERS)]))
        server = Server(
            "courier",
            base,
            process.pid,
            "",
            _redis_pid(data),
            [(raw_party(senders[i % SENDERS]), recipients[i].name) for i in range(parties)],
            prepare.courier_sends,
        )
        streams = [raw_party(r) for r in recipients for _ in range(per_party)]
        # Prepared first: the watchers must not stand in the way of preparing (they may hold the
        # courier's Redis connections); the signatures stay good for a minute.
        requests, ids = bench.prepare(server, int(rate * args.seconds))
        watcher, pipe, (_, opened, refused) = _watchers(server.port, streams, bench.fast, 600)
        store = redis.Redis.from_url(_redis_url(data))
        try:
            time.sleep(0.5)
            pids = server.server_pids()
            cpu, xreads = cpu_seconds(pids), _xreads(store)
            outcome = bench.open(server.port, requests, rate)
            time.sleep(1.0)
            cpu, xreads = cpu_seconds(pids) - cpu, _xreads(store) - xreads
        finally:
            watched = _stop_watchers(watcher, pipe)
            store.close()
    delays, after_answer = [], []
    missing = 0
    for i, letter_id in enumerate(ids):
        due = outcome.started + i / rate
        arrivals = watched.seen.get(letter_id, [])
        missing += max(0, per_party - len(arrivals))
        delays += [at - due for at in arrivals]
        if i in outcome.answered:
            after_answer += [at - outcome.answered[i] for at in arrivals]
    print(
        f"4. send → live event, {opened:,} watchers connected ({parties} parties × {per_party}), "
        f"{rate}/s open loop: "
        + (f"{spread(delays)}  max {max(delays) * 1000:.1f} ms" if delays else "no event arrived")
    )
    # The send's own answer, timed the same way: what the hub adds is the difference.
    print(
        f"   the send alone (its answer): {spread(outcome.latencies)}; "
        f"the event after the send's answer (the hub's share): {spread(after_answer)}"
    )
    print(
        f"   courier CPU (all workers) {cpu / len(ids) * 1e6:,.0f} µs per send, "
        f"{xreads / len(ids):.2f} event reads (XREAD) per send"
    )
    print(
        f"   streams refused: {_refusals(refused)}; dropped: {watched.dropped}; "
        f"events not seen: {missing}; sends not 2xx: {_statuses(outcome)}"
    )


def _xreads(store: redis.Redis) -> int:
    stats: dict[str, Any] = store.info("commandstats")
    return int(stats.get("cmdstat_xread", {}).get("calls", 0))


def idle_watchers(bench: Bench, args: argparse.Namespace) -> None:
    per_party = args.streams_per_party
    parties, seconds = max(1, args.long_watchers // per_party), args.long_seconds
    with courier(args.workers) as (base, _, process, data):
        recipients = asyncio.run(register(base, [f"bench.idle.r{i}" for i in range(parties)]))
        port = int(base.rsplit(":", 1)[1])
        errors_before = asyncio.run(_redis_errors(base))
        streams = [raw_party(r) for r in recipients for _ in range(per_party)]
        started = time.monotonic()
        watcher, pipe, (_, opened, refused) = _watchers(port, streams, bench.fast, seconds)
        connect = time.monotonic() - started
        server_pids = [pid for pid in _descendants(process.pid) if pid != _redis_pid(data)]
        cpu = cpu_seconds(server_pids)
        time.sleep(seconds)
        cpu = cpu_seconds(server_pids) - cpu
        watched = _stop_watchers(watcher, pipe)
        errors = asyncio.run(_redis_errors(base)) - errors_before
    print(
        f"8. {opened:,} idle watchers ({parties:,} parties × {per_party}) connected in "
        f"{connect:.0f} s, held {watched.held:.0f} s: dropped {watched.dropped}, refused "
        f"{_refusals(refused)}, keep-alive comments per stream "
        f"{watched.pings / max(opened, 1):.1f}, "
        f"Redis errors {errors:.0f}, server CPU {cpu / seconds * 100:.0f}% of a core"
    )


def _refusals(refused: dict[int, int]) -> str:
    """Streams not open when the run began, by status (200: opened, then ended by the server)."""
    parts = [f"{n} × {'ended early' if status == 200 else status}" for status, n in refused.items()]
    return ", ".join(parts) or "none"


async def _redis_errors(base: str) -> float:
    async with Client(base) as anonymous:
        session = anonymous._ensure_session()
        async with session.get(f"{base}/metrics") as reply:
            text = await reply.text()
    return sum(
        float(line.split()[-1])
        for line in text.splitlines()
        if line.startswith("backchannel_redis_errors_total")
    )


def cli_startup(runs: int = 10) -> float:
    channel = Path(sys.executable).with_name("channel")
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([str(channel), "--help"], check=True, capture_output=True)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


async def delivery_latency(send_via: str, watch_via: str, rounds: int, tag: str) -> list[float]:
    """Seconds from just before a send (replica A) to its event at a watcher (replica B)."""
    sender = PartyKeys.generate(f"bench.live-sender-{tag}")
    recipient = PartyKeys.generate(f"bench.live-recipient-{tag}")
    async with Client(send_via, sender) as on_a, Client(watch_via, recipient) as on_b:
        await on_a.register()
        await on_b.register()
        sealed = [await on_a.seal(recipient.name, prepare.BODY_1K) for _ in range(rounds)]
        arrived: dict[str, float] = {}

        async def watch() -> None:
            async for event in on_b.watch():
                if event.letter_id not in arrived:
                    arrived[event.letter_id] = time.perf_counter()
                    if len(arrived) == rounds:
                        return

        watcher = asyncio.create_task(watch())
        await asyncio.sleep(0.5)  # the stream is open
        sent: dict[str, float] = {}
        for letter in sealed:
            sent[letter.envelope.id] = time.perf_counter()
            await on_a.send(letter)
            await asyncio.sleep(0.005)
        await asyncio.wait_for(watcher, 60)
    return [arrived[i] - sent[i] for i in sent]


def scale_out(bench: Bench) -> None:
    """Sends/s and send → live event latency, one replica vs two, single Redis vs cluster."""
    sys.path.insert(0, str(ROOT))
    from tests.cluster import LocalCluster  # the tests' three-master cluster

    print("6. scale-out (each replica one `channel serve` process with one worker):")
    data = Path(tempfile.mkdtemp(prefix="bench-scale-"))
    cluster = LocalCluster(data / "cluster")
    try:
        single = data / "single"
        with (
            courier(1, data=single) as (a, url, _, _),
            courier(1, data=single, redis_url=url) as (
                b,
                _,
                _,
                _,
            ),
        ):
            _scale_rows(bench, "single Redis", [a, b])
        cluster.start()
        shared = data / "cluster-couriers"
        with (
            courier(1, data=shared, redis_url=cluster.url) as (a, _, _, _),
            courier(1, data=shared, redis_url=cluster.url) as (b, _, _, _),
        ):
            _scale_rows(bench, "3-master cluster", [a, b])
    finally:
        cluster.stop()
        shutil.rmtree(data, ignore_errors=True)


def _scale_rows(bench: Bench, store: str, replicas: list[str]) -> None:
    for count in (1, 2):
        bases = replicas[:count]
        tag = f"{store.split()[0].lower()}{count}"
        keys = asyncio.run(register(bases[0], [f"bench.{tag}.p{i}" for i in range(2 * SENDERS)]))
        server = Server(
            "courier",
            bases[0],
            -1,
            "",
            -1,
            [(raw_party(keys[i]), keys[SENDERS + i].name) for i in range(SENDERS)],
            prepare.courier_sends,
        )
        requests, _ = bench.prepare(server, int(1500 * bench.seconds))
        ports = [int(base.rsplit(":", 1)[1]) for base in bases]
        outcome = bench.closed(ports, requests)
        live = asyncio.run(delivery_latency(bases[0], bases[-1], 100, tag))
        print(
            f"   {store}, {count} replica{'s' if count > 1 else ''}: "
            f"{outcome.completed / outcome.elapsed:,.0f} sends/s (not 2xx: {_statuses(outcome)}); "
            f"send → live event {spread(live)}"
        )


def exercises() -> None:
    """Bundled scenarios at speed max: the CLI end to end, and the play alone, in-process."""
    from channel.exercise.author.scenario import bundled_dir, load_scenario
    from channel.exercise.eventlog import read_log
    from channel.exercise.run.play import RunOptions, play
    from channel.logs import configure_logging

    configure_logging("console", "error")
    channel = Path(sys.executable).with_name("channel")
    print("7. exercise scenarios at speed max, bots in every seat:")
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
            f"   {path.stem:<22} channel exercise run: {whole:.2f} s   play alone: {alone:.2f} s"
            f"   ({letters} letters, {len(records)} log records)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=3, help="interleaved closed-loop pairs")
    parser.add_argument("--seconds", type=float, default=3.0, help="length of each run")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--long", action="store_true", help="also hold 10,000 idle watchers 5 min")
    parser.add_argument(
        "--streams-per-party",
        type=int,
        default=10,
        help="watchers per party (the 1,000 and 10,000 are spread over parties: stay within a "
        "per-party stream cap)",
    )
    parser.add_argument("--long-watchers", type=int, default=10_000, help=argparse.SUPPRESS)
    parser.add_argument("--long-seconds", type=float, default=300.0, help=argparse.SUPPRESS)
    parser.add_argument("--only", choices=["side", "live", "cli", "scale", "exercises", "long"])
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, signal.default_int_handler)  # stop servers on the way out
    bench = Bench(args.connections, args.seconds)
    started = time.monotonic()
    print(
        f"Backchannel bench: {os.cpu_count()} cores (shared: figures are noisy, ratios matter), "
        f"{args.workers} workers each, appendfsync always, 127.0.0.1"
    )
    sections: list[tuple[str, Callable[[], object]]] = [
        ("side", lambda: side_by_side(bench, args)),
        ("live", lambda: live_with_watchers(bench, args)),
        (
            "cli",
            lambda: print(
                f"5. channel --help start-up, median of 10: {cli_startup() * 1000:.0f} ms"
            ),
        ),
        ("scale", lambda: scale_out(bench)),
        ("exercises", exercises),
    ]
    if args.long or args.only == "long":
        sections.append(("long", lambda: idle_watchers(bench, args)))
    try:
        for name, section in sections:
            if args.only in (None, name):
                try:
                    section()
                except Exception as exc:  # one broken section must not hide the others' figures
                    print(f"   ! section {name} failed: {type(exc).__name__}: {exc}")
    finally:
        bench.close()
    print(f"(bench took {time.monotonic() - started:.0f} s)")


if __name__ == "__main__":
    main()
