"""The courier's connections: slow clients cut off, malformed requests logged as the client's.

aiohttp bounds how large a request's line, headers and body may be, but not how long a client may
take to send them, so a client that sends its headers a byte at a time, or a body slower than any
real network, would hold a file descriptor and a coroutine for as long as it liked. (aiohttp's
keep-alive timer closes a connection that never sent a request only in its newest releases, and it
starts once per connection or answer, never for a body.) `GuardedRunner`, the AppRunner that
`channel serve`, in-process couriers and the tests all use, runs one task that looks at every open
connection once per tick:

- a connection not handling a request (just opened, between requests, or still writing its last
  answer) is closed once it has been so for `header_timeout` seconds: it had that long to send a
  request's complete headers, and an idle keep-alive connection is let go after as long;
- a request whose body is still arriving is cut off, its connection closed, once `body_timeout`
  seconds have passed since its headers, or when, after its first RATE_GRACE seconds, it averages
  fewer than `body_min_rate` bytes a second.

Why a watchdog rather than a timer per connection in a RequestHandler subclass: aiohttp builds its
RequestHandler inside web.Server with no hook to swap the class, and a scan a second costs nothing
on the request path. It reads two aiohttp internals of each connection, the request it is
handling and how many it has read (`RequestHandler._current_request`, `_request_count`: a busy
keep-alive connection may look idle at every tick, but its count moves); tests/test_abuse.py
proves each limit on a real socket, so an aiohttp upgrade that changes them fails there. Times
count from when the watchdog first sees a state, so a limit is honoured within one tick (a
quarter of the shortest limit, at most a second).

A body cut off makes the handler's read raise ConnectionResetError, which `problems` (app.py)
answers like any client that hung up: logged at info, counted with status 499, never a 500.

A request aiohttp cannot parse (too many headers, a line too long, bytes that are not HTTP) is
answered 400 by aiohttp itself, before any middleware, and logged by it as an error with a
traceback. The runner gives aiohttp a logger that tells those apart: a client's malformed request
is one info line, `malformed_request`; anything else stays an error.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any, Literal

import structlog
from aiohttp import web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.web_protocol import RequestHandler

from channel.courier.server import metrics
from channel.courier.server.app import SETTINGS
from channel.courier.settings import Settings

log = structlog.get_logger("channel.courier.server")

# Seconds a body has before its average rate is checked: room for TCP slow start and a lost packet.
RATE_GRACE = 5.0
_MAX_TICK = 1.0


@dataclass(frozen=True)
class _Seen:
    """What a connection was doing when the watchdog looked (the request it was handling, if any,
    and how many it had read), and since when."""

    request: web.BaseRequest | None
    count: int
    since: float

    def same(self, request: web.BaseRequest | None, count: int) -> bool:
        return self.request is request and self.count == count


def tick(settings: Settings) -> float:
    """How often the watchdog looks: a quarter of the shortest limit, at most a second."""
    return min(_MAX_TICK, settings.header_timeout / 4, settings.body_timeout / 4)


def body_too_slow(settings: Settings, received: int, elapsed: float) -> bool:
    """Whether a body that has brought `received` bytes in `elapsed` seconds is cut off."""
    if elapsed >= settings.body_timeout:
        return True
    return elapsed >= RATE_GRACE and received < settings.body_min_rate * elapsed


class _ClientFaults(logging.Filter):
    """Drops aiohttp's error record for a request it could not parse; logs one info line instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, HttpProcessingError) and 400 <= exc.code < 500:
            log.info("malformed_request", status=exc.code, reason=exc.message)
            return False
        return True


# aiohttp's server log for our connections, a child of its own ("aiohttp.server") so that its
# handlers and levels still apply, with the client's faults taken out.
_SERVER_LOG = logging.getLogger("aiohttp.server.channel")
_SERVER_LOG.addFilter(_ClientFaults())


class GuardedRunner(web.AppRunner):
    """An AppRunner whose connections are watched for slow clients, by its app's settings."""

    def __init__(self, app: web.Application, **kwargs: Any) -> None:
        super().__init__(app, logger=_SERVER_LOG, **kwargs)
        self._settings = app[SETTINGS]
        self._seen: dict[RequestHandler, _Seen] = {}
        self._watchdog: asyncio.Task[None] | None = None

    async def setup(self) -> None:
        await super().setup()
        self._watchdog = asyncio.create_task(self._watch())

    async def cleanup(self) -> None:
        if self._watchdog is not None:
            self._watchdog.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._watchdog
            self._watchdog = None
        await super().cleanup()  # closes what is left within its shutdown_timeout

    async def _watch(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            await asyncio.sleep(tick(self._settings))
            try:
                self._check(loop.time())
            except Exception:
                # Slow clients must keep being cut off whatever one look ran into.
                log.exception("watchdog_failed")

    def _check(self, now: float) -> None:
        """Look at every open connection once; close those that are too slow."""
        server = self.server
        if server is None:
            return
        seen: dict[RequestHandler, _Seen] = {}
        for connection in server.connections:
            if connection.transport is None:  # closed already, its handler finishing
                continue
            request, count = connection._current_request, connection._request_count
            before = self._seen.get(connection)
            since = before.since if before is not None and before.same(request, count) else now
            seen[connection] = _Seen(request, count, since)
            elapsed = now - since
            if request is None:
                if elapsed >= self._settings.header_timeout:
                    _cut_off(connection, "headers", elapsed)
            elif not request.content.is_eof() and body_too_slow(
                self._settings, request.content.total_bytes, elapsed
            ):
                _cut_off(connection, "body", elapsed)
        self._seen = seen


def _cut_off(connection: RequestHandler, phase: Literal["headers", "body"], elapsed: float) -> None:
    log.info("slow_client_cut_off", phase=phase, seconds=round(elapsed, 1))
    metrics.count_slow_client(phase)
    connection.force_close()
