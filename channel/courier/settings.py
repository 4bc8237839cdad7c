"""Courier settings, in precedence order: flags, `CHANNEL_*` environment variables, a TOML config
file (`--config FILE` or `CHANNEL_CONFIG`) whose keys are the field names, then the defaults."""

from __future__ import annotations

import os
import stat
import tomllib
from pathlib import Path
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

import platformdirs
from pydantic import Field, SecretStr, ValidationError, field_validator
from pydantic_core import PydanticCustomError
from pydantic_settings import (
    BaseSettings,
    InitSettingsSource,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from channel.protocol.errors import BadRequest, Misconfigured

DEFAULT_PORT = 8700


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("backchannel")) / "courier"


def private_dir(path: Path) -> Path:
    """`path` as a directory only we can enter (0700): created so, or tightened if it exists.

    The data dir holds the courier's signing key, the store's files and its socket's address; one
    of ours left 0755 by hand or by an older version is tightened, not trusted as it is. One that
    root provisioned for us (a Kubernetes emptyDir, a container volume) is the platform's to guard
    and is used as it is; one owned by any other user is refused, since it cannot be made ours.
    """
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = path.stat()
    if not stat.S_ISDIR(info.st_mode):
        raise Misconfigured(f"{path} is not a directory")
    if info.st_uid not in (os.geteuid(), 0):
        raise Misconfigured(
            f"{path} belongs to another user (uid {info.st_uid}): use a directory of your own"
        )
    if info.st_uid == os.geteuid() and stat.S_IMODE(info.st_mode) != 0o700:
        try:
            path.chmod(0o700)
        except OSError as exc:
            raise Misconfigured(f"cannot make {path} private (0700): {exc.strerror}") from None
    return path


