"""`channel`: the command line's root: global options, the command table, and the one place
where errors become one-line messages and exit codes.

    channel keys new us.cia.director
    channel register us.cia.director
    channel send --as us.cia.director --to ir.irgc.quds --text "..." --precedence immediate
    channel inbox --as ir.irgc.quds --server http://127.0.0.1:8700
    channel status ID --as us.cia.director --json > letter.json && channel verify letter.json

Each command group lives with its role and is imported only when it runs ("module:attribute" in
`COMMANDS`), so `channel --help` loads click and this file only:

    channel.party.commands.*    a party's commands (keys, letters, watch, verify)
    channel.courier.server.commands     the courier's: serve, config, admin
    channel.exercise.commands   tabletop exercises
    channel.demo                the demo

Every user error is one line on stderr (`error: ...`) and an exit code: a ChannelError's own, 2
for usage (click's), 1 for a failed system call. A closed stdout (`channel ... | head`) ends
quietly, as click's main does for EPIPE.
"""

from __future__ import annotations

import importlib
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar

import click

from channel.cli_options import DEFAULT_SERVER, SERVER_URL, Config
from channel.protocol.errors import ChannelError

# name: ("module:attribute", the summary `channel --help` shows without importing the module).
# tests/test_cli.py checks each summary against the command's own docstring.
COMMANDS: dict[str, tuple[str, str]] = {
    "admin": (
        "channel.courier.server.commands:admin",
        "Operator commands, run where the courier runs.",
    ),
    "config": ("channel.courier.server.commands:config_group", "The courier's settings."),
    "desk": (
        "channel.party.desk.command:desk",
        "Your desk: letters in the browser, on this machine.",
    ),
    "demo": (
        "channel.demo:demo",
        "Play the 2017 letter as a tabletop exercise and write its after-action report.",
    ),
    "exercise": (
        "channel.exercise.commands:exercise",
        "Tabletop exercises played through the real courier (docs/exercises.md).",
    ),
    "inbox": ("channel.party.commands.letters:inbox", "Letters to you: envelopes only."),
    "keys": ("channel.party.commands.keys:keys", "Your keys and the public keys you pinned."),
    "open": ("channel.party.commands.letters:open_", "Open a letter addressed to you."),
    "outbox": ("channel.party.commands.letters:outbox", "Letters you sent, with their state."),
    "register": (
        "channel.party.commands.letters:register",
        "Register a keyring party with the courier.",
    ),
    "return": (
        "channel.party.commands.letters:return_",
        "Return a letter unopened (you sign the refusal).",
    ),
    "returned": (
        "channel.party.commands.letters:returned",
        "Prove a letter came back exactly as sent.",
    ),
    "send": ("channel.party.commands.letters:send", "Seal a letter and hand it to the courier."),
    "serve": ("channel.courier.server.commands:serve", "Run the courier."),
    "show": (
        "channel.party.commands.letters:show",
        "Show a letter you sent or opened, from your keyring (no courier needed).",
    ),
    "status": ("channel.party.commands.letters:status", "A letter's state and verified receipts."),
    "verify": ("channel.party.commands.verify:verify", "Verify a `status --json` file offline."),
    "watch": (
        "channel.party.commands.watch:watch",
        "Print your live events as they arrive: new letters and receipts, never content.",
    ),
    "withdraw": (
        "channel.party.commands.letters:withdraw",
        "Withdraw a letter you sent, if still undecided.",
    ),
}

SERVER_HELP = "The courier's base URL (env CHANNEL_SERVER)."
HOME_HELP = "The keyring directory (env CHANNEL_HOME; default: the user data dir)."


class _Failure(click.ClickException):
    """A user-facing failure: one line on stderr, a meaningful exit code, no traceback."""

    def __init__(self, message: str, exit_code: int) -> None:
        super().__init__(" ".join(message.split()))
        # click declares exit_code on the class; here each failure carries its error's own code.
        self.exit_code = exit_code  # type: ignore[misc]


