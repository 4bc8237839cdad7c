"""The courier operator's commands: `channel serve`, `channel config show`, `channel admin ...`.

They run where the courier runs, with its settings and its store; a party's commands never
import this module.
"""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from channel.cli_options import DURATION, echo_json, json_option
from channel.courier.embedded import running_url
from channel.courier.server.run import serve as run_courier
from channel.courier.service import mint_invite
from channel.courier.settings import default_data_dir, load_settings, redact_url, redis_url_problem
from channel.courier.store import Store
from channel.protocol.canonical import format_time, now_utc
from channel.protocol.errors import BadRequest, StoreUnavailable
from channel.protocol.names import check_party_name

config_file_option = click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A TOML file of courier settings, keyed by setting name [env CHANNEL_CONFIG].",
)


@click.command()
@click.option("--host", help="Interface to listen on [default: 127.0.0.1].")
@click.option("--port", type=click.IntRange(0, 65535), help="Port; 0 picks a free one [8700].")
@click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), help="Data dir.")
@click.option("--redis", "redis_url", metavar="URL", help="Use this Redis, not the embedded one.")
@click.option("--open-registration/--invite-only", default=None, help="Who may register.")
@click.option(
    "--directory",
    type=click.Path(exists=True, file_okay=False, path_type=Path),
    help="Pin every NAME.pub.json in DIR as a registered party.",
)
@click.option("--workers", type=click.IntRange(1, 64), help="Server processes [1].")
@click.option("--log-format", type=click.Choice(["auto", "json", "console"]))
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]))
@config_file_option
def serve(**flags: Any) -> None:
    """Run the courier.

    Flags override CHANNEL_* environment variables, which override the config file, which
    overrides the defaults. Without --redis, the courier starts its own Redis for the data dir.
    """
    run_courier(load_settings(**flags))


@click.group("config")
def config_group() -> None:
    """The courier's settings."""


@config_group.command("show")
@config_file_option
@json_option
def config_show(config: Path | None, as_json: bool) -> None:
    """Print the settings `channel serve` would use without flags.

    From CHANNEL_* environment variables, then the config file, then the defaults. The Redis
    URL's password is shown as ***.
    """
    shown = load_settings(config=config).redacted()
    if as_json:
        echo_json(shown)
        return
    for name, value in shown.items():
        click.echo(f"{name} = {json.dumps(value)}" if value is not None else f"# {name}: not set")


@click.group()
def admin() -> None:
    """Operator commands, run where the courier runs."""


@admin.command()
@click.argument("name")
@click.option(
    "--data-dir",
    envvar="CHANNEL_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="The data dir of a running courier with its embedded Redis [env CHANNEL_DATA_DIR].",
)
@click.option("--redis", "redis_url", envvar="CHANNEL_REDIS_URL", metavar="URL", help="Redis URL.")
@click.option("--ttl", type=DURATION, default="7d", show_default=True, help="Validity.")
@json_option
def invite(
    name: str, data_dir: Path | None, redis_url: str | None, ttl: timedelta, as_json: bool
) -> None:
    """Mint a one-time invitation for NAME.

    Stored through the courier's own code in its store: the embedded Redis of the courier
    running with --data-dir, or --redis URL. The token is shown once; only its hash is stored.
    """
    check_party_name(name)
    problem = redis_url and redis_url_problem(redis_url)
    if problem:
        raise BadRequest(problem)
    url = redis_url or _running_courier_store(data_dir or default_data_dir())
    token = asyncio.run(_mint(name, url, ttl, hint="" if redis_url else _START_COURIER))
    seconds = int(ttl.total_seconds())
    if as_json:
        echo_json({"name": name, "token": token, "ttl_seconds": seconds})
        return
    until = format_time(now_utc() + ttl)
    click.echo(f"invitation for {name}, valid until {until}, shown only this once:\n\n  {token}\n")
    click.echo(f"the party registers with: channel register {name} --invite {token}")


_START_COURIER = "start `channel serve` first, or pass --redis URL"


def _running_courier_store(data_dir: Path) -> str:
    url = running_url(data_dir)
    if url is None:
        raise StoreUnavailable(f"the courier's embedded Redis is not running: {_START_COURIER}")
    return url


async def _mint(name: str, url: str, ttl: timedelta, *, hint: str) -> str:
    store = Store.from_url(url)
    try:
        if not await store.ping():
            raise StoreUnavailable(f"cannot reach Redis at {redact_url(url)}: {hint}".rstrip(": "))
        return await mint_invite(store, name, int(ttl.total_seconds()))
    finally:
        await store.close()
