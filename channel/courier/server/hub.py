"""The per-worker event hub: one reader wakes every live event stream the worker serves.

Each worker keeps one pub/sub connection per Redis master (`Store.follow_appends`), told by Redis
of every append to any party's event stream; the hub wakes that party's watchers, and each reads
its new events from its own cursor on the hub's store, a connection pool of its own, a bounded
number of reads at a time. So an idle watcher costs no Redis connection and no Redis command, and
no request ever waits for, or fails because of, a watcher. A party's watchers woken together are
usually at the same cursor: they share one read (`Hub.read`), not one each.

A notification says only "P's stream grew"; the events themselves are read from the stream, so a
lost notification (the reader reconnecting) loses nothing: once the reader is subscribed again it
wakes every watcher, and each reads whatever it has not sent yet.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field

import structlog

from channel.courier.store import Store
from channel.protocol.errors import StoreUnavailable, TooManyStreams

log = structlog.get_logger("channel.events")

Events = list[tuple[str, bytes]]  # (event id, event JSON), oldest first

# Reads in flight at once on the hub's own store, whatever the number of watchers woken.
READS_IN_FLIGHT = 16
# A stream refused for want of room is asked to come back after this long.
RETRY_AFTER_MS = 10_000
_BACKOFF = (0.5, 10.0)  # the reader's first and longest pause after a Redis failure


@dataclass(eq=False)
class Watcher:
    """One open stream: woken when its party's stream may hold events it has not sent."""

    party: str
    wake: asyncio.Event = field(default_factory=asyncio.Event)


class Hub:
    def __init__(self, store: Store, *, per_party: int, total: int) -> None:
        self.store = store
        self.per_party = per_party
        self.total = total
        self._watchers: dict[str, set[Watcher]] = {}
        self._count = 0
        self._reads = asyncio.Semaphore(READS_IN_FLIGHT)
        # Per party, the reads under way, by (cursor, count): a watcher asking for the same joins.
        self._reading: dict[str, dict[tuple[str, int], asyncio.Future[Events]]] = {}
        self._reader: asyncio.Task[None] | None = None
        self._up = False  # the reader is subscribed on every master
        self._failing = False  # the reader's last attempt failed (say so when it recovers)

    def __len__(self) -> int:
        return self._count

    def start(self) -> None:
        self._reader = asyncio.create_task(self._follow())

    async def stop(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
            # Bounded: a cancellation that lands inside a redis-py read can be swallowed, and
            # shutdown must not wait on it (closing the store below ends the reader's reads).
            await asyncio.wait({self._reader}, timeout=2)
        await self.store.close()

    def admit(self, party: str) -> Watcher:
        """A place for one more of `party`'s streams, or TooManyStreams (429)."""
        mine = self._watchers.get(party, set())
        if len(mine) >= self.per_party:
            raise TooManyStreams(
                f"{party} already holds {self.per_party} live event streams on this courier "
                "worker; close one (one stream per watcher is enough)",
                retry_after_ms=RETRY_AFTER_MS,
            )
        if self._count >= self.total:
            raise TooManyStreams(
                f"the courier holds as many live event streams as it may ({self.total} per "
                "worker); try again later",
                retry_after_ms=RETRY_AFTER_MS,
            )
        watcher = Watcher(party)
        self._watchers.setdefault(party, set()).add(watcher)
        self._count += 1
        return watcher

    def leave(self, watcher: Watcher) -> None:
        mine = self._watchers.get(watcher.party)
        if mine is not None and watcher in mine:
            mine.discard(watcher)
            self._count -= 1
            if not mine:
                del self._watchers[watcher.party]

    async def read(self, party: str, cursor: str, count: int) -> Events:
        """Up to `count` of `party`'s events after `cursor`, read once for every watcher that
        asks the same while the read is under way. A read begun before an append was announced
        is not joined after it (`_appended` forgets it), so a watcher woken by the announcement
        always reads from Redis after the append."""
        under_way = self._reading.setdefault(party, {})
        key = (cursor, count)
        shared = under_way.get(key)
        if shared is None:
            shared = asyncio.ensure_future(self._read(party, cursor, count))
            under_way[key] = shared
            shared.add_done_callback(self._forget(party, key))
        # Shielded: one watcher leaving must not cancel the read the others wait for.
        return await asyncio.shield(shared)

    async def _read(self, party: str, cursor: str, count: int) -> Events:
        async with self._reads:
            return await self.store.events_after(party, cursor, count=count)

    def _forget(self, party: str, key: tuple[str, int]) -> Callable[[asyncio.Future[Events]], None]:
        def forget(done: asyncio.Future[Events]) -> None:
            under_way = self._reading.get(party)
            if under_way is not None and under_way.get(key) is done:
                del under_way[key]
                if not under_way:
                    del self._reading[party]

        return forget

    def _appended(self, party: str) -> None:
        self._reading.pop(party, None)  # begun before this append: no one may join them now
        for watcher in self._watchers.get(party, ()):
            watcher.wake.set()

    def _ready(self) -> None:
        self._reading.clear()
        for watchers in self._watchers.values():
            for watcher in watchers:
                watcher.wake.set()

    async def _follow(self) -> None:
        pause = _BACKOFF[0]
        while True:
            try:
                await self.store.follow_appends(self._appended, self._subscribed)
            except StoreUnavailable as exc:
                # Streams stay open meanwhile (with their pings); they catch up once it is back.
                pause = _BACKOFF[0] if self._up else min(pause * 2, _BACKOFF[1])
                self._up, self._failing = False, True
                log.warning("event_reader_failed", error=exc.detail, retry_in=pause)
            await asyncio.sleep(pause)

    def _subscribed(self) -> None:
        if self._failing:
            log.info("event_reader_recovered")
        self._up, self._failing = True, False
        self._ready()
