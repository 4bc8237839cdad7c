"""`channel serve` on a Redis Cluster stops promptly on SIGTERM, even while one master hangs.

A hung master (SIGSTOP: its port still accepts, nothing answers) keeps every request for its slots
waiting on Redis for up to 3 x 8 s; before the fix aiohttp gave such requests its default 10 s
twice over and the courier took 20 s to stop (`make bench` died waiting for it). And redis-py's
cluster client now and then returns a reply that raced a cancellation, swallowing it: the expiry
sweeper's loop then outlived the stop, and the courier never exited.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from channel.courier.server.app import _sweep_forever
from channel.courier.server.run import SHUTDOWN_GRACE
from channel.courier.service import Courier
from channel.courier.store import Store
from channel.party.client import Client
from channel.protocol.errors import ChannelError
from channel.protocol.seal import PartyKeys
from tests.cluster import LocalCluster, Node

# The names tried for a party that lives on the master that will hang.
CANDIDATES = [f"xx.bench.party-{n}" for n in range(64)]


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalCluster]:
    """A three-master cluster of this module's own, since one of its masters is frozen."""
    local = LocalCluster(tmp_path_factory.mktemp("cluster-shutdown"))
    local.start()
    yield local
    for node in local.nodes:
        if node.process is not None:
            os.kill(node.process.pid, signal.SIGCONT)
    local.stop()


def _serve(cluster: LocalCluster, data: Path) -> subprocess.Popen[str]:
    command = [sys.executable, "-m", "channel", "serve", "--port", "0", "--data-dir", str(data)]
    command += ["--open-registration", "--log-level", "error", "--redis", cluster.url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


async def test_a_cluster_courier_stops_promptly_while_a_master_hangs(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    """SIGTERM with requests stuck on a hung master: the courier exits cleanly within seconds."""
    victim = cluster.nodes[1]
    name = next(n for n in CANDIDATES if cluster.owner_of_party(n) is victim)
    with _serve(cluster, tmp_path) as process:
        assert process.stdout is not None
        assert process.stderr is not None
        match = re.search(r"(http://\S+)", process.stdout.readline())
        assert match, "the courier did not start"
        try:
            await _stop_while_hung(process, match.group(1), victim, name)
        finally:
            if process.poll() is None:
                process.kill()
        assert "Traceback" not in process.stderr.read()


async def _stop_while_hung(
    process: subprocess.Popen[str], base: str, victim: Node, name: str
) -> None:
    """Freeze `victim` with four requests for a party it holds in flight; SIGTERM the courier."""
    assert victim.process is not None
    async with Client(base, PartyKeys.generate(name), timeout=60) as party:
        await party.register()

        async def stuck() -> None:
            with contextlib.suppress(ChannelError):  # the courier went away, as it should
                await party.inbox()

        os.kill(victim.process.pid, signal.SIGSTOP)
        try:
            calls = [asyncio.create_task(stuck()) for _ in range(4)]
            await asyncio.sleep(1.0)
            assert not any(call.done() for call in calls), "the frozen master did not hold them"
            started = time.monotonic()
            process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                await asyncio.to_thread(process.wait, 30)
            took = time.monotonic() - started
            await asyncio.gather(*calls)
        finally:
            os.kill(victim.process.pid, signal.SIGCONT)
    assert process.returncode == 0, f"exit status {process.returncode}"
    # Twice the grace, plus room for a loaded machine; before the fix it took 20 s.
    assert took < 2 * SHUTDOWN_GRACE + 5, f"the courier took {took:.1f} s to stop"


async def test_the_sweeper_stops_when_cancelled_on_a_cluster(cluster: LocalCluster) -> None:
    """Cancelled mid-sweep, again and again, the sweeper always ends (redis-py can eat a cancel)."""
    cluster.wait_healthy()  # the other test froze a master
    store = Store.from_url(cluster.url)
    courier = Courier(store, Ed25519PrivateKey.generate())
    try:
        for attempt in range(300):
            sweeper = asyncio.create_task(_sweep_forever(courier, 0.0005))
            await asyncio.sleep(random.random() * 0.01)
            sweeper.cancel()
            done, _ = await asyncio.wait({sweeper}, timeout=2)
            assert done, f"cancel {attempt} was lost: the sweeper kept going"
    finally:
        await store.close()
