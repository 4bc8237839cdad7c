"""`channel`: the command line, a thin shell over `channel.client.Client` and the keyring.

    channel keys new us.cia.director
    channel register us.cia.director
    channel send --as us.cia.director --to ir.irgc.quds --text "..." --precedence immediate
    channel inbox --as ir.irgc.quds
    channel return ID --as ir.irgc.quds --reason "..."
    channel status ID --as us.cia.director --json > letter.json && channel verify letter.json

Everything heavy (aiohttp, redis, pydantic, cryptography, rich, the client) is imported inside the
commands, so `channel --help` starts fast. Errors are caught once, in `_Group.invoke`: a
ChannelError prints `error: <one line>` on stderr and exits with the error's `exit_code`.
"""

from __future__ import annotations

import json
import os
import re
import sys
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, ClassVar, TypeVar

import click

from channel.errors import ChannelError
from channel.exercise.commands import exercise

if TYPE_CHECKING:
    from channel.client import Client
    from channel.keyring import Keyring
    from channel.models import (
        LetterStatus,
        LiveEvent,
        OpenedLetter,
        PartyRecord,
        Receipt,
        ReturnedLetter,
        SealedLetter,
        SignedContent,
        Wire,
    )
    from channel.seal import PartyKeys

T = TypeVar("T")
DEFAULT_SERVER = "http://127.0.0.1:8700"
PRECEDENCES = ("routine", "priority", "immediate", "flash")


# --- the error boundary --------------------------------------------------------------------------


class _Failure(click.ClickException):
    """A user-facing failure: one line on stderr, a meaningful exit code, no traceback."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(" ".join(message.split()))
        # click declares exit_code on the class; here each failure carries its error's own code.
        self.exit_code = exit_code  # type: ignore[misc]

    def show(self, file: IO[Any] | None = None) -> None:
        click.echo(f"error: {self.message}", err=True)


class _Group(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ChannelError as exc:
            raise _Failure(str(exc), exc.exit_code) from None
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise _Failure(f"{exc.strerror or exc}{where}", 1) from None


# --- parameters ----------------------------------------------------------------------------------


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


DURATION = Duration()
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of text.")
as_option = click.option(
    "--as", "name", required=True, metavar="NAME", help="The keyring party acting."
)
config_file_option = click.option(
    "--config",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A TOML file of courier settings, keyed by setting name [env CHANNEL_CONFIG].",
)


@dataclass(frozen=True)
class Config:
    server: str
    home: Path | None

    def keyring(self) -> Keyring:
        from channel.keyring import Keyring

        return Keyring(self.home)


# --- plumbing shared by the commands -------------------------------------------------------------


def run(coro: Coroutine[Any, Any, T]) -> T:
    import asyncio

    return asyncio.run(coro)


def identity(config: Config, name: str) -> tuple[Keyring, PartyKeys]:
    """The keyring and the acting party's keys; refuses a bad name before any network call."""
    from channel.names import check_party_name

    check_party_name(name)
    ring = config.keyring()
    return ring, ring.load(name)


@asynccontextmanager
async def party_client(
    server: str, ring: Keyring, keys: PartyKeys, *, refresh_courier: bool = False
) -> AsyncIterator[Client]:
    """A client acting as `keys`, trusting its own keys and the courier key pinned in `ring`."""
    from channel.client import Client

    async with Client(server, keys) as client:
        client.trust(keys.public())
        await ring.trust_courier(client, refresh=refresh_courier)
        yield client


def act(config: Config, name: str, action: Callable[[Client, Keyring], Awaitable[T]]) -> T:
    """Run one action as the keyring party `name` against the configured courier."""
    ring, keys = identity(config, name)

    async def session() -> T:
        async with party_client(config.server, ring, keys) as client:
            return await action(client, ring)

    return run(session())


def _terminal() -> bool:
    """Is someone at stdin? (It may be closed altogether, as under some CI runners.)"""
    return sys.stdin is not None and sys.stdin.isatty()


def echo_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def dump(model: Wire) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


def check_letter(letter_id: str) -> str:
    from channel.names import check_letter_id

    return check_letter_id(letter_id)


