"""`GET /v1/events`: a party's live events as Server-Sent Events.

Each party's events sit in a capped Redis stream, so a client that reconnects with
`Last-Event-ID` gets everything since, in order, exactly once, from whichever replica it reaches.
The handler blocks on the stream itself (XREAD BLOCK), so an event written through one replica
wakes watchers on every other. On shutdown every open stream gets a retry hint and is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

import structlog
from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from channel.courier.server import limits, metrics
from channel.courier.server.routes import AFTER, check_query
from channel.courier.service import Courier
from channel.protocol.errors import StoreUnavailable
from channel.protocol.httpsig import RequestView

log = structlog.get_logger("channel.events")

STREAMS = web.AppKey("event_streams", set[EventSourceResponse])
CLOSING = web.AppKey("event_streams_closing", asyncio.Event)
BLOCK_MS = 5_000
RETRY_MS = 1_000  # the reconnection delay a client is asked to use
PING_SECONDS = 15.0


async def events_endpoint(request: web.Request) -> web.StreamResponse:
    from channel.courier.server.app import COURIER, SETTINGS

    check_query(request.query, (AFTER,))
    courier: Courier = request.app[COURIER]
    view = RequestView(request.method, f"http://courier{request.raw_path}", dict(request.headers))
    signed = await courier.authenticate(view, b"")
    await limits.admit(courier.store, request.app[SETTINGS], signed)
    structlog.contextvars.bind_contextvars(party=signed.party)
    given = request.headers.get("Last-Event-ID") or request.query.get("after")
    cursor, trimmed = await courier.event_cursor(signed.party, given)
    streams = request.app[STREAMS]
    if request.transport is None:
        # The watcher hung up while we looked up its cursor: there is no one to stream to (and
        # aiohttp-sse would trip on the missing transport). It resumes when it comes back.
        return web.Response(status=204)
    async with sse_response(request, ping_interval=PING_SECONDS) as stream:
        streams.add(stream)
        metrics.stream_opened()
        log.info("event_stream_opened", resumed_from=given)
        try:
            if trimmed:
                # Events the client missed were trimmed from the capped stream: it must resync
                # from its inbox and outbox before trusting the stream again.
                await stream.send(json.dumps({"resync": True}), event="reset", retry=RETRY_MS)
            await _pump(courier, signed.party, cursor, stream, request.app[CLOSING])
        except ConnectionError:
            pass  # the watcher went away; it resumes from its last event id when it comes back
        except StoreUnavailable as exc:
            # The client reconnects (to any replica) and resumes from its last event id.
            log.warning("event_stream_store_failed", error=exc.detail)
        finally:
            streams.discard(stream)
            metrics.stream_closed()
            log.info("event_stream_closed")
    return stream


async def _pump(
    courier: Courier, party: str, cursor: str, stream: EventSourceResponse, closing: asyncio.Event
) -> None:
    while stream.is_connected() and not closing.is_set():
        read = asyncio.ensure_future(courier.events(party, cursor, block_ms=BLOCK_MS))
        stop = asyncio.ensure_future(closing.wait())
        await asyncio.wait({read, stop}, return_when=asyncio.FIRST_COMPLETED)
        stop.cancel()
        if not read.done():
            read.cancel()  # shutting down: do not wait out the blocking read
            with contextlib.suppress(asyncio.CancelledError, StoreUnavailable):
                await read
            return
        for event_id, data in read.result():
            await stream.send(data.decode(), id=event_id, event="event")
            cursor = event_id


async def close_streams(app: web.Application) -> None:
    """On shutdown: tell every watcher to come back (to another replica) in a second."""
    app[CLOSING].set()
    streams: set[EventSourceResponse] = app[STREAMS]
    for stream in list(streams):
        with contextlib.suppress(ConnectionError, RuntimeError):
            await stream.send("", event="shutdown", retry=RETRY_MS)
        stream.stop_streaming()
    await asyncio.sleep(0)
