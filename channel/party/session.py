"""A party's session with a courier: the typed client, acting as keyring keys, trusting the keys
the keyring pinned."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from channel.party.client import Client
from channel.party.keyring import Keyring
from channel.protocol.seal import PartyKeys


@asynccontextmanager
async def party_client(
    server: str, ring: Keyring, keys: PartyKeys, *, refresh_courier: bool = False
) -> AsyncIterator[Client]:
    """A client acting as `keys`, trusting its own keys and the courier key pinned in `ring`."""
    async with Client(server, keys) as client:
        client.trust(keys.public())
        await ring.trust_courier(client, refresh=refresh_courier)
        yield client
