"""Micro-benchmark of the Store on its own (no HTTP): printed figures, never asserted.

Starts an embedded redis-server (appendfsync always, as the courier runs it) and measures, for
real sealed 1 KB letters sent through `Courier.send`:
  1. the client's CPU per store call (this process's CPU time / calls), with the calls of each
     event-loop turn coalesced into one pipeline (the Store's batcher) and without it;
  2. Redis round trips per send and per open (`INFO commandstats`, calls per operation);
  3. Redis memory per queued letter, its live events included (`INFO memory`), and the
     `MEMORY USAGE` of one letter's keys.

    .venv/bin/python bench/store_calls.py [--letters 2000] [--concurrency 64] [--compact-indexes]
"""

from __future__ import annotations

import argparse
import asyncio
import tempfile
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

import redis.asyncio as aioredis
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from channel.courier.embedded import EmbeddedRedis
from channel.courier.service import Courier
from channel.courier.store import Store
from channel.protocol.canonical import now_utc
from channel.protocol.httpsig import SignedBy
from channel.protocol.lifecycle import State
from channel.protocol.models import RegisterRequest, SealedLetter
from channel.protocol.names import new_letter_id
from channel.protocol.seal import PartyKeys, decision_for, seal_letter, sign_decision

BODY_1K = "x" * 1024
SENDERS, RECIPIENTS = 4, 4


