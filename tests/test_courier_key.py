"""One courier key per store: replicas that would sign with another key refuse to start."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import redis.asyncio as aioredis
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from channel.courier.embedded import EmbeddedRedis
from channel.courier.server.app import create_app
from channel.courier.server.run import COURIER_KEY_FILE
from channel.courier.settings import Settings
from channel.protocol.errors import Misconfigured
from channel.protocol.seal import raw_public
from tests.conftest import CourierFactory


async def test_a_replica_with_another_key_refuses_to_start(
    start_courier: CourierFactory,
    courier_key: Ed25519PrivateKey,
    redis: aioredis.Redis,
    redis_server: EmbeddedRedis,
    tmp_path: Path,
) -> None:
    """The store remembers the first courier key; a courier with another one does not start."""
    await start_courier()
    assert await redis.get("bc:courier") == raw_public(courier_key)
    stranger = create_app(
        Settings(data_dir=tmp_path), redis_server.url, Ed25519PrivateKey.generate()
    )
    runner = web.AppRunner(stranger)
    with pytest.raises(Misconfigured, match=r"every replica must share one courier\.key"):
        await runner.setup()
    await runner.cleanup()
    await start_courier()  # the right key still starts


def test_a_malformed_key_file_is_one_clear_line(tmp_path: Path) -> None:
    """`channel serve` with a truncated courier.key says so on one line, with no traceback."""
    (tmp_path / COURIER_KEY_FILE).write_bytes(b"not a key")
    result = subprocess.run(
        [sys.executable, "-m", "channel", "serve", "--port", "0", "--data-dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    assert result.returncode == Misconfigured.exit_code
    assert "is not a courier key" in result.stderr
    assert "Traceback" not in result.stderr
