"""A party's letters: register, send, inbox, outbox, open, return, withdraw, status, returned."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

import click

from channel.cli_options import DURATION, Config, dump, echo_json, json_option
from channel.party.client import Client
from channel.party.commands.acting import (
    act,
    as_option,
    identity,
    letter_argument,
    letter_ref,
    terminal,
)
from channel.party.keyring import Keyring, sent_bytes
from channel.party.notice_text import heading_line
from channel.party.seat import Heard, Seat, world_time
from channel.party.session import party_client
from channel.party.timeline import LetterRow, make_console, render_letters, render_status
from channel.protocol.canonical import format_time, parse_time, sha256_hex
from channel.protocol.errors import ChannelError, IntegrityError, KeyringError
from channel.protocol.lifecycle import State
from channel.protocol.models import (
    LetterStatus,
    LetterSummary,
    OpenedLetter,
    PartyRecord,
    Precedence,
    PublicKeys,
    Receipt,
    ReturnedLetter,
    SealedLetter,
    SignedContent,
)
from channel.protocol.names import check_party_name
from channel.protocol.seal import PartyKeys, fingerprint, party_fingerprint

PRECEDENCES = tuple(p.value for p in Precedence)


@click.command()
@click.argument("name")
@click.option("--invite", metavar="TOKEN", help="A one-time invitation from the operator.")
@json_option
@click.pass_obj
def register(config: Config, name: str, invite: str | None, as_json: bool) -> None:
    """Register a keyring party with the courier.

    Pins the courier's key in the keyring on first contact, and refuses a courier whose key
    has changed since.
    """
    ring, party = identity(config, name)

    async def session() -> PartyRecord:
        async with party_client(config.server, ring, party, refresh_courier=True) as client:
            return await client.register(invite)

    record = asyncio.run(session())
    courier = ring.courier(config.server)
    assert courier is not None  # party_client pinned it
    if as_json:
        echo_json({**dump(record), "courier_fingerprint": fingerprint(courier)})
        return
    click.echo(f"registered {name} with the courier at {config.server}")
    click.echo(f"  fingerprint  {record.fingerprint}")
    click.echo(f"  courier key  {fingerprint(courier)} (pinned in your keyring)")


@click.command()
@as_option
@click.option("--to", "to", required=True, metavar="NAME", help="The recipient.")
@click.option("--subject", default="", help="Sealed inside, with the body.")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--text", help="The letter's body (else --file, else stdin).")
@click.option("--expires", type=DURATION, default="7d", show_default=True, help="Deadline.")
@click.option("--precedence", type=click.Choice(PRECEDENCES), default="routine", show_default=True)
@click.option("--reply-to", metavar="ID|L3", help="The letter this one answers.")
@click.option(
    "--trust-new",
    is_flag=True,
    help="Pin a first correspondent's keys without asking (for scripts; check the fingerprint).",
)
@json_option
@click.pass_obj
def send(
    config: Config,
    name: str,
    to: str,
    subject: str,
    path: Path | None,
    text: str | None,
    expires: timedelta,
    precedence: str,
    reply_to: str | None,
    trust_new: bool,
    as_json: bool,
) -> None:
    """Seal a letter and hand it to the courier.

    The body comes from --text, --file, or stdin (only when stdin is not a terminal). The sealed
    letter is kept in the keyring so a returned letter can be compared, with a readable copy
    sealed to yourself (`channel show ID`). A first correspondent's fingerprint is shown and
    must be confirmed at the terminal before their keys are pinned, or accepted by --trust-new.
    """
    check_party_name(to)
    if reply_to:
        reply_to = letter_ref(config, reply_to)
    body = _letter_body(path, text)

    kept: Path | None = None

    async def send_as(client: Client, ring: Keyring) -> tuple[SealedLetter, Receipt]:
        nonlocal kept
        if ring.known(to) is None:
            offered = await client.public_keys(to)
            first_contact(offered, trust_new)
            ring.pin_contact(offered)
        await ring.vouch(client, to)
        sealed = await client.seal(
            to,
            body,
            subject=subject,
            precedence=Precedence(precedence),
            expires_in=expires,
            in_reply_to=reply_to,
        )
        # Kept before it leaves, so a letter that comes back can always be compared.
        kept = ring.save_sent(name, sealed)
        ring.keep_copy(client.me, sealed, subject, body)
        return sealed, await client.send_sealed(sealed)

    sealed, receipt = act(config, name, send_as)
    env = sealed.envelope
    if as_json:
        summary = {"id": env.id, "state": receipt.event.value, "sender": env.sender}
        echo_json(
            summary
            | {"recipient": env.recipient, "envelope": dump(env), "receipt": dump(receipt)}
            | {"sent_copy": str(kept)}
        )
        return
    click.echo(f"sent letter {env.id} to {to} ({env.precedence.value}, deadline {env.expires_at})")
    click.echo(f"  accepted by the courier at {receipt.at}: receipt 0 verified")
    click.echo(f"  sealed copy kept in {kept}")


def first_contact(keys: PublicKeys, trust_new: bool) -> None:
    """Ask the person at the terminal to confirm a new correspondent's fingerprint.

    Without a terminal (a script), only --trust-new pins new keys: refusing is the safe default.
    """
    print_ = party_fingerprint(keys)
    if trust_new:
        click.echo(f"first contact with {keys.name}: pinning fingerprint {print_}", err=True)
        return
    if not terminal():
        raise KeyringError(
            f"first contact with {keys.name} (fingerprint {print_}): confirm it at a terminal, "
            "or pass --trust-new once you have checked it"
        )
    click.echo(f"FIRST CONTACT with {keys.name}", err=True)
    click.echo(f"  fingerprint  {print_}", err=True)
    click.echo("  compare it with the one your correspondent gives you out of band.", err=True)
    if not click.confirm("Pin these keys and send?", default=False, err=True):
        raise KeyringError(f"not sent: the keys of {keys.name} were not confirmed")


def _letter_body(path: Path | None, text: str | None) -> str:
    if path is not None and text is not None:
        raise click.UsageError("give the letter with --file or --text, not both")
    if path is not None:
        try:
            body = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            raise click.BadParameter("the file is not UTF-8 text", param_hint="--file") from None
    elif text is not None:
        body = text
    else:
        if sys.stdin is None or terminal():
            raise click.UsageError("give the letter with --text, --file, or on stdin")
        body = sys.stdin.read()
    if not body.strip():
        raise click.UsageError("the letter is empty")
    return body


def page_options(command: Callable[..., None]) -> Callable[..., None]:
    """`--limit` and `--before`: one page of a listing, newest first."""
    command = click.option(
        "--before",
        metavar="LETTER_ID",
        help="Page on: list the letters after this one (the last id of the previous page).",
    )(command)
    return click.option(
        "--limit",
        type=click.IntRange(1, 500),
        default=100,
        show_default=True,
        help="How many letters to list at most.",
    )(command)


@click.command()
@as_option
@json_option
@click.pass_obj
@page_options
def inbox(config: Config, name: str, as_json: bool, limit: int, before: str | None) -> None:
    """Letters to you: envelopes only.

    Listing hands the envelopes over: the courier records them as delivered. Subjects show for
    letters you opened (from your keyring). In an exercise, what the run's control sends is
    opened and filed apart ("From control"), and letters carry their label and world time.
    """

    async def list_as(client: Client, ring: Keyring) -> tuple[list[LetterSummary], PartyKeys]:
        letters = await client.inbox(limit, before)
        seat = Seat.of(ring, client.me)
        if seat is not None:
            for i, letter in enumerate(letters):
                if seat.from_control(letter.sender) and letter.state in WAITING:
                    try:
                        await seat.receive(client, letter.id)
                    except ChannelError as exc:  # listed as a letter, unopened
                        click.echo(f"warning: could not open letter {letter.id}: {exc}", err=True)
                        continue
                    letters[i] = letter.model_copy(update={"state": State.OPENED})
        return letters, client.me

    letters, keys = act(config, name, list_as)
    _show_listing(Keyring(config.home), keys, letters, "inbox", as_json)


@click.command()
@as_option
@json_option
@click.pass_obj
@page_options
def outbox(config: Config, name: str, as_json: bool, limit: int, before: str | None) -> None:
    """Letters you sent, with their state."""

    async def list_as(client: Client, ring: Keyring) -> tuple[list[LetterSummary], PartyKeys]:
        return await client.outbox(limit, before), client.me

    letters, keys = act(config, name, list_as)
    _show_listing(Keyring(config.home), keys, letters, "outbox", as_json)


WAITING = frozenset({State.ACCEPTED, State.DELIVERED})


def _show_listing(
    ring: Keyring, keys: PartyKeys, letters: list[LetterSummary], box: str, as_json: bool
) -> None:
    """Print a listing: control's notices apart (inbox, in an exercise), then the letters, with
    what the local archive knows (subjects) and, in an exercise, labels and world time."""
    seat = Seat.of(ring, keys)
    heard = seat.heard() if seat is not None else []
    labels = seat.labels() if seat is not None else {}
    notices: list[Heard] = []
    rows: list[LetterRow] = []
    shown: list[dict[str, Any]] = []
    for letter in letters:
        content = ring.read_letter(keys, letter.id)
        notice = None
        if seat is not None and content is not None and seat.from_control(letter.sender):
            notice = Heard.of(content, seat.exercise.control)
        row = LetterRow(
            letter,
            subject=content.subject if content is not None else None,
            label=labels.get(letter.id),
            world=world_time(heard, parse_time(letter.sent_at)) if seat is not None else None,
        )
        if notice is not None:
            notices.append(notice)
        else:
            rows.append(row)
        document = dump(letter) | {"subject": row.subject}
        if seat is not None:
            world = format_time(row.world) if row.world is not None else None
            document |= {"label": row.label, "world_time": world}
        if notice is not None:
            document["notice"] = notice.notice.model_dump(mode="json")
        shown.append(document)
    if as_json:
        echo_json(shown)
        return
    if notices:
        click.echo("From control")
        for notice in notices:
            click.echo(f"  {heading_line(notice)}")
        click.echo("\nLetters")
    render_letters(make_console(), rows, box=box, exercise=seat is not None)


@click.command("open")
@letter_argument
@as_option
@click.option(
    "--output", type=click.Path(dir_okay=False, path_type=Path), help="Write the body here."
)
@json_option
@click.pass_obj
def open_(config: Config, letter_id: str, name: str, output: Path | None, as_json: bool) -> None:
    """Open a letter addressed to you.

    Irreversible: your signed decision goes into the receipt the sender gets. The decrypted copy
    is kept in the keyring (0600).
    """
    letter_id = letter_ref(config, letter_id)

    async def open_as(client: Client, ring: Keyring) -> tuple[SignedContent, OpenedLetter]:
        status = await client.status(letter_id)
        # Pin (or check) the sender's keys before signing the decision to open.
        await ring.vouch(client, status.envelope.sender)
        return await client.open_letter(letter_id)

    signed, opened = act(config, name, open_as)
    kept = Keyring(config.home).save_received(name, signed)
    content = signed.content
    if output is not None:
        output.write_text(content.body, encoding="utf-8")
    if as_json:
        echo_json(
            dump(content) | {"receipts": [dump(r) for r in opened.receipts], "kept": str(kept)}
        )
        return
    click.echo(f"From:    {content.sender} (signature verified)")
    click.echo(f"To:      {content.recipient}")
    click.echo(f"Sent:    {content.sent_at}")
    click.echo(f"Subject: {content.subject}")
    if output is not None:
        click.echo(f"\n(the body was written to {output})")
    else:
        click.echo(f"\n{content.body}")


@click.command("return")
@letter_argument
@as_option
@click.option("--reason", help="Signed by you and shown to the sender.")
@json_option
@click.pass_obj
def return_(config: Config, letter_id: str, name: str, reason: str | None, as_json: bool) -> None:
    """Return a letter unopened (you sign the refusal)."""
    letter_id = letter_ref(config, letter_id)
    receipts = act(config, name, lambda client, ring: client.return_letter(letter_id, reason))
    _show_receipts(letter_id, receipts, as_json, "returned unopened to its sender")


@click.command()
@letter_argument
@as_option
@json_option
@click.pass_obj
def withdraw(config: Config, letter_id: str, name: str, as_json: bool) -> None:
    """Withdraw a letter you sent, if still undecided."""
    letter_id = letter_ref(config, letter_id)

    async def withdraw_as(client: Client, ring: Keyring) -> list[Receipt]:
        return await client.withdraw_letter(letter_id)

    receipts = act(config, name, withdraw_as)
    _show_receipts(letter_id, receipts, as_json, "withdrawn")


def _show_receipts(letter_id: str, receipts: list[Receipt], as_json: bool, what: str) -> None:
    state = receipts[-1].event.value
    if as_json:
        echo_json({"id": letter_id, "state": state, "receipts": [dump(r) for r in receipts]})
        return
    click.echo(f"letter {letter_id} {what}; receipt chain verified:")
    for receipt in receipts:
        reason = f'  "{receipt.reason}"' if receipt.reason else ""
        click.echo(f"  ✓ {receipt.seq} {receipt.event.value:<17} {receipt.at}{reason}")


@click.command()
@letter_argument
@as_option
@json_option
@click.pass_obj
def status(config: Config, letter_id: str, name: str, as_json: bool) -> None:
    """A letter's state and verified receipts.

    With --json, prints the LetterStatus document that `channel verify` checks offline.
    """
    letter_id = letter_ref(config, letter_id)

    async def status_as(client: Client, ring: Keyring) -> LetterStatus:
        letter = await client.verified_status(letter_id)
        for party in (letter.envelope.sender, letter.envelope.recipient):
            await ring.vouch(client, party)
        return letter

    letter = act(config, name, status_as)
    if as_json:
        click.echo(letter.model_dump_json(indent=2, exclude_none=True))
        return
    render_status(make_console(), letter)


@click.command()
@letter_argument
@as_option
@json_option
@click.pass_obj
def returned(config: Config, letter_id: str, name: str, as_json: bool) -> None:
    """Prove a letter came back exactly as sent.

    Fetches a returned, expired or withdrawn letter, verifies its receipts, and compares it
    byte for byte with the copy kept when it was sent.
    """
    letter_id = letter_ref(config, letter_id)
    sent = Keyring(config.home).load_sent(check_party_name(name), letter_id)

    async def fetch_as(client: Client, ring: Keyring) -> ReturnedLetter:
        back = await client.returned_letter(letter_id)
        await ring.vouch(client, back.letter.envelope.recipient)
        return back

    back = act(config, name, fetch_as)
    came_back = sent_bytes(back.letter)
    if came_back != sent:
        raise IntegrityError(
            f"the letter the courier returned differs from the copy sent ({letter_id})"
        )
    if as_json:
        echo_json(
            {"id": letter_id, "state": back.state.value, "identical": True}
            | {"sha256": sha256_hex(sent), "bytes": len(sent), "letter": dump(back.letter)}
            | {"receipts": [dump(r) for r in back.receipts]}
        )
        return
    click.echo(f"letter {letter_id} is back with {name}: {back.state.value}")
    click.echo(f"  byte for byte the copy sent: sha256 {sha256_hex(sent)} ({len(sent)} bytes)")
    click.echo(f"  receipt chain verified ({len(back.receipts)} receipts)")


@click.command()
@letter_argument
@as_option
@json_option
@click.pass_obj
def show(config: Config, letter_id: str, name: str, as_json: bool) -> None:
    """Show a letter you sent or opened, from your keyring (no courier needed)."""
    letter_id = letter_ref(config, letter_id)
    ring, keys = identity(config, name)
    content = ring.read_letter(keys, letter_id)
    if content is None:
        raise KeyringError(
            f"letter {letter_id} is not readable in {name}'s keyring: "
            "open it first (`channel open`), or it was sent from another keyring"
        )
    if as_json:
        echo_json(dump(content))
        return
    click.echo(f"From:    {content.sender}")
    click.echo(f"To:      {content.recipient}")
    click.echo(f"Sent:    {content.sent_at}")
    click.echo(f"Subject: {content.subject}")
    click.echo(f"\n{content.body}")
