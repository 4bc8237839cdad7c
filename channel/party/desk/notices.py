"""What the exercise's control cell told this seat, as the desk files and shows it.

The seat itself (opening control's letters, the notices, the world clock, the deadlines) is
`channel.party.seat`, shared with the CLI. The desk adds what its pages need: it sweeps the
inbox for letters from control, opens each once and keeps the notices in memory, and files them
apart from the letters: the inbox leaves them out, the "From control" page lists them. A letter
from control that is not a notice of this run stays an ordinary letter; one the desk could not
open is listed with why.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import structlog

from channel.party.client import Client
from channel.party.seat import Heard, Seat
from channel.protocol.errors import ChannelError
from channel.protocol.lifecycle import State

log = structlog.get_logger("channel.party.desk.notices")
_SCAN = 500  # letters from the courier's inbox listing looked at per sweep


@dataclass
class ControlDesk:
    """The notices of one seat: opened as they come, kept in memory for the pages."""

    seat: Seat
    heard: list[Heard] = field(default_factory=list)  # oldest first
    ordinary: set[str] = field(default_factory=set)  # letters from control that are no notice
    failed: dict[str, str] = field(default_factory=dict)  # letter id -> why it was not opened
    _lock: asyncio.Lock = field(default_factory=asyncio.Lock)

    @property
    def control(self) -> str:
        return self.seat.control

    def files_apart(self, sender: str, letter_id: str) -> bool:
        """Whether the inbox leaves this letter out (a notice, or one being filed)."""
        return (
            sender == self.control
            and letter_id not in self.ordinary
            and letter_id not in self.failed
        )

    async def sweep(self, client: Client) -> bool:
        """Open every letter from control not yet read; whether anything new was filed."""
        async with self._lock:
            known = {h.letter_id for h in self.heard} | self.ordinary
            new = False
            for letter in await client.inbox(_SCAN):
                if letter.sender != self.control or letter.id in known:
                    continue
                if letter.state not in (State.ACCEPTED, State.DELIVERED, State.OPENED):
                    continue
                try:
                    content = await self.seat.receive(client, letter.id)
                except ChannelError as exc:  # e.g. control's key differs from the one pinned
                    if self.failed.get(letter.id) != exc.detail:
                        log.warning("notice_not_opened", letter=letter.id, error=exc.detail)
                        self.failed[letter.id] = exc.detail
                        new = True
                    continue
                self.failed.pop(letter.id, None)
                heard = self.seat.notice_of(content)
                if heard is None:
                    self.ordinary.add(content.letter_id)
                else:
                    self.heard.append(heard)
                new = True
            self.heard.sort(key=lambda h: h.sent)
            return new