# --- the group -----------------------------------------------------------------------------------


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--server",
    envvar="CHANNEL_SERVER",
    default=DEFAULT_SERVER,
    show_default=True,
    metavar="URL",
    help="The courier's base URL (env CHANNEL_SERVER).",
)
@click.option(
    "--home",
    envvar="CHANNEL_HOME",
    type=click.Path(file_okay=False, path_type=Path),
    help="The keyring directory (env CHANNEL_HOME; default: the user data dir).",
)
@click.version_option(package_name="backchannel", prog_name="channel")
@click.pass_context
def cli(ctx: click.Context, server: str, home: Path | None) -> None:
    """Backchannel: sealed letters through a courier that can prove who sent them but never read
    them. The recipient opens a letter or returns it unopened; every step is a signed receipt."""
    ctx.obj = Config(server.rstrip("/"), home)


def main() -> None:
    cli(prog_name="channel")


# --- courier operator ----------------------------------------------------------------------------


@cli.command()
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
    overrides the defaults. Without --redis, the courier starts its own Redis in the data dir.
    """
    from channel.server.run import serve as run_courier
    from channel.settings import load_settings

    run_courier(load_settings(**flags))


@cli.group("config")
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
    from channel.settings import load_settings

    shown = load_settings(config=config).redacted()
    if as_json:
        echo_json(shown)
        return
    for name, value in shown.items():
        click.echo(f"{name} = {json.dumps(value)}" if value is not None else f"# {name}: not set")


@cli.group()
def admin() -> None:
    """Operator commands (they talk to the store)."""


@admin.command()
@click.argument("name")
@click.option(
    "--data-dir",
    envvar="CHANNEL_DATA_DIR",
    type=click.Path(file_okay=False, path_type=Path),
    help="The courier's data dir (its embedded Redis socket and key) [env CHANNEL_DATA_DIR].",
)
@click.option("--redis", "redis_url", envvar="CHANNEL_REDIS_URL", metavar="URL", help="Redis URL.")
@click.option("--ttl", type=DURATION, default="7d", show_default=True, help="Validity.")
@json_option
def invite(
    name: str, data_dir: Path | None, redis_url: str | None, ttl: timedelta, as_json: bool
) -> None:
    """Mint a one-time invitation for NAME.

    Talks to the courier's Redis directly: the embedded one in --data-dir, or --redis URL. The
    token is shown once; only its hash is stored.
    """
    from channel.canonical import format_time, now_utc
    from channel.names import check_party_name

    check_party_name(name)
    token = run(_mint_invite(name, data_dir, redis_url, ttl))
    seconds = int(ttl.total_seconds())
    if as_json:
        echo_json({"name": name, "token": token, "ttl_seconds": seconds})
        return
    until = format_time(now_utc() + ttl)
    click.echo(f"invitation for {name}, valid until {until}, shown only this once:\n\n  {token}\n")
    click.echo(f"the party registers with: channel register {name} --invite {token}")


async def _mint_invite(
    name: str, data_dir: Path | None, redis_url: str | None, ttl: timedelta
) -> str:
    from channel.courier import mint_invite
    from channel.embedded import EmbeddedRedis
    from channel.errors import StoreUnavailable
    from channel.settings import default_data_dir, redact_url
    from channel.store import Store

    data_dir = data_dir or default_data_dir()
    url = redis_url or EmbeddedRedis(data_dir).url
    store = Store.from_url(url)
    try:
        if not await store.ping():
            if redis_url:
                raise StoreUnavailable(f"cannot reach Redis at {redact_url(redis_url)}")
            raise StoreUnavailable(
                "the courier's embedded Redis is not running: start `channel serve` first, "
                "or pass --redis URL"
            )
        return await mint_invite(store, name, int(ttl.total_seconds()))
    finally:
        await store.close()


# --- keys ----------------------------------------------------------------------------------------


@cli.group()
def keys() -> None:
    """Your keys and the public keys you pinned."""


@keys.command("new")
@click.argument("name")
@click.option(
    "--passphrase-prompt",
    is_flag=True,
    help="Protect the private keys with a passphrase (asked for; or CHANNEL_PASSPHRASE).",
)
@json_option
@click.pass_obj
def keys_new(config: Config, name: str, passphrase_prompt: bool, as_json: bool) -> None:
    """Create a party NAME with fresh keys."""
    from channel.keyring import PASSPHRASE_ENV
    from channel.names import check_party_name
    from channel.seal import party_fingerprint

    check_party_name(name)
    passphrase = _new_passphrase(name, asked=passphrase_prompt) or os.environ.get(PASSPHRASE_ENV)
    ring = config.keyring()
    public = ring.new(name, passphrase).public()
    fingerprint = party_fingerprint(public)
    if as_json:
        echo_json({**dump(public), "fingerprint": fingerprint, "encrypted": bool(passphrase)})
        return
    click.echo(f"created {name} in the keyring at {ring.home}")
    click.echo(f"  fingerprint  {fingerprint}")
    protection = "passphrase-protected" if passphrase else "not encrypted (file mode 0600)"
    click.echo(f"  private keys {protection}")
    click.echo(
        f"next: `channel register {name}`, or send `channel keys export {name}` to the operator"
    )


def _new_passphrase(name: str, *, asked: bool) -> str | None:
    from channel.errors import KeyringError
    from channel.keyring import PASSPHRASE_ENV

    if not asked:
        return None
    if _terminal():
        text: str = click.prompt(
            f"New passphrase for {name}", hide_input=True, confirmation_prompt=True
        )
        return text
    if os.environ.get(PASSPHRASE_ENV):
        return os.environ[PASSPHRASE_ENV]
    raise KeyringError(f"--passphrase-prompt needs a terminal, or set {PASSPHRASE_ENV}")


@keys.command("list")
@json_option
@click.pass_obj
def keys_list(config: Config, as_json: bool) -> None:
    """List your parties and your pins."""
    from channel.seal import fingerprint, party_fingerprint

    ring = config.keyring()
    parties = [
        {
            "name": name,
            "fingerprint": party_fingerprint(ring.public(name)),
            "encrypted": ring.is_encrypted(name),
        }
        for name in ring.names()
    ]
    contacts = [{"name": c.name, "fingerprint": party_fingerprint(c)} for c in ring.contacts()]
    couriers = [
        {"url": url, "fingerprint": fingerprint(key)} for url, key in ring.couriers().items()
    ]
    if as_json:
        echo_json(
            {"home": str(ring.home), "parties": parties, "contacts": contacts, "couriers": couriers}
        )
        return
    click.echo(f"keyring {ring.home}")
    for party in parties:
        lock = "  (passphrase)" if party["encrypted"] else ""
        click.echo(f"  party    {party['name']:<32} {party['fingerprint']}{lock}")
    for contact in contacts:
        click.echo(f"  contact  {contact['name']:<32} {contact['fingerprint']}")
    for courier in couriers:
        click.echo(f"  courier  {courier['url']:<32} {courier['fingerprint']}")


@keys.command("show")
@click.argument("name")
@json_option
@click.pass_obj
def keys_show(config: Config, name: str, as_json: bool) -> None:
    """Show a party's or contact's public keys."""
    from channel.errors import KeyringError
    from channel.names import check_party_name
    from channel.seal import party_fingerprint

    ring = config.keyring()
    public = ring.known(check_party_name(name))
    if public is None:
        raise KeyringError(f"no party or contact {name} in the keyring at {ring.home}")
    kind = "party" if name in ring.names() else "contact"
    shown = {**dump(public), "kind": kind, "fingerprint": party_fingerprint(public)}
    if as_json:
        echo_json(shown)
        return
    for label in ("name", "kind", "fingerprint", "signing_key", "encryption_key"):
        click.echo(f"{label:<15} {shown[label]}")


@keys.command("export")
@click.argument("name")
@click.option("--output", type=click.Path(dir_okay=False, path_type=Path), help="Write to FILE.")
@click.pass_obj
def keys_export(config: Config, name: str, output: Path | None) -> None:
    """Export a party's public keys as JSON.

    Only public keys: private keys never leave the keyring.
    """
    from channel.names import check_party_name

    text = config.keyring().export(check_party_name(name))
    if output is None:
        click.echo(text, nl=False)
        return
    output.write_text(text, encoding="utf-8")
    click.echo(f"wrote the public keys of {name} to {output}", err=True)


@keys.command("import")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_obj
def keys_import(config: Config, file: Path, as_json: bool) -> None:
    """Pin a contact's public keys from FILE."""
    from channel.seal import party_fingerprint

    public, new = config.keyring().import_public(file)
    fingerprint = party_fingerprint(public)
    if as_json:
        echo_json({"name": public.name, "fingerprint": fingerprint, "new": new})
        return
    verb = "pinned" if new else "already pinned with the same keys:"
    click.echo(f"{verb} {public.name} (fingerprint {fingerprint})")


