"""The embedded Redis starts from any folder, tells at once why it cannot, and leaves nothing
behind; the data dir it lives in is private (0700)."""

from __future__ import annotations

import os
import stat
import tempfile
from pathlib import Path

import pytest
import redis

from channel.courier.embedded import EmbeddedRedis, running_url
from channel.courier.settings import private_dir
from channel.protocol.errors import Misconfigured, StoreUnavailable


def deep(base: Path, length: int = 180) -> Path:
    """A directory under `base` whose path is at least `length` characters long."""
    path = base
    while len(str(path)) < length:
        path /= "a-rather-long-folder-name-like-people-use"
    return path


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_starts_from_a_data_dir_deeper_than_a_unix_socket_path(tmp_path: Path) -> None:
    """From a data dir far past the AF_UNIX limit, Redis answers on a socket in a private short
    directory, its URL is published 0600 in the data dir, and stop removes both."""
    data = deep(tmp_path)
    server = EmbeddedRedis(data, fsync="everysec")
    with server:
        assert len(str(data)) > 150
        assert len(str(server.socket_path)) < 104
        runtime = server.socket_path.parent
        assert mode(runtime) == 0o700
        assert redis.Redis.from_url(server.url).ping()
        assert running_url(data) == server.url
        assert mode(server.address_file) == 0o600
        assert (data / "redis" / "appendonly.aof").exists()  # the data stays in the data dir
    assert not runtime.exists()
    assert running_url(data) is None


def test_a_deep_temp_dir_is_passed_over_for_a_short_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With TMPDIR (and XDG_RUNTIME_DIR) too deep for a socket, the socket goes under /tmp."""
    too_deep = deep(tmp_path / "tmp")
    too_deep.mkdir(parents=True)
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(too_deep))
    with EmbeddedRedis(tmp_path / "courier", fsync="everysec") as server:
        assert server.socket_path.parent.parent == Path("/tmp")
        assert redis.Redis.from_url(server.url).ping()


def test_a_failed_start_is_told_in_redis_servers_own_words(tmp_path: Path) -> None:
    """A start redis-server refuses fails with its own log line (not a timeout), and leaves
    no runtime directory or address behind."""
    server = EmbeddedRedis(tmp_path / "courier", fsync="sometimes")
    with pytest.raises(StoreUnavailable, match="could not start") as failed:
        server.start()
    assert "appendfsync sometimes" in str(failed.value)
    assert "\n" not in str(failed.value)
    assert server.runtime is not None
    assert not server.runtime.exists()
    assert running_url(tmp_path / "courier") is None


def test_a_crashed_servers_leftovers_are_cleared_on_the_next_start(tmp_path: Path) -> None:
    """After a SIGKILL the next start in the same data dir removes the old runtime directory and
    serves the same data."""
    first = EmbeddedRedis(tmp_path / "courier", fsync="always")
    first.start()
    redis.Redis.from_url(first.url).set("kept", b"yes")
    old_runtime = first.socket_path.parent
    first.kill()
    assert old_runtime.exists()
    with EmbeddedRedis(tmp_path / "courier") as second:
        assert not old_runtime.exists()
        assert redis.Redis.from_url(second.url).get("kept") == b"yes"


def test_an_open_data_dir_is_tightened_to_0700(tmp_path: Path) -> None:
    """A data dir left 0755 is made 0700; a new one is created 0700."""
    existing = tmp_path / "existing"
    existing.mkdir(mode=0o755)
    existing.chmod(0o755)
    assert mode(private_dir(existing)) == 0o700
    assert mode(private_dir(tmp_path / "new" / "courier")) == 0o700


@pytest.mark.skipif(os.geteuid() != 0, reason="giving a directory away needs root")
def test_a_data_dir_of_another_user_is_refused(tmp_path: Path) -> None:
    """A data dir owned by someone else is refused with a clear message, and left as it was."""
    theirs = tmp_path / "theirs"
    theirs.mkdir(mode=0o755)
    os.chown(theirs, 65534, 65534)
    with pytest.raises(Misconfigured, match="belongs to another user"):
        private_dir(theirs)
    assert mode(theirs) == 0o755
