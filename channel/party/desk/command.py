"""`channel desk --as NAME`: the party's desk on 127.0.0.1, opened in the browser."""

from __future__ import annotations

import asyncio
import contextlib

import click

from channel.cli_options import Config
from channel.party.commands.acting import as_option, identity
from channel.party.desk.app import desk_app
from channel.party.session import party_client
from channel.party.web import serve


@click.command()
@as_option
@click.option("--port", type=click.IntRange(0, 65535), default=0, help="Default: a free port.")
@click.option("--no-browser", is_flag=True, help="Print the link only; do not open a browser.")
@click.pass_obj
def desk(config: Config, name: str, port: int, no_browser: bool) -> None:
    """Your desk: letters in the browser, on this machine.

    Serves on 127.0.0.1 only, with your keyring; the courier still sees sealed letters only.
    The printed link holds a one-time token: whoever opens it first gets the desk.
    """
    ring, keys = identity(config, name)

    async def run() -> None:
        async with party_client(config.server, ring, keys) as client:
            app, guard = desk_app(client, ring, keys)
            runner, url = await serve(app, guard, port=port, open_browser=not no_browser)
            click.echo(f"the desk of {name} is open at\n  {url}\n(Ctrl-C to close it)")
            try:
                await asyncio.Event().wait()
            finally:
                await runner.cleanup()

    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(run())
