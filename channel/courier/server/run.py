"""`channel serve`: start the embedded Redis if no URL is given, then the courier's workers.

Workers are separate processes sharing the port (`reuse_port`): CPU in the server is the limit,
not Redis. The first process owns the embedded Redis and runs the expiry sweeper; the sweeper is
safe to run anywhere because every transition is a compare-and-set, it just needs to run once.
Several workers keep their Prometheus metrics in files in a fresh `metrics/` directory of the data
dir, so that any worker's `/metrics` reports the whole courier.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import os
import shutil
import signal
import sys
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from channel.courier.embedded import EmbeddedRedis
from channel.courier.settings import Settings, private_dir
from channel.logs import configure_logging
from channel.protocol.errors import Misconfigured
from channel.protocol.seal import fingerprint, raw_private, raw_public

_new_loop: Callable[[], asyncio.AbstractEventLoop] | None
try:
    import uvloop

    _new_loop = uvloop.new_event_loop
except ImportError:  # no uvloop on Windows: asyncio's own loop
    _new_loop = None

COURIER_KEY_FILE = "courier.key"
METRICS_DIR = "metrics"
# prometheus_client's own variable: where each process keeps its metric files.
PROMETHEUS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# On SIGTERM in-flight requests get this long to finish. aiohttp waits it twice (once, then again
# after cancelling the request), and a request stuck on a hung cluster node can wait 3 x 8 s for
# Redis: with aiohttp's usual 10 s a courier took 20 s to stop while a node was down.
SHUTDOWN_GRACE = 2.5
# And the whole stop is bounded: whatever is still running after this is cancelled by asyncio.run.
SHUTDOWN_LIMIT = 3 * SHUTDOWN_GRACE


def read_courier_key(data_dir: Path) -> Ed25519PrivateKey | None:
    path = data_dir / COURIER_KEY_FILE
    if not path.exists():
        return None
    raw = path.read_bytes()
    if len(raw) != 32:
        raise Misconfigured(f"{path} is not a courier key (32 raw bytes of an Ed25519 key)")
    return Ed25519PrivateKey.from_private_bytes(raw)


def load_courier_key(data_dir: Path) -> Ed25519PrivateKey:
    """The courier's receipt-signing key: generated on first start, kept 0600 in the data dir."""
    existing = read_courier_key(data_dir)
    if existing is not None:
        return existing
    path = data_dir / COURIER_KEY_FILE
    key = Ed25519PrivateKey.generate()
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(raw_private(key))
    return key


def serve(settings: Settings) -> None:
    configure_logging(settings.log_format, settings.log_level)
    private_dir(settings.data_dir)
    if settings.workers > 1:
        prepare_metrics_dir(settings.data_dir)
    key = load_courier_key(settings.data_dir)
    embedded = None
    if settings.redis_url is None:
        embedded = EmbeddedRedis(settings.data_dir, fsync=settings.fsync)
        embedded.start()
        redis_url = embedded.url
    else:
        redis_url = settings.redis_url.get_secret_value()
    children: list[multiprocessing.process.BaseProcess] = []
    try:
        if settings.workers > 1:
            context = multiprocessing.get_context("spawn")
            for _ in range(settings.workers - 1):
                worker = context.Process(target=_worker, args=(settings, redis_url), daemon=True)
                worker.start()
                children.append(worker)
        _loop(_run(settings, redis_url, key, announce=True, sweeper=True))
    finally:
        for child in children:
            child.terminate()
        for child in children:
            child.join(timeout=10)
        if embedded is not None:
            embedded.stop()


def prepare_metrics_dir(data_dir: Path) -> Path:
    """An empty directory for this run's metric files, named to every worker by the environment.

    prometheus_client picks where it keeps values when first imported, so this runs before the
    app (and with it channel.courier.server.metrics) is imported; spawned workers inherit the
    variable.
    """
    if "prometheus_client" in sys.modules:
        raise RuntimeError("the metrics directory must be set before prometheus_client is imported")
    path = data_dir / METRICS_DIR
    shutil.rmtree(path, ignore_errors=True)
    path.mkdir(mode=0o700)
    os.environ[PROMETHEUS_DIR_ENV] = str(path)
    return path


def _worker(settings: Settings, redis_url: str) -> None:
    configure_logging(settings.log_format, settings.log_level)
    key = load_courier_key(settings.data_dir)
    _loop(_run(settings, redis_url, key, announce=False, sweeper=False))


def _loop(main: Coroutine[Any, Any, None]) -> None:
    """Run a server process's event loop: uvloop's where there is one (not on Windows).

    Measured against `channel serve` (2 workers, fsync always, 64 connections, sends): 1.2 to
    1.4 times the sends/s of asyncio's own loop."""
    with asyncio.Runner(loop_factory=_new_loop) as runner:
        runner.run(main)


async def _run(
    settings: Settings, redis_url: str, key: Ed25519PrivateKey, *, announce: bool, sweeper: bool
) -> None:
    from channel.courier.server.app import create_app  # only now: see prepare_metrics_dir
    from channel.courier.server.connections import GuardedRunner

    app = create_app(settings, redis_url, key, sweeper=sweeper)
    runner = GuardedRunner(
        app, access_log=None, handle_signals=False, shutdown_timeout=SHUTDOWN_GRACE
    )
    await runner.setup()
    site = web.TCPSite(
        runner, settings.host, settings.port, reuse_port=settings.workers > 1, backlog=1024
    )
    await site.start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    if announce:
        host, port = runner.addresses[0][:2]
        print(f"Courier ready at http://{host}:{port}", flush=True)
        print(f"Courier key fingerprint {fingerprint(raw_public(key))}", flush=True)
    try:
        await stop.wait()
    finally:
        # Stops accepting, finishes in-flight requests, closes Redis; a step that waits on a dead
        # peer must not keep the courier up, so it is given up after SHUTDOWN_LIMIT.
        cleanup = asyncio.ensure_future(runner.cleanup())
        done, _ = await asyncio.wait({cleanup}, timeout=SHUTDOWN_LIMIT)
    if announce:
        unfinished = "" if done else f" (its clean-up did not finish in {SHUTDOWN_LIMIT:g} s)"
        print(f"Courier stopped{unfinished}", file=sys.stderr, flush=True)


@asynccontextmanager
async def courier_in_process(data_dir: Path, redis_url: str, **settings: Any) -> AsyncIterator[str]:
    """A courier on a free 127.0.0.1 port in this event loop (the demo's, an exercise's).

    Yields its base URL. The same app as `channel serve`, with open registration by default.
    """
    from channel.courier.server.app import create_app
    from channel.courier.server.connections import GuardedRunner

    options: dict[str, Any] = {"open_registration": True, "directory": None} | settings
    app = create_app(Settings(data_dir=data_dir, **options), redis_url, load_courier_key(data_dir))
    runner = GuardedRunner(app, access_log=None, handle_signals=False, shutdown_timeout=5)
    await runner.setup()
    try:
        await web.TCPSite(runner, "127.0.0.1", 0).start()
        yield f"http://127.0.0.1:{runner.addresses[0][1]}"
    finally:
        await runner.cleanup()
