"""`GET /v1/events`: a party's live events as Server-Sent Events.

Each party's events sit in a capped Redis stream, so a client that reconnects with
`Last-Event-ID` gets everything since, in order, exactly once, from whichever replica it reaches.
A stream opened without one starts at the stream's position at connect time, and says so first
(`event: ready` with that position as its id), so a client that carries it across reconnects
misses nothing sent after it connected. The worker's hub (server/hub.py) wakes a stream when its
party's stream grows; an idle stream holds no Redis connection and gets a keep-alive comment
every `event_ping_seconds`. The route is admitted like every other signed route (`_endpoint`:
signature, rate limit, nonce), then by the hub's caps on streams. On shutdown every open stream
gets a retry hint and is closed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import structlog
from aiohttp import web
from aiohttp_sse import EventSourceResponse, sse_response

from channel.courier.server import metrics
from channel.courier.server.hub import Hub, Watcher
from channel.courier.server.routes import AFTER, Call, Route
from channel.courier.settings import Settings
from channel.courier.store import Store
from channel.protocol.errors import BadRequest, RateLimited, StoreUnavailable, TooManyStreams
from channel.protocol.models import LiveEvent

log = structlog.get_logger("channel.events")

HUB = web.AppKey("event_hub", Hub)
# Each open stream and its request: the reaper looks at the request's transport.
STREAMS = web.AppKey("event_streams", dict[EventSourceResponse, web.Request])
PING_SECONDS = web.AppKey("event_ping_seconds", float)
RETRY_MS = 1_000  # the reconnection delay a client is asked to use
COUNT = 100  # events read per Redis call; a watcher further behind reads again at once
# How often the reaper looks for streams whose watcher hung up. aiohttp does not tell a handler
# that its client left (nor should it cancel handlers: sends must not stop half way), and an idle
# stream would only find out at its next ping; meanwhile it would hold a place under the caps.
REAP_SECONDS = 1.0


async def stream_events(call: Call) -> web.StreamResponse:
    request = call.request
    hub = request.app[HUB]
    given = request.headers.get("Last-Event-ID") or call.query.get("after")
    watcher = hub.admit(call.party)  # before any Redis read: a refused stream costs nothing
    try:
        cursor, trimmed = await call.courier.event_cursor(call.party, given)
        if request.transport is None:
            # The watcher hung up while we looked up its cursor: there is no one to stream to
            # (and aiohttp-sse would trip on the missing transport). It resumes when it is back.
            return web.Response(status=204)
        async with sse_response(request, ping_interval=request.app[PING_SECONDS]) as stream:
            await _serve(request, hub, watcher, stream, cursor, given, trimmed)
        return stream
    finally:
        hub.leave(watcher)


async def _serve(
    request: web.Request,
    hub: Hub,
    watcher: Watcher,
    stream: EventSourceResponse,
    cursor: str,
    given: str | None,
    trimmed: bool,
) -> None:
    streams = request.app[STREAMS]
    streams[stream] = request
    metrics.stream_opened()
    log.info("event_stream_opened", resumed_from=given, position=cursor)
    try:
        # First the position the stream starts from, as an event id: a client that was given
        # none resumes from here after a reconnect, so nothing sent after it connected is missed.
        await stream.send("{}", id=cursor, event="ready")
        if trimmed:
            # Events the client missed were trimmed from the capped stream: it must resync
            # from its inbox and outbox before trusting the stream again.
            await stream.send('{"resync": true}', event="reset", retry=RETRY_MS)
        await _pump(hub, watcher, cursor, stream)
    except (ConnectionError, TimeoutError):
        pass  # the watcher went away (or stalled); it resumes from its last event id
    except StoreUnavailable as exc:
        # The client reconnects (to any replica) and resumes from its last event id.
        log.warning("event_stream_store_failed", error=exc.detail)
    finally:
        streams.pop(stream, None)
        metrics.stream_closed()
        log.info("event_stream_closed")


async def _pump(hub: Hub, watcher: Watcher, cursor: str, stream: EventSourceResponse) -> None:
    """Send what the party's stream holds past `cursor`, then sleep until the hub says it grew
    (or the stream ends: the watcher left, or the courier is stopping)."""
    ended = asyncio.ensure_future(stream.wait())
    ended.add_done_callback(lambda _: watcher.wake.set())
    try:
        while stream.is_connected():
            watcher.wake.clear()  # before reading: an append announced during the read wakes us
            entries = await hub.read(watcher.party, cursor, COUNT)
            for event_id, data in entries:
                await stream.send(data.decode(), id=event_id, event="event")
                cursor = event_id
            if len(entries) < COUNT:
                await watcher.wake.wait()
    finally:
        ended.cancel()


async def close_streams(app: web.Application) -> None:
    """On shutdown: tell every watcher to come back (to another replica) in a second."""
    streams = app[STREAMS]
    for stream in list(streams):
        with contextlib.suppress(ConnectionError, RuntimeError, TimeoutError):
            await stream.send("", event="shutdown", retry=RETRY_MS)
        stream.stop_streaming()
    await asyncio.sleep(0)


EVENTS = Route(
    "GET",
    "/v1/events",
    stream_events,
    "Your live events as Server-Sent Events",
    LiveEvent,
    errors=(BadRequest, RateLimited, TooManyStreams, StoreUnavailable),
    query=(AFTER,),
)


async def _reap(streams: dict[EventSourceResponse, web.Request]) -> None:
    """End the streams whose watcher hung up, so their places under the caps come free."""
    while True:
        await asyncio.sleep(REAP_SECONDS)
        for stream, request in list(streams.items()):
            transport = request.transport
            if transport is None or transport.is_closing():
                stream.stop_streaming()


def install(app: web.Application, settings: Settings, redis_url: str) -> None:
    """The hub (with a store of its own), its caps, and shutdown; the route is added by the app
    through `_endpoint`, like every other signed route."""
    app[STREAMS] = {}
    app[PING_SECONDS] = settings.event_ping_seconds

    async def hub(app: web.Application) -> AsyncIterator[None]:
        store = Store.from_url(redis_url)
        store.on_failure = metrics.count_redis_error
        app[HUB] = Hub(
            store,
            per_party=settings.event_streams_per_party,
            total=settings.event_streams_per_worker,
        )
        app[HUB].start()
        reaper = asyncio.create_task(_reap(app[STREAMS]))
        try:
            yield
        finally:
            reaper.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reaper
            await app[HUB].stop()

    app.cleanup_ctx.append(hub)
    app.on_shutdown.append(close_streams)