# --- a party's commands --------------------------------------------------------------------------


@cli.command()
@click.argument("name")
@click.option("--invite", metavar="TOKEN", help="A one-time invitation from the operator.")
@json_option
@click.pass_obj
def register(config: Config, name: str, invite: str | None, as_json: bool) -> None:
    """Register a keyring party with the courier.

    Pins the courier's key in the keyring on first contact, and refuses a courier whose key
    has changed since.
    """
    from channel.seal import fingerprint

    ring, party = identity(config, name)

    async def session() -> PartyRecord:
        async with party_client(config.server, ring, party, refresh_courier=True) as client:
            return await client.register(invite)

    record = run(session())
    courier = ring.courier(config.server)
    assert courier is not None  # party_client pinned it
    if as_json:
        echo_json({**dump(record), "courier_fingerprint": fingerprint(courier)})
        return
    click.echo(f"registered {name} with the courier at {config.server}")
    click.echo(f"  fingerprint  {record.fingerprint}")
    click.echo(f"  courier key  {fingerprint(courier)} (pinned in your keyring)")


@cli.command()
@as_option
@click.option("--to", "to", required=True, metavar="NAME", help="The recipient.")
@click.option("--subject", default="", help="Sealed inside, with the body.")
@click.option("--file", "path", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--text", help="The letter's body (else --file, else stdin).")
@click.option("--expires", type=DURATION, default="7d", show_default=True, help="Deadline.")
@click.option("--precedence", type=click.Choice(PRECEDENCES), default="routine", show_default=True)
@click.option("--reply-to", metavar="ID", help="The letter this one answers.")
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
    as_json: bool,
) -> None:
    """Seal a letter and hand it to the courier.

    The body comes from --text, --file, or stdin (only when stdin is not a terminal). The sealed
    letter, ciphertext only, is kept in the keyring so a returned letter can be compared.
    """
    from channel.models import Precedence
    from channel.names import check_party_name

    check_party_name(to)
    if reply_to:
        check_letter(reply_to)
    body = _letter_body(path, text)

    kept: Path | None = None

    async def send_as(client: Client, ring: Keyring) -> tuple[SealedLetter, Receipt]:
        nonlocal kept
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
        if sys.stdin is None or _terminal():
            raise click.UsageError("give the letter with --text, --file, or on stdin")
        body = sys.stdin.read()
    if not body.strip():
        raise click.UsageError("the letter is empty")
    return body