def _one_line(exc: click.ClickException) -> str:
    """click's message for `exc` on one line; usage errors say where to find the usage."""
    message = " ".join(exc.format_message().split())
    if isinstance(exc, click.UsageError) and exc.ctx is not None:
        message += f" (see `{exc.ctx.command_path} --help`)"
    return message


def _set_server(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    config = ctx.find_object(Config)
    if value is not None and config is not None:
        config.server = value


def _set_home(ctx: click.Context, param: click.Parameter, value: Path | None) -> None:
    config = ctx.find_object(Config)
    if value is not None and config is not None:
        config.home = value


def _global_options() -> list[click.Option]:
    """--server and --home as every command accepts them after its name (no default, no env:
    given there, they override what came before the command)."""
    return [
        click.Option(
            ["--server"],
            type=SERVER_URL,
            metavar="URL",
            expose_value=False,
            callback=_set_server,
            help=SERVER_HELP,
        ),
        click.Option(
            ["--home"],
            type=click.Path(file_okay=False, path_type=Path),
            expose_value=False,
            callback=_set_home,
            help=HOME_HELP,
        ),
    ]


def _accept_global_options(command: click.Command) -> None:
    """Let `command` and every command under it take the global options, unless it has its own
    option of that name (`exercise run --server` means the courier to play on)."""
    taken = {opt for param in command.params for opt in param.opts}
    command.params.extend(opt for opt in _global_options() if opt.opts[0] not in taken)
    if isinstance(command, click.Group):
        for sub in command.commands.values():
            _accept_global_options(sub)


class LazyGroup(click.Group):
    """The root group: commands imported when used; errors mapped to one line and a code."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(COMMANDS)

    loaded: ClassVar[dict[str, click.Command]] = {}

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in COMMANDS:
            return None
        if cmd_name not in self.loaded:
            module, _, attribute = COMMANDS[cmd_name][0].partition(":")
            command = getattr(importlib.import_module(module), attribute)
            if not isinstance(command, click.Command):
                raise TypeError(f"{COMMANDS[cmd_name][0]} is not a click command")
            _accept_global_options(command)
            self.loaded[cmd_name] = command
        return self.loaded[cmd_name]

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list from the table, without importing a single command."""
        with formatter.section("Commands"):
            formatter.write_dl([(name, COMMANDS[name][1]) for name in self.list_commands(ctx)])

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ChannelError as exc:
            raise _Failure(str(exc), exc.exit_code) from None
        except BrokenPipeError:
            raise  # click's main ends quietly when stdout's reader is gone (`channel ... | head`)
        except OSError as exc:
            where = f": {exc.filename}" if exc.filename else ""
            raise _Failure(f"{exc.strerror or exc}{where}", 1) from None

    def main(
        self,
        args: Sequence[str] | None = None,
        prog_name: str | None = None,
        complete_var: str | None = None,
        standalone_mode: bool = True,
        **extra: Any,
    ) -> Any:
        if not standalone_mode:
            return super().main(args, prog_name, complete_var, False, **extra)
        try:
            code = super().main(args, prog_name, complete_var, False, **extra)
        except click.ClickException as exc:
            click.echo(f"error: {_one_line(exc)}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("error: aborted", err=True)
            sys.exit(1)
        sys.exit(code if isinstance(code, int) else 0)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--server",
    envvar="CHANNEL_SERVER",
    type=SERVER_URL,
    default=DEFAULT_SERVER,
    show_default=True,
    metavar="URL",
    help=SERVER_HELP,
)
@click.option(
    "--home",
    envvar="CHANNEL_HOME",
    type=click.Path(file_okay=False, path_type=Path),
    help=HOME_HELP,
)
@click.version_option(package_name="backchannel", prog_name="channel")
@click.pass_context
def cli(ctx: click.Context, server: str, home: Path | None) -> None:
    """Backchannel: sealed letters through a courier that can prove who sent them but never read
    them. The recipient opens a letter or returns it unopened; every step is a signed receipt.

    --server and --home may also be given after the command."""
    from channel.logs import configure_cli_logging  # structlog: not needed for --help

    configure_cli_logging()
    ctx.obj = Config(server, home)


def main() -> None:
    cli(prog_name="channel")
