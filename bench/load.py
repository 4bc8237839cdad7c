"""The bench's load generator and watchers: raw HTTP/1.1 on keep-alive sockets, in a process of its
own, so that neither server pays for the other's client and the client's own cost stays small.

Every request is prepared beforehand as the exact bytes to write (signed, with its unique letter
id and nonce); this module only writes them and reads the status line and body length back. It
speaks just enough HTTP for the two servers it is pointed at (Content-Length or chunked bodies).
Only 127.0.0.1 is ever a target; every loop is bounded by a count or a deadline.
"""

from __future__ import annotations

import asyncio
import re
import time
from collections import Counter, deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from prepare import RawParty, stream_request

HOST = "127.0.0.1"
LOST = 0  # the status noted for a request whose connection closed before it was answered
_LENGTH = re.compile(rb"\r\ncontent-length:\s*(\d+)", re.IGNORECASE)
_CHUNKED = re.compile(rb"\r\ntransfer-encoding:\s*chunked", re.IGNORECASE)
# A letter id: 26 characters of Crockford's base32, lower case (channel.protocol.names).
_LETTER_ID = re.compile(rb"[0-9a-z]{26}")


class _Exchange(asyncio.Protocol):
    """One keep-alive connection: write a request, call back with the status of its response
    (LOST if the server closed the connection instead of answering)."""

    def __init__(self, on_reply: Callable[[_Exchange, int], None]) -> None:
        self.on_reply = on_reply
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.waiting = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if self.waiting:
            self.waiting = False
            self.on_reply(self, LOST)

    def send(self, request: bytes) -> None:
        assert self.transport is not None
        self.waiting = True
        self.transport.write(request)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[: end + 2])
            length = _LENGTH.search(head)
            if length is not None:
                total = end + 4 + int(length.group(1))
            elif _CHUNKED.search(head):
                stop = self.buffer.find(b"\r\n0\r\n\r\n", end)
                if stop < 0:
                    return
                total = stop + 7
            else:
                total = end + 4
            if len(self.buffer) < total:
                return
            status = int(head[9:12])
            del self.buffer[:total]
            self.waiting = False
            self.on_reply(self, status)


@dataclass
class Outcome:
    """What one run measured. Latencies are seconds; `started` is time.monotonic()."""

    completed: int = 0
    elapsed: float = 0.0
    statuses: Counter[int] = field(default_factory=Counter)
    latencies: list[float] = field(default_factory=list)
    started: float = 0.0
    client_cpu: float = 0.0
    # Open loop only: request i's answer, time.monotonic() (to set against a watcher's times).
    answered: dict[int, float] = field(default_factory=dict)


async def _connect(port: int, on_reply: Callable[[_Exchange, int], None]) -> _Exchange:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_connection(lambda: _Exchange(on_reply), HOST, port)
    return protocol


def closed_loop(
    ports: list[int], requests: list[bytes], connections: int, seconds: float
) -> Outcome:
    """Each of `connections` (spread over `ports`) sends its next request as soon as its last one
    is answered, until the requests run out or `seconds` have passed."""
    return asyncio.run(_closed_loop(ports, requests, connections, seconds))


async def _closed_loop(
    ports: list[int], requests: list[bytes], connections: int, seconds: float
) -> Outcome:
    outcome = Outcome()
    queue = iter(requests)
    sent_at: dict[_Exchange, float] = {}
    deadline = 0.0
    finished = asyncio.get_running_loop().create_future()
    in_flight = 0

    def next_on(conn: _Exchange) -> None:
        nonlocal in_flight
        live = not conn.lost and time.perf_counter() < deadline
        request = next(queue, None) if live else None
        if request is None:
            if in_flight == 0 and not finished.done():
                finished.set_result(None)
            return
        in_flight += 1
        sent_at[conn] = time.perf_counter()
        conn.send(request)

    def on_reply(conn: _Exchange, status: int) -> None:
        nonlocal in_flight
        in_flight -= 1
        outcome.latencies.append(time.perf_counter() - sent_at[conn])
        outcome.statuses[status] += 1
        next_on(conn)

    pool = [await _connect(ports[n % len(ports)], on_reply) for n in range(connections)]
    cpu = time.process_time()
    outcome.started = time.monotonic()
    start = time.perf_counter()
    deadline = start + seconds
    for conn in pool:
        next_on(conn)
    await asyncio.wait_for(finished, seconds + 60)
    outcome.elapsed = time.perf_counter() - start
    outcome.completed = len(outcome.latencies)
    outcome.client_cpu = time.process_time() - cpu
    for conn in pool:
        assert conn.transport is not None
        conn.transport.close()
    return outcome


def open_loop(port: int, requests: list[bytes], rate: float, connections: int) -> Outcome:
    """Request i is due at start + i / rate, whatever came back before; its latency counts from
    then (no coordinated omission). Due requests wait for a free connection of `connections`."""
    return asyncio.run(_open_loop(port, requests, rate, connections))