@cli.command()
@as_option
@json_option
@click.pass_obj
def inbox(config: Config, name: str, as_json: bool) -> None:
    """Letters to you: envelopes only.

    Listing hands the envelopes over: the courier records them as delivered.
    """
    from channel.timeline import make_console, render_letters

    letters = act(config, name, lambda client, ring: client.inbox())
    if as_json:
        echo_json([dump(letter) for letter in letters])
        return
    render_letters(make_console(), letters, box="inbox")


@cli.command()
@as_option
@json_option
@click.pass_obj
def outbox(config: Config, name: str, as_json: bool) -> None:
    """Letters you sent, with their state."""
    from channel.timeline import make_console, render_letters

    letters = act(config, name, lambda client, ring: client.outbox())
    if as_json:
        echo_json([dump(letter) for letter in letters])
        return
    render_letters(make_console(), letters, box="outbox")


@cli.command()
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
    object per line (its `id` is what --after takes). Stop with Ctrl-C.
    """
    from contextlib import aclosing

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


@cli.command("open")
@click.argument("letter_id", metavar="ID")
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
    check_letter(letter_id)

    async def open_as(client: Client, ring: Keyring) -> tuple[SignedContent, OpenedLetter]:
        status = await client.status(letter_id)
        # Pin (or check) the sender's keys before signing the decision to open.
        await ring.vouch(client, status.envelope.sender)
        return await client.open_letter(letter_id)

    signed, opened = act(config, name, open_as)
    kept = config.keyring().save_received(name, signed)
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


@cli.command("return")
@click.argument("letter_id", metavar="ID")
@as_option
@click.option("--reason", help="Signed by you and shown to the sender.")
@json_option
@click.pass_obj
def return_(config: Config, letter_id: str, name: str, reason: str | None, as_json: bool) -> None:
    """Return a letter unopened (you sign the refusal)."""
    check_letter(letter_id)
    receipts = act(config, name, lambda client, ring: client.return_letter(letter_id, reason))
    _show_receipts(letter_id, receipts, as_json, "returned unopened to its sender")


@cli.command()
@click.argument("letter_id", metavar="ID")
@as_option
@json_option
@click.pass_obj
def withdraw(config: Config, letter_id: str, name: str, as_json: bool) -> None:
    """Withdraw a letter you sent, if still undecided."""
    check_letter(letter_id)

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


@cli.command()
@click.argument("letter_id", metavar="ID")
@as_option
@json_option
@click.pass_obj
def status(config: Config, letter_id: str, name: str, as_json: bool) -> None:
    """A letter's state and verified receipts.

    With --json, prints the LetterStatus document that `channel verify` checks offline.
    """
    from channel.timeline import make_console, render_status

    check_letter(letter_id)

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


@cli.command()
@click.argument("letter_id", metavar="ID")
@as_option
@json_option
@click.pass_obj
def returned(config: Config, letter_id: str, name: str, as_json: bool) -> None:
    """Prove a letter came back exactly as sent.

    Fetches a returned, expired or withdrawn letter, verifies its receipts, and compares it
    byte for byte with the copy kept when it was sent.
    """
    from channel.canonical import sha256_hex
    from channel.errors import IntegrityError
    from channel.keyring import sent_bytes
    from channel.names import check_party_name

    check_letter(letter_id)
    sent = config.keyring().load_sent(check_party_name(name), letter_id)

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


@cli.command()
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@json_option
@click.pass_obj
def verify(config: Config, file: Path, as_json: bool) -> None:
    """Verify a `status --json` file offline.

    Checks the sender's seal and every receipt, with the keys pinned in your keyring where it
    has them (else those in the file, with a warning). Exits non-zero naming what fails.
    """
    from pydantic import ValidationError

    from channel.errors import IntegrityError
    from channel.models import LetterStatus
    from channel.timeline import audit, failure, make_console, render_checks

    try:
        letter = LetterStatus.model_validate_json(file.read_bytes())
    except ValidationError as exc:
        first = exc.errors(include_url=False)[0]
        where = ".".join(map(str, first["loc"])) or "file"
        raise IntegrityError(
            f"{file} is not a valid letter status: {where}: {first['msg']}"
        ) from None
    keys, warnings = config.keyring().chain_keys(letter.keys, letter.envelope, config.server)
    checks = audit(letter, keys)
    bad = failure(checks)
    if as_json:
        echo_json(
            {"id": letter.id, "ok": bad is None, "warnings": warnings}
            | {"checks": [{"subject": c.subject, "ok": c.ok, "detail": c.detail} for c in checks]}
        )
    else:
        for warning in warnings:
            click.echo(f"warning: {warning}", err=True)
        render_checks(make_console(), checks)
    if bad is not None:
        raise IntegrityError(f"{bad.subject}: {bad.detail}")
    if not as_json:
        click.echo(f"verified: the seal and {len(letter.receipts)} receipts of letter {letter.id}")


@cli.command()
@click.option("--story", is_flag=True, help="The protocol walk-through instead of the exercise.")
@click.option(
    "--keep",
    type=click.Path(file_okay=False, path_type=Path),
    help="With --story: keep the courier data and keyring in DIR (must be empty or absent).",
)
@click.option("--out", type=click.Path(file_okay=False, path_type=Path), help="Run folder.")
@click.option("--no-live", is_flag=True, help="One line per event instead of the live view.")
def demo(story: bool, keep: Path | None, out: Path | None, no_live: bool) -> None:
    """Play the 2017 letter as a tabletop exercise and write its after-action report.

    The bundled `letter-to-soleimani` scenario runs at full speed on an embedded courier, bots
    in every seat; the HTML report's path is printed at the end. With --story: the letter sent,
    returned unopened, taken back byte for byte and verified offline, step by step.
    """
    if story:
        from channel.demo import run_demo

        if keep is not None and keep.exists() and any(keep.iterdir()):
            raise click.BadParameter(f"{keep} is not empty", param_hint="--keep")
        run_demo(keep)
        return
    from channel.exercise.commands import load, play_and_report

    source = load("letter-to-soleimani")
    play_and_report(
        source, out=out, rehearse=True, live=not no_live, formats=("html", "md", "json")
    )


cli.add_command(exercise)
