"""What every command group of `channel` shares: the global options (`Config`), the parameter
types (durations, courier URLs), `--json` and the JSON printer.

Only click and the standard library are imported here: the root group imports this module for
`channel --help`, which must stay fast.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, NoReturn
from urllib.parse import urlsplit

import click
from click.core import ParameterSource

if TYPE_CHECKING:
    from channel.protocol.models import Wire

DEFAULT_SERVER = "http://127.0.0.1:8700"


@dataclass
class Config:
    """The global options, as given before or after the command (the later one wins)."""

    server: str
    home: Path | None


class Duration(click.ParamType[timedelta, Any]):
    """`90s`, `30m`, `72h`, `7d`, `2w`, or a sum such as `1d12h`."""

    name = "duration"
    units: ClassVar[dict[str, int]] = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}

    def convert(
        self, value: Any, param: click.Parameter | None, ctx: click.Context | None
    ) -> timedelta:
        if isinstance(value, timedelta):
            return value
        text = str(value).strip().lower()
        if not re.fullmatch(r"(\d+[smhdw])+", text):
            self.fail(f"{value!r} is not a duration such as 90m, 72h or 7d", param, ctx)
        seconds = sum(int(n) * self.units[u] for n, u in re.findall(r"(\d+)([smhdw])", text))
        if seconds <= 0:
            self.fail("the duration must be positive", param, ctx)
        return timedelta(seconds=seconds)


class ServerURL(click.ParamType[str, Any]):
    """A courier's base URL: http(s)://host[:port][/path], checked before any network call."""

    name = "url"

    def fail(
        self, message: str, param: click.Parameter | None = None, ctx: click.Context | None = None
    ) -> NoReturn:
        """As click's, but a value from the environment names its variable, not the flag."""
        envvar = getattr(param, "envvar", None)
        from_env = (
            ctx is not None
            and param is not None
            and param.name is not None
            and ctx.get_parameter_source(param.name) is ParameterSource.ENVIRONMENT
        )
        if from_env and isinstance(envvar, str):
            raise click.BadParameter(message, ctx, param, param_hint=envvar)
        super().fail(message, param, ctx)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> str:
        text = str(value).strip()
        if "://" not in text:
            self.fail(f"{text!r} has no scheme: write http://{text}", param, ctx)
        try:
            parts = urlsplit(text)
            port = parts.port  # raises for a port out of range or not a number
        except ValueError as exc:
            self.fail(f"{text!r} is not a URL: {exc}", param, ctx)
        if parts.scheme.lower() not in ("http", "https"):
            self.fail(f"{text!r}: the scheme must be http or https, not {parts.scheme}", param, ctx)
        if not parts.hostname:
            self.fail(f"{text!r} names no host", param, ctx)
        if port == 0:
            self.fail(f"{text!r}: port 0 is not a port a courier listens on", param, ctx)
        if parts.query or parts.fragment or parts.username or parts.password:
            self.fail(f"{text!r}: a courier URL has no user, query or fragment", param, ctx)
        return text.rstrip("/")


DURATION = Duration()
SERVER_URL = ServerURL()
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def dump(model: Wire) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)