async def _open_loop(port: int, requests: list[bytes], rate: float, connections: int) -> Outcome:
    outcome = Outcome()
    due_at: dict[_Exchange, tuple[float, int]] = {}
    idle: deque[_Exchange] = deque()
    waiting: deque[tuple[float, int, bytes]] = deque()
    finished = asyncio.get_running_loop().create_future()

    def dispatch(conn: _Exchange, due: float, index: int, request: bytes) -> None:
        due_at[conn] = (due, index)
        conn.send(request)

    def on_reply(conn: _Exchange, status: int) -> None:
        due, index = due_at.pop(conn)
        outcome.latencies.append(time.perf_counter() - due)
        outcome.answered[index] = time.monotonic()
        outcome.statuses[status] += 1
        if conn.lost:
            pass  # a connection the server closed takes no more requests
        elif waiting:
            dispatch(conn, *waiting.popleft())
        else:
            idle.append(conn)
        if len(outcome.latencies) == len(requests) and not finished.done():
            finished.set_result(None)

    idle.extend([await _connect(port, on_reply) for _ in range(connections)])
    pool = list(idle)
    cpu = time.process_time()
    outcome.started = time.monotonic()
    start = time.perf_counter()
    interval = 1.0 / rate
    for i, request in enumerate(requests):
        due = start + i * interval
        delay = due - time.perf_counter()
        if delay > 0.0005:
            await asyncio.sleep(delay)
        if idle:
            dispatch(idle.popleft(), due, i, request)
        else:
            waiting.append((due, i, request))
    await asyncio.wait_for(finished, 120)
    outcome.elapsed = time.perf_counter() - start
    outcome.completed = len(outcome.latencies)
    outcome.client_cpu = time.process_time() - cpu
    for conn in pool:
        assert conn.transport is not None
        conn.transport.close()
    return outcome


# --- live event watchers -------------------------------------------------------------------------


class _Watcher(asyncio.Protocol):
    """One SSE stream: notes when each letter id first appears in an event's data."""

    def __init__(self, seen: dict[bytes, list[float]]) -> None:
        self.seen = seen
        self.buffer = bytearray()
        self.status = 0
        self.pings = 0
        self.events = 0
        self.closed = asyncio.get_running_loop().create_future()
        self.opened = asyncio.get_running_loop().create_future()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def connection_lost(self, exc: Exception | None) -> None:
        if not self.opened.done():
            self.opened.set_result(None)
        if not self.closed.done():
            self.closed.set_result(None)

    def data_received(self, data: bytes) -> None:
        now = time.monotonic()
        self.buffer += data
        if not self.status:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = bytes(self.buffer[:end])
            self.status = int(head[9:12])
            del self.buffer[: end + 4]
            if not self.opened.done():
                self.opened.set_result(None)
        if b"\r\n0\r\n\r\n" in data and not self.closed.done():
            self.closed.set_result(None)  # the last chunk: the server ended the stream
        # Line by line (SSE lines end in \n or \r\n); chunk-size lines match neither prefix.
        *lines, rest = bytes(self.buffer).split(b"\n")
        self.buffer = bytearray(rest)
        for line in lines:
            if line.startswith(b":"):
                self.pings += 1
            elif line.startswith(b"data:"):
                self.events += 1
                for letter_id in _LETTER_ID.findall(line):
                    self.seen.setdefault(letter_id, []).append(now)


@dataclass
class Watched:
    """What the watchers saw: per letter id, the monotonic times it reached a stream."""

    opened: int = 0
    refused: Counter[int] = field(default_factory=Counter)
    seen: dict[str, list[float]] = field(default_factory=dict)
    dropped: int = 0
    pings: int = 0
    events: int = 0
    held: float = 0.0


async def watch(
    port: int,
    streams: list[RawParty],
    fast: bool,
    ready: Callable[[Watched], None],
    until: Callable[[float], object],
    limit: float,
) -> Watched:
    """Open one stream per party in `streams` (each signed just before it connects), call `ready`,
    hold them while `until(limit)` blocks (at most `limit` seconds); streams the server closes
    are counted as dropped, never reopened."""
    loop = asyncio.get_running_loop()
    seen: dict[bytes, list[float]] = {}
    watchers: list[_Watcher] = []
    result = Watched()
    for party in streams:
        request = stream_request(port, party, fast)
        try:
            _, watcher = await loop.create_connection(lambda: _Watcher(seen), HOST, port)
        except OSError:
            result.refused[0] += 1
            continue
        assert watcher.transport is not None
        watcher.transport.write(request)
        watchers.append(watcher)
        if len(watchers) % 200 == 0:
            await asyncio.gather(*(w.opened for w in watchers[-200:]))
    await asyncio.gather(*(w.opened for w in watchers))
    live = []
    for watcher in watchers:
        if watcher.status == 200 and not watcher.closed.done():
            live.append(watcher)
        else:  # refused, or (a 200) already ended by the server before every stream was open
            result.refused[watcher.status] += 1
            if watcher.transport is not None:
                watcher.transport.close()
    result.opened = len(live)
    ready(result)
    start = time.monotonic()
    await asyncio.to_thread(until, limit)
    result.held = time.monotonic() - start
    result.dropped = sum(1 for w in live if w.closed.done())
    result.pings = sum(w.pings for w in live)
    result.events = sum(w.events for w in live)
    for watcher in live:
        assert watcher.transport is not None
        watcher.transport.close()
    result.seen = {key.decode(): times for key, times in seen.items()}
    return result


def run_watchers(port: int, streams: list[RawParty], fast: bool, conn: Any, limit: float) -> None:
    """A watcher process: opens the streams, sends ("ready", opened) through `conn`, holds them
    until the parent sends "stop" (or `limit` seconds), then sends back what it saw."""

    def ready(result: Watched) -> None:
        conn.send(("ready", result.opened, dict(result.refused)))

    def until(limit: float) -> bool:
        return bool(conn.poll(limit))

    result = asyncio.run(watch(port, streams, fast, ready, until, limit))
    conn.send(("done", result))
