"""How a party command acts: as one keyring party, against the configured courier."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, TypeVar

import click

from channel.cli_options import Config
from channel.party.exercise import ExerciseSeats, resolve_letter
from channel.party.keyring import Keyring
from channel.party.session import party_client
from channel.protocol.names import check_letter_id, check_party_name

if TYPE_CHECKING:
    from channel.party.client import Client
    from channel.protocol.seal import PartyKeys

T = TypeVar("T")

as_option = click.option(
    "--as", "name", required=True, metavar="NAME", help="The keyring party acting."
)

# Every command that takes a letter takes an id or, in an exercise, its label (`letter_ref`).
letter_argument = click.argument("letter_id", metavar="ID|L3")


def letter_ref(config: Config, reference: str) -> str:
    """The letter id `reference` names: an id, or in an exercise's keyring home a label such
    as `L3` (UnknownLetter if the run has no such label). Outside an exercise, only ids."""
    home = Keyring(config.home).home
    if ExerciseSeats.load(home) is not None:
        reference = resolve_letter(home, reference)
    return check_letter_id(reference)


def identity(config: Config, name: str) -> tuple[Keyring, PartyKeys]:
    """The keyring and the acting party's keys; refuses a bad name before any network call."""
    check_party_name(name)
    ring = Keyring(config.home)
    return ring, ring.load(name)


def act(config: Config, name: str, action: Callable[[Client, Keyring], Awaitable[T]]) -> T:
    """Run one action as the keyring party `name` against the configured courier."""
    ring, keys = identity(config, name)

    async def session() -> T:
        async with party_client(config.server, ring, keys) as client:
            return await action(client, ring)

    return asyncio.run(session())


def terminal() -> bool:
    """Is someone at stdin? (It may be closed altogether, as under some CI runners.)"""
    return sys.stdin is not None and sys.stdin.isatty()