def redact_url(url: str) -> str:
    """`url` with its password, in the user info or a `password=` query parameter, shown as ***."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "(an unreadable URL, hidden)"
    userinfo, at, hosts = parts.netloc.rpartition("@")
    netloc = f"{userinfo.partition(':')[0]}:***@{hosts}" if at and ":" in userinfo else parts.netloc
    query = "&".join(
        "password=***" if unquote(pair.partition("=")[0]).lower() == "password" else pair
        for pair in parts.query.split("&")
    )
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def redis_url_problem(url: str) -> str | None:
    """What makes `url` no Redis URL (its scheme, host or port), checked before anything connects
    so that a typo is one line naming it, with the password hidden; None if it is one."""
    shown = redact_url(url)
    try:
        parts = urlsplit(url)
        scheme = parts.scheme.lower()
        # redis+cluster:// lists its nodes: host:port,host:port (see store.py).
        nodes = parts.netloc.rpartition("@")[2].split(",")
        hosts = [urlsplit(f"//{node}") for node in nodes]
        for host in hosts:
            host.port  # noqa: B018  (raises for a port out of range or not a number)
    except ValueError as exc:
        return f"the Redis URL {shown} is not a URL: {exc}"
    if scheme not in ("redis", "rediss", "unix", "redis+cluster"):
        return (
            f"the Redis URL {shown} must start with redis://, rediss://, unix:// or "
            "redis+cluster://"
        )
    if scheme == "unix":
        return None if parts.path else f"the Redis URL {shown} names no socket path"
    if not all(host.hostname for host in hosts):
        return f"the Redis URL {shown} names no host"
    return None


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="CHANNEL_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=0, le=65535)
    data_dir: Path = Field(default_factory=default_data_dir)
    redis_url: SecretStr | None = None
    open_registration: bool = False
    directory: Path | None = None
    workers: int = Field(1, ge=1, le=64)
    retention_days: float = Field(30, gt=0)
    sweep_interval: float = Field(1.0, gt=0)
    max_body_bytes: int = Field(2 * 1024 * 1024, ge=4096)
    log_format: Literal["auto", "json", "console"] = "auto"
    log_level: str = "info"
    # appendfsync for the embedded Redis: "always" is the durability promise; benchmarks compare.
    fsync: Literal["always", "everysec"] = "always"
    # Per-party token bucket on signed requests: refill per second and capacity. 0 turns it off.
    rate_limit_per_second: float = Field(50, ge=0)
    rate_limit_burst: int = Field(100, ge=0)
    # Slow clients are cut off (courier/server/connections.py). A connection has header_timeout
    # seconds, from opening or from its last answer, to send a request's complete headers; a body
    # must arrive within body_timeout seconds of its headers and, after its first 5 seconds, at
    # body_min_rate bytes a second on average (0: no floor).
    header_timeout: float = Field(20, gt=0)
    body_timeout: float = Field(60, gt=0)
    body_min_rate: int = Field(1024, ge=0)
    # Backpressure, per worker: at most this many requests at once (each holds at most one Redis
    # connection, so the pool is sized from it); one more waits up to `busy_wait` seconds for a
    # slot, then gets 503 `overloaded` with Retry-After.
    max_in_flight: int = Field(128, ge=1, le=100_000)
    busy_wait: float = Field(0.25, ge=0, le=30)
    # Live event streams (docs/events.md): the keep-alive comment interval, and how many streams
    # one party may hold on each worker and the whole courier may hold (split evenly over its
    # workers). Beyond either cap a stream is refused with 429 `too_many_streams`.
    event_ping_seconds: float = Field(15.0, gt=0, le=3600)
    event_streams_per_party: int = Field(16, ge=1)
    max_event_streams: int = Field(10_000, ge=1)
    # The TOML file the settings above were read from, if any (env CHANNEL_CONFIG).
    config: Path | None = None

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        path = init_settings().get("config") or env_settings().get("config")
        if path is None:
            return init_settings, env_settings, dotenv_settings, file_secret_settings
        from_file = InitSettingsSource(settings_cls, read_config_file(Path(path)))
        return init_settings, env_settings, from_file, dotenv_settings, file_secret_settings

    @field_validator("redis_url")
    @classmethod
    def _check_redis_url(cls, value: SecretStr | None) -> SecretStr | None:
        problem = value and redis_url_problem(value.get_secret_value())
        if problem:
            raise PydanticCustomError("redis_url", problem)
        return value

    @property
    def event_streams_per_worker(self) -> int:
        return -(-self.max_event_streams // self.workers)

    @property
    def rate_limited(self) -> bool:
        return self.rate_limit_per_second > 0 and self.rate_limit_burst > 0

    def redacted(self) -> dict[str, Any]:
        """The settings as JSON values, with the Redis URL's password shown as ***."""
        shown = self.model_dump(mode="json")
        secret = self.redis_url.get_secret_value() if self.redis_url else None
        shown["redis_url"] = redact_url(secret) if secret else None
        return shown

    def __repr__(self) -> str:
        shown = self.model_dump(exclude={"redis_url"})
        shown["redis_url"] = (
            redact_url(self.redis_url.get_secret_value()) if self.redis_url else None
        )
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    __str__ = __repr__


_PATHS = ("data_dir", "directory")  # read relative to the config file's own directory


def read_config_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML config file; unknown keys are refused, not silently ignored."""
    try:
        values = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise BadRequest(f"cannot read the config file {path}: {exc.strerror or exc}") from None
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise BadRequest(f"the config file {path} is not valid TOML: {exc}") from None
    known = set(Settings.model_fields) - {"config"}
    unknown = sorted(set(values) - known)
    if unknown:
        raise BadRequest(
            f"the config file {path} has unknown settings: {', '.join(unknown)} "
            f"(known: {', '.join(sorted(known))})"
        )
    for key in _PATHS:
        if isinstance(values.get(key), str):
            values[key] = path.parent / Path(values[key]).expanduser()
    return values


def load_settings(**given: Any) -> Settings:
    """Settings from the given flags (None: not given), the environment, the config file and the
    defaults. A bad value is a BadRequest naming the setting."""
    try:
        return Settings(**{key: value for key, value in given.items() if value is not None})
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        raise BadRequest(f"{'.'.join(map(str, first['loc']))}: {first['msg']}") from None
