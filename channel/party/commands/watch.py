"""`channel watch`: a party's live events, as they arrive."""

from __future__ import annotations

import json
from contextlib import aclosing
from typing import Any

import click

from channel.cli_options import Config, json_option
from channel.party.client import Client
from channel.party.commands.acting import act, as_option
from channel.party.keyring import Keyring
from channel.party.notice_text import block, ended_line
from channel.party.seat import Heard, Seat
from channel.protocol.canonical import format_time, now_utc
from channel.protocol.errors import ChannelError, IntegrityError
from channel.protocol.models import LiveEvent
from channel.protocol.notice import NoticeKind


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

    In an exercise, what the run's control sends (taskings, news, pause, resume, the end) is
    opened as it arrives and printed in full; letters show their label (L3). When the run ends,
    watch says so and stops.
    """

    def gap() -> None:
        click.echo("warning: events you missed were trimmed; check inbox and outbox", err=True)

    def say(text: str, document: dict[str, Any]) -> None:
        click.echo(
            json.dumps(document, ensure_ascii=False, separators=(",", ":")) if as_json else text
        )

    async def watch_as(client: Client, ring: Keyring) -> None:
        seat = Seat.of(ring, client.me)
        if seat is not None and (end := seat.ended()) is not None:
            _stop(end, as_json)  # a watch started after the run: nothing more will come
            return
        seen = 0
        async with aclosing(client.watch(last_event_id, on_gap=gap)) as events:
            async for event in events:
                document = event.model_dump(mode="json", exclude_none=True)
                if seat is None:
                    say(_line(event), document)
                elif not seat.from_control(event.sender):
                    label = seat.label(event.letter_id)
                    say(_line(event, label), document | ({"label": label} if label else {}))
                elif event.kind == "letter" and event.recipient == client.me.name:
                    heard = await _receive(seat, client, event.letter_id)
                    if heard is None:  # a letter from control that is not a notice
                        say(_line(event), document)
                    elif heard.notice.kind is NoticeKind.ENDED:
                        if as_json:
                            say("", _notice(event, heard))
                        _stop(heard, as_json)
                        return
                    else:
                        say("\n".join(block(heard, now_utc())), _notice(event, heard))
                else:
                    continue  # the receipts of control's notices: the notice is what counts
                seen += 1
                if count is not None and seen >= count:
                    return

    try:
        act(config, name, watch_as)
    except KeyboardInterrupt:
        return


async def _receive(seat: Seat, client: Client, letter_id: str) -> Heard | None:
    """Open a letter from control and read its notice; a letter that cannot be opened (gone
    past its deadline, opened from another copy of the keyring) is a warning, not the end."""
    try:
        content = await seat.receive(client, letter_id)
    except IntegrityError:
        raise  # control's keys or chain do not verify: that stops the watch
    except ChannelError as exc:
        click.echo(f"warning: could not open letter {letter_id} from control: {exc}", err=True)
        return None
    return Heard.of(content, seat.exercise.control)


def _notice(event: LiveEvent, heard: Heard) -> dict[str, Any]:
    """A notice as `watch --json` prints it: its event id (for --after), and the notice."""
    return {
        "id": event.id,
        "kind": "notice",
        "letter_id": heard.letter_id,
        "sent_at": format_time(heard.sent),
        "notice": heard.notice.model_dump(mode="json"),
    }


def _stop(heard: Heard, as_json: bool) -> None:
    # With --json, stdout stays JSON: the closing line goes to stderr.
    click.echo(ended_line(heard), err=as_json)


def _line(event: LiveEvent, label: str | None = None) -> str:
    what = "new letter" if event.kind == "letter" else event.state.value.replace("_", " ")
    route = f"{event.sender} → {event.recipient}"
    when = event.at[11:19]
    named = f"{label} {event.letter_id}" if label else event.letter_id
    return f"{when}Z  {what:<17} {route}  [{event.precedence.value}]  {named}"
