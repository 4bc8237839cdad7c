"""`channel watch`: a party's live events, as they arrive."""

from __future__ import annotations

from contextlib import aclosing

import click

from channel.cli_options import Config, json_option
from channel.party.client import Client
from channel.party.commands.acting import act, as_option
from channel.party.keyring import Keyring
from channel.protocol.models import LiveEvent


@click.command()
@as_option
@json_option
@click.option("--after", "last_event_id", metavar="ID", help="Resume after this event id.")
@click.option("--count", type=click.IntRange(min=1), help="Stop after this many events.")
@click.pass_obj
def watch(
    config: Config, name: str, as_json: bool, last_event_id: str | None, count: int | None
) -> None:
    """Print your live events as they arrive: new letters and receipts, never content.

    Reconnects by itself with backoff and resumes where it left off. With --json, one JSON
    object per line (its `id` is what --after takes) and nothing else on stdout: warnings and
    reconnections go to stderr. Stop with Ctrl-C.
    """

    def gap() -> None:
        click.echo("warning: events you missed were trimmed; check inbox and outbox", err=True)

    async def watch_as(client: Client, ring: Keyring) -> None:
        seen = 0
        async with aclosing(client.watch(last_event_id, on_gap=gap)) as events:
            async for event in events:
                click.echo(event.model_dump_json(exclude_none=True) if as_json else _line(event))
                seen += 1
                if count is not None and seen >= count:
                    return

    try:
        act(config, name, watch_as)
    except KeyboardInterrupt:
        return


def _line(event: LiveEvent) -> str:
    what = "new letter" if event.kind == "letter" else event.state.value.replace("_", " ")
    route = f"{event.sender} → {event.recipient}"
    when = event.at[11:19]
    return f"{when}Z  {what:<17} {route}  [{event.precedence.value}]  {event.letter_id}"
