"""Prometheus metrics, served at `GET /metrics`.

One worker counts in this process's default registry. Several workers (`serve --workers N`) are
separate processes: `channel.courier.server.run` then sets PROMETHEUS_MULTIPROC_DIR before this
module is first imported, prometheus_client keeps every value in a file there, and a scrape of
any worker merges all the workers' files, so each answers for the whole courier.

Labels are bounded sets: letter events, route templates (never a raw path, which would carry
letter ids), methods, statuses and Redis exception names. Nothing names a party or a letter.
"""

from __future__ import annotations

import os
import time
from collections.abc import Awaitable, Callable

from aiohttp import web
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
)
from prometheus_client.multiprocess import MultiProcessCollector

from channel.protocol.lifecycle import State

MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
# prometheus_client chose its value store when first imported, by this same variable.
MULTIPROCESS = bool(os.environ.get(MULTIPROCESS_DIR_ENV))
UNMATCHED = "unmatched"  # the route label of a request that matched no route
# The status label of a request whose client hung up (or was cut off as too slow) before its
# answer: nginx's "client closed request". Never sent; it keeps such requests apart from the 5xx.
CLIENT_CLOSED = 499

LETTER_EVENTS = Counter(
    "backchannel_letter_events",
    "Receipts the courier issued, by event (a letter accepted, delivered, opened, ...)",
    ["event"],
)
REQUEST_SECONDS = Histogram(
    "backchannel_request_duration_seconds",
    "Time to answer an HTTP request, by route template, method and status",
    ["route", "method", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
EVENT_STREAMS = Gauge(
    "backchannel_event_streams_open",
    "Live event streams open now",
    multiprocess_mode="livesum",
)
REDIS_ERRORS = Counter(
    "backchannel_redis_errors",
    "Redis failures the courier met (each answered as store_unavailable), by exception",
    ["error"],
)

SLOW_CLIENTS = Counter(
    "backchannel_slow_clients_cut_off",
    "Connections the courier closed because the client was too slow, by phase (headers or body)",
    ["phase"],
)

for _state in State:
    LETTER_EVENTS.labels(_state.value)  # every event shows, at 0, from the start
for _phase in ("headers", "body"):
    SLOW_CLIENTS.labels(_phase)


def count_event(event: State) -> None:
    """One receipt issued (the courier's `on_event` hook)."""
    LETTER_EVENTS.labels(event.value).inc()


def count_redis_error(exc: Exception) -> None:
    """One Redis failure (the store's `on_failure` hook)."""
    REDIS_ERRORS.labels(type(exc).__name__).inc()


def count_slow_client(phase: str) -> None:
    """One connection closed by the slow-client watchdog (channel.courier.server.connections)."""
    SLOW_CLIENTS.labels(phase).inc()


def stream_opened() -> None:
    """Call when a live event stream starts; pair with `stream_closed()` in a `finally`."""
    EVENT_STREAMS.inc()


def stream_closed() -> None:
    EVENT_STREAMS.dec()


def route_label(request: web.Request) -> str:
    """The matched route's path template, e.g. `/v1/letters/{letter_id}/open`."""
    resource = request.match_info.route.resource
    return resource.canonical if resource is not None else UNMATCHED


@web.middleware
async def observe(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Time every answered request. Outermost, so it sees the status of a rendered problem too.

    Streams (a bare StreamResponse, such as live events) are left out: their time is how long a
    client stayed, not how fast the courier answered; `backchannel_event_streams_open` counts them.
    """
    started = time.perf_counter()
    response = await handler(request)
    if isinstance(response, web.Response):
        REQUEST_SECONDS.labels(route_label(request), request.method, str(response.status)).observe(
            time.perf_counter() - started
        )
    return response


def exposition() -> bytes:
    """The metrics in Prometheus text format: this process's, or every worker's."""
    if not MULTIPROCESS:
        return generate_latest(REGISTRY)
    registry = CollectorRegistry()
    MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry)


async def serve_metrics(request: web.Request) -> web.Response:
    return web.Response(body=exposition(), headers={"Content-Type": CONTENT_TYPE_LATEST})
