"""The shortest path through the product: one letter, returned unopened, verified."""

from __future__ import annotations

from channel.party.client import Client
from channel.protocol.lifecycle import State


async def test_letter_returned_unopened_comes_back_intact(director: Client, quds: Client) -> None:
    """The 2017 story: the director writes, the commander returns it unopened, it verifies."""
    sealed, receipt = await director.send_letter("ir.irgc.quds", "We will hold you accountable.")
    assert receipt.event is State.ACCEPTED
    await quds.return_letter(sealed.envelope.id, reason="Not accepted")
    status = await director.verified_status(sealed.envelope.id)
    assert [r.event for r in status.receipts] == [
        State.ACCEPTED,
        State.DELIVERED,
        State.RETURNED_UNOPENED,
    ]
    back = await director.returned(sealed.envelope.id)
    assert back.letter == sealed
