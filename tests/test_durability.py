"""Crash durability: `channel serve` and its embedded Redis are SIGKILLed, then started again."""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from channel.party.client import Client
from channel.protocol.lifecycle import State
from channel.protocol.models import LetterStatus, SealedLetter
from channel.protocol.seal import PartyKeys, verify_chain
from tests.conftest import free_port

QUDS = "ir.irgc.quds"
DIRECTOR = "us.cia.director"
READY = re.compile(r"Courier ready at (http://\S+)")
START_TIMEOUT = 30.0

# Used only if the CLI module is missing: the same serve() the CLI calls.
FALLBACK = """
import sys
from pathlib import Path
from channel.courier.server.run import serve
from channel.courier.settings import Settings
serve(Settings(port=int(sys.argv[1]), data_dir=Path(sys.argv[2]), open_registration=True))
"""


def serve_command(port: int, data_dir: Path) -> list[str]:
    if importlib.util.find_spec("channel.cli") is not None:
        return [
            sys.executable,
            "-m",
            "channel",
            "serve",
            "--port",
            str(port),
            "--data-dir",
            str(data_dir),
            "--open-registration",
        ]
    return [sys.executable, "-c", FALLBACK, str(port), str(data_dir)]


@dataclass
class Courier:
    """One `channel serve` process, its URL and its log file."""

    data_dir: Path
    port: int = field(default_factory=free_port)
    process: subprocess.Popen[str] | None = None
    url: str = ""

    def start(self) -> str:
        env = {k: v for k, v in os.environ.items() if not k.startswith("CHANNEL_")}
        env["CHANNEL_LOG_FORMAT"] = "json"
        log = (self.data_dir / "courier.log").open("a")
        self.process = subprocess.Popen(
            serve_command(self.port, self.data_dir),
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
            env=env,
            start_new_session=True,
        )
        log.close()
        self.url = self._wait_ready()
        return self.url

    def _wait_ready(self) -> str:
        assert self.process is not None
        assert self.process.stdout is not None
        deadline = time.monotonic() + START_TIMEOUT
        seen = []
        while time.monotonic() < deadline:
            ready, _, _ = select.select([self.process.stdout], [], [], 0.2)
            if ready:
                line = self.process.stdout.readline()
                seen.append(line)
                found = READY.search(line)
                if found:
                    return found.group(1)
            if self.process.poll() is not None:
                break
        log = (self.data_dir / "courier.log").read_text(errors="replace")[-2000:]
        raise AssertionError(f"the courier did not start: {seen!r}\n{log}")

    def redis_pid(self) -> int:
        return int((self.data_dir / "redis" / "redis.pid").read_text().strip())

    def crash(self) -> None:
        """SIGKILL the courier and its redis-server, and wait until both are gone."""
        assert self.process is not None
        redis_pid = self.redis_pid()
        self.process.kill()
        assert self.process.wait(timeout=10) == -signal.SIGKILL
        self._close_pipe()
        os.kill(redis_pid, signal.SIGKILL)
        _wait_dead(redis_pid)

    def stop(self) -> None:
        if self.process is None:
            return
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.process is not None and self.process.stdout is not None:
            self.process.stdout.close()


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"  # a zombie is dead, just not yet reaped


def _wait_dead(pid: int) -> None:
    for _ in range(500):
        if not _alive(pid):
            return
        time.sleep(0.01)
    raise AssertionError(f"process {pid} survived SIGKILL")


@pytest.fixture
def data_dir() -> Iterator[Path]:
    """A fresh data folder; the test kills the embedded Redis it finds there."""
    path = Path(tempfile.mkdtemp(prefix="bc-dur-", dir="/tmp"))
    yield path
    with contextlib.suppress(OSError, ValueError):
        pid = int((path / "redis" / "redis.pid").read_text().strip())
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
async def couriers(data_dir: Path) -> AsyncIterator[list[Courier]]:
    """Courier processes started by the test; all stopped at the end."""
    started: list[Courier] = []
    yield started
    for courier in started:
        await asyncio.to_thread(courier.stop)


async def _start(couriers: list[Courier], data_dir: Path) -> str:
    courier = Courier(data_dir)
    couriers.append(courier)
    return await asyncio.to_thread(courier.start)


def _verify(status: LetterStatus, courier_key: bytes, quds_keys: PartyKeys) -> None:
    verify_chain(
        status.receipts,
        status.envelope,
        courier_key=courier_key,
        recipient_key=quds_keys.public().signing_key,
    )


async def test_accepted_letters_survive_a_crash_of_courier_and_redis(
    data_dir: Path, couriers: list[Courier]
) -> None:
    """After SIGKILL of both processes, every acknowledged letter, receipt and the key remain."""
    url = await _start(couriers, data_dir)
    keys = {name: PartyKeys.generate(name) for name in (DIRECTOR, QUDS)}
    letters: dict[str, SealedLetter] = {}
    async with Client(url, keys[DIRECTOR]) as director, Client(url, keys[QUDS]) as quds:
        await director.register()
        await quds.register()
        courier_key = (await director.courier_key()).signing_key
        for name in ("open-later", "return-later", "returned-before", "opened-before", "pending"):
            letters[name], _ = await director.send_letter(QUDS, f"letter {name}", subject=name)
        await quds.inbox()
        await quds.return_letter(letters["returned-before"].envelope.id, reason="No")
        await quds.open_letter(letters["opened-before"].envelope.id)
        before = {n: await director.status(s.envelope.id) for n, s in letters.items()}

    first_redis = couriers[-1].redis_pid()
    couriers[-1].crash()
    url = await _start(couriers, data_dir)
    assert couriers[-1].redis_pid() != first_redis  # a new Redis, reading the same files

    async with Client(url, keys[DIRECTOR]) as director, Client(url, keys[QUDS]) as quds:
        assert (await director.courier_key()).signing_key == courier_key
        director.trust_courier(courier_key)
        quds.trust_courier(courier_key)
        for name, sealed in letters.items():
            status = await director.status(sealed.envelope.id)
            assert status == before[name], name
            _verify(status, courier_key, keys[QUDS])
        listed = {s.id: s.state for s in await quds.inbox()}
        assert listed == {s.envelope.id: before[n].state for n, s in letters.items()}
        content, opened = await quds.open_letter(letters["open-later"].envelope.id)
        assert content.content.body == "letter open-later"
        assert [r.event for r in opened.receipts][-1] is State.OPENED
        receipts = await quds.return_letter(letters["return-later"].envelope.id, reason="Later")
        assert receipts[-1].event is State.RETURNED_UNOPENED
        back = await director.returned(letters["returned-before"].envelope.id)
        assert back.letter == letters["returned-before"]
        back = await director.returned(letters["return-later"].envelope.id)
        assert back.letter == letters["return-later"]
        assert (await director.status(letters["pending"].envelope.id)).state is State.DELIVERED
        # Registrations survived too: the names still belong to the same keys.
        assert (await director.party(QUDS)).signing_key == keys[QUDS].public().signing_key
