"""Courier settings: flags override `CHANNEL_*` environment variables, which override defaults."""

from __future__ import annotations

from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import platformdirs
from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEFAULT_PORT = 8700


def default_data_dir() -> Path:
    return Path(platformdirs.user_data_dir("backchannel")) / "courier"


def redact_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = f"{parts.username or ''}:***@{parts.hostname}" + (
        f":{parts.port}" if parts.port else ""
    )
    return urlunsplit(parts._replace(netloc=netloc))


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

    def __repr__(self) -> str:
        shown = self.model_dump(exclude={"redis_url"})
        shown["redis_url"] = (
            redact_url(self.redis_url.get_secret_value()) if self.redis_url else None
        )
        return f"Settings({', '.join(f'{k}={v!r}' for k, v in shown.items())})"

    __str__ = __repr__