def _letters(count: int) -> tuple[list[PartyKeys], list[tuple[PartyKeys, SealedLetter]]]:
    senders = [PartyKeys.generate(f"sender.{i:02d}") for i in range(SENDERS)]
    recipients = [PartyKeys.generate(f"recipient.{i:02d}") for i in range(RECIPIENTS)]
    out = []
    for n in range(count):
        sender, recipient = senders[n % SENDERS], recipients[(n // SENDERS) % RECIPIENTS]
        sealed = seal_letter(
            sender,
            recipient.public(),
            letter_id=new_letter_id(),
            subject="",
            body=BODY_1K,
            sent_at=now_utc(),
            expires_at=now_utc() + timedelta(days=1),
        )
        out.append((sender, sealed))
    return senders + recipients, out


async def _stats(redis: aioredis.Redis) -> dict[str, int]:
    info: dict[str, Any] = await redis.info("commandstats")
    return {name: int(v["calls"]) for name, v in info.items()}


async def _redis_cpu_us(redis: aioredis.Redis) -> float:
    """Redis's own CPU so far (user + system), in µs."""
    info: dict[str, Any] = await redis.info("cpu")
    return (float(info["used_cpu_user"]) + float(info["used_cpu_sys"])) * 1e6


def _delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    keys = set(before) | set(after)
    changed = {k: after.get(k, 0) - before.get(k, 0) for k in keys}
    return {k.removeprefix("cmdstat_"): v for k, v in changed.items() if v}


async def _send_all(
    courier: Courier, letters: list[tuple[PartyKeys, SealedLetter]], concurrency: int
) -> tuple[float, float]:
    """(wall s, this process's CPU s) to send every letter, `concurrency` at a time."""
    queue = list(letters)

    async def worker() -> None:
        while queue:
            sender, sealed = queue.pop()
            await courier.send(SignedBy(sender.name, new_letter_id()), sealed)

    wall, cpu = time.perf_counter(), time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - wall, time.process_time() - cpu


async def _calls_cpu(store: Store, calls: int, concurrency: int) -> float:
    """This process's CPU µs per store call (a party lookup: one small command each)."""
    left = [calls]

    async def worker() -> None:
        while left[0] > 0:
            left[0] -= 1
            await store.get_party("sender.00")

    cpu = time.process_time()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return (time.process_time() - cpu) / calls * 1e6


async def run(letters: int, concurrency: int, compact_indexes: bool) -> None:
    data = Path(tempfile.mkdtemp(prefix="store-bench-"))
    server = EmbeddedRedis(data)
    server.start()
    redis = aioredis.Redis.from_url(server.url)
    if compact_indexes:
        # Sorted sets and hashes of up to 1,024 entries in Redis's compact encoding (docs/store.md,
        # section 9): less memory per letter, more Redis CPU per send.
        await redis.config_set("zset-max-ziplist-entries", 1024)
        await redis.config_set("hash-max-ziplist-entries", 1024)
    try:
        parties, sends = _letters(letters)
        store = Store.from_url(server.url)
        courier = Courier(store, Ed25519PrivateKey.generate(), open_registration=True)
        for keys in parties:
            await courier.register(RegisterRequest(**keys.public().model_dump()))
        await courier.claim_store()
        warm, sends = sends[:100], sends[100:]
        await _send_all(courier, warm, concurrency)

        # 1. client CPU per store call, batched and not
        batched = await _calls_cpu(store, 20_000, concurrency)
        plain = Store.from_url(server.url)
        plain._batch = None  # the same Store without its batcher: one pool connection per call
        unbatched = await _calls_cpu(plain, 20_000, concurrency)
        await plain.close()

        # 2. round trips per send, and 3. memory per queued letter
        await redis.config_resetstat()
        before_memory = (await redis.info("memory"))["used_memory"]
        redis_cpu = await _redis_cpu_us(redis)
        wall, cpu = await _send_all(courier, sends, concurrency)
        redis_cpu = await _redis_cpu_us(redis) - redis_cpu
        script_us = (await redis.info("commandstats"))["cmdstat_evalsha"]["usec_per_call"]
        with_nonces = (await redis.info("memory"))["used_memory"]
        per_send = _delta({}, await _stats(redis))
        # A request nonce lives two minutes after its request; it is not the letter's.
        async for key in redis.scan_iter(match="bc:*:nonce:*", count=1000):
            await redis.delete(key)
        letters_only = (await redis.info("memory"))["used_memory"]
        sample = sends[0][1].envelope
        letter_key = f"bc:{{{sample.recipient}}}:letter:{sample.id}"
        usage = {
            "letter hash": await redis.memory_usage(letter_key),
            "ciphertext": await redis.memory_usage(f"bc:{{{sample.recipient}}}:ct:{sample.id}"),
        }
        encoding = await redis.object("encoding", letter_key)
        by_kind: dict[str, int] = {}
        async for key in redis.scan_iter(count=1000):
            kind = _kind(key.decode())
            by_kind[kind] = by_kind.get(kind, 0) + (await redis.memory_usage(key, samples=0) or 0)
        ciphertext_bytes = len(sends[0][1].ciphertext)

        # round trips per open
        await redis.config_resetstat()
        opened = 0
        for _, sealed in sends[:200]:
            recipient = next(p for p in parties if p.name == sealed.envelope.recipient)
            decision = sign_decision(recipient, decision_for(State.OPENED, sealed.envelope))
            await courier.open(recipient.name, sealed.envelope.id, decision)
            opened += 1
        per_open = _delta({}, await _stats(redis))

        n = len(sends)
        print(f"letters sent: {n}, concurrency {concurrency}, appendfsync always")
        print(f"  sends/s (store + courier logic, no HTTP): {n / wall:,.0f}")
        print(f"  courier process CPU per send:             {cpu / n * 1e6:,.0f} µs")
        print(f"  Redis CPU per send (INFO cpu, all of it): {redis_cpu / n:,.0f} µs")
        print(f"  Redis time per send script (commandstats): {script_us:,.1f} µs")
        print(f"  client CPU per store call, batched:       {batched:,.1f} µs")
        print(f"  client CPU per store call, unbatched:     {unbatched:,.1f} µs")
        print("  Redis commands per send (INFO commandstats):")
        for name, count in sorted(per_send.items()):
            print(f"    {name:<12} {count / n:.2f}")
        print("  Redis commands per open (status read + open, as the courier does it):")
        for name, count in sorted(per_open.items()):
            print(f"    {name:<12} {count / opened:.2f}")
        print("  Redis memory per queued letter, its live events included (INFO used_memory):")
        print(f"    with its request nonce: {(with_nonces - before_memory) / n:,.0f} B")
        print(f"    the letter alone:       {(letters_only - before_memory) / n:,.0f} B")
        print(f"  MEMORY USAGE of one letter: {usage}, hash encoding {encoding.decode()}")
        print(f"  (a 1 KB body seals to {ciphertext_bytes} B of ciphertext)")
        print(
            f"  MEMORY USAGE per letter, by kind of key ({len(sends[:200])} of them opened since):"
        )
        for kind, total in sorted(by_kind.items(), key=lambda item: -item[1]):
            print(f"    {kind:<10} {total / n:,.0f} B")
        await store.close()
    finally:
        await redis.aclose()
        server.stop()


def _kind(key: str) -> str:
    """What a key holds, from its name: bc:{party}:KIND[:id] or bc:{due:K}."""
    if key.startswith("bc:{due:"):
        return "due"
    parts = key.split(":")
    return parts[2] if len(parts) > 2 else key


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--letters", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument(
        "--compact-indexes", action="store_true", help="raise Redis's *-max-ziplist-entries to 1024"
    )
    options = parser.parse_args()
    asyncio.run(run(options.letters, options.concurrency, options.compact_indexes))


if __name__ == "__main__":
    main()
