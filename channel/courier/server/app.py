"""The aiohttp application: factory, typed app keys, one cleanup context, and two middlewares.

`problems` renders every error once, as RFC 9457 problem JSON, and binds a request id to the logs.
Authentication and body parsing happen in `_endpoint`, once per route, so handlers stay thin.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import secrets
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from pathlib import Path

import structlog
from aiohttp import web
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import ValidationError

from channel.courier.server import events, limits, metrics
from channel.courier.server.routes import ROUTES, Call, Route, check_query
from channel.courier.service import Courier
from channel.courier.settings import Settings
from channel.courier.store import RateLimit, Store
from channel.protocol.errors import (
    BadRequest,
    ChannelError,
    MethodNotAllowed,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    RateLimited,
    StoreUnavailable,
)
from channel.protocol.httpsig import RequestView
from channel.protocol.models import RegisterRequest, Wire

log = structlog.get_logger("channel.courier.server")

SETTINGS = web.AppKey("settings", Settings)
COURIER = web.AppKey("courier", Courier)
IN_FLIGHT = web.AppKey("in_flight", limits.InFlight)
# Outside the bound: liveness and metrics use no Redis and must answer under load; a live
# stream lasts as long as its watcher (streams have caps of their own).
_UNBOUNDED = frozenset({"/healthz", "/metrics", "/v1/events"})

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_JSON = "application/json"


def create_app(
    settings: Settings, redis_url: str, courier_key: Ed25519PrivateKey, *, sweeper: bool = True
) -> web.Application:
    app = web.Application(
        middlewares=[metrics.observe, problems, bounded], client_max_size=settings.max_body_bytes
    )
    app[SETTINGS] = settings
    app[IN_FLIGHT] = limits.InFlight(settings.max_in_flight, settings.busy_wait)
    app.cleanup_ctx.append(_courier_context(redis_url, courier_key, sweeper=sweeper))
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _endpoint(route))
    events.install(app, settings, redis_url)
    app.router.add_route(events.EVENTS.method, events.EVENTS.path, _endpoint(events.EVENTS))
    app.router.add_get("/openapi.json", _openapi)
    app.router.add_get("/readyz", _ready)
    app.router.add_get("/metrics", metrics.serve_metrics)
    return app


def _courier_context(
    redis_url: str, key: Ed25519PrivateKey, *, sweeper: bool
) -> Callable[[web.Application], AsyncIterator[None]]:
    async def context(app: web.Application) -> AsyncIterator[None]:
        settings = app[SETTINGS]
        # A connection for every request in flight: past the bound a request waits for a slot
        # (or gets 503 overloaded), never for a connection.
        pool = settings.max_in_flight + limits.POOL_HEADROOM
        store = Store.from_url(redis_url, max_connections=pool)
        store.on_failure = metrics.count_redis_error
        courier = Courier(
            store,
            key,
            open_registration=settings.open_registration,
            retention=timedelta(days=settings.retention_days),
            on_event=metrics.count_event,
            rate_limit=RateLimit(settings.rate_limit_burst, settings.rate_limit_per_second)
            if settings.rate_limited
            else None,
        )
        app[COURIER] = courier
        task = None
        try:
            try:
                await courier.claim_store()
            except StoreUnavailable:
                log.warning("store_unreachable_at_start")  # checked again before any request
            if settings.directory is not None:
                await pin_directory(courier, settings.directory)
            if sweeper:
                task = asyncio.create_task(_sweep_forever(courier, settings.sweep_interval))
            yield
        finally:
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await store.close()

    return context


async def pin_directory(courier: Courier, directory: Path) -> int:
    """Register every public key file in `directory` (`NAME.pub.json`); refuse a conflict loudly."""
    requests = await asyncio.to_thread(read_directory, directory)
    for request in requests:
        await courier.register(request, pinned=True)
    log.info("directory_pinned", directory=str(directory), parties=len(requests))
    return len(requests)


def read_directory(directory: Path) -> list[RegisterRequest]:
    if not directory.is_dir():
        raise BadRequest(f"the key directory {directory} does not exist")
    requests = []
    for path in sorted(directory.glob("*.pub.json")):
        try:
            requests.append(RegisterRequest.model_validate_json(path.read_bytes()))
        except ValidationError as exc:
            problem = f"{path}: not a public key file ({exc.error_count()} errors)"
            raise BadRequest(problem) from None
    return requests


async def _sweep_forever(courier: Courier, interval: float) -> None:
    # Not `while True`: redis-py's cluster client sometimes returns a reply that raced a
    # cancellation and swallows the CancelledError, and the loop then outlived the courier's stop.
    this = asyncio.current_task()
    while this is None or not this.cancelling():
        await asyncio.sleep(interval)
        try:
            await courier.sweep()
        except ChannelError as exc:
            log.warning("sweep_failed", error=exc.detail)
        except Exception:
            # Deadlines must keep being enforced whatever one sweep ran into.
            log.exception("sweep_crashed")
        # A cancel that lands inside a Redis call can come back out as a store error, which the
        # lines above swallow: under load that kept a stopping courier sweeping forever, deaf to
        # SIGTERM. The task still knows it was asked to stop.
        if this is not None and this.cancelling():
            raise asyncio.CancelledError


def _endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        check_query(request.query, route.query)
        courier = request.app[COURIER]
        raw = await request.read() if request.body_exists else b""
        view = RequestView(request.method, f"http://courier{request.raw_path}", request.headers)
        signed = await courier.authenticate(view, raw) if route.signed else None
        if signed is not None:
            structlog.contextvars.bind_contextvars(party=signed.party)
            if not route.claims_nonce:
                await limits.admit(courier.store, request.app[SETTINGS], signed)
        body = _parse(route.request, raw) if route.request is not None else None
        call = Call(courier, signed, body, request.match_info, request.query, view, raw, request)
        if "letter_id" in request.match_info:
            structlog.contextvars.bind_contextvars(letter_id=request.match_info["letter_id"])
        reply = await route.handler(call)
        if isinstance(reply, web.StreamResponse):
            return reply
        model, status = reply if isinstance(reply, tuple) else (reply, route.status)
        return _json(model, status)

    return handle


def _parse(model: type[Wire], raw: bytes) -> Wire:
    try:
        return model.model_validate_json(raw or b"{}")
    except ValidationError as exc:
        raise BadRequest(_explain(exc)) from None


def _explain(exc: ValidationError) -> str:
    first = exc.errors(include_url=False)[0]
    if first["type"] == "json_invalid":
        return "the body is not valid JSON"
    where = ".".join(str(part) for part in first["loc"]) or "body"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    if first["type"] == "extra_forbidden":
        return f"unknown field '{where}'{more}"
    return f"{where}: {first['msg']}{more}"


def _json(model: Wire, status: int) -> web.Response:
    return web.Response(
        body=model.model_dump_json(exclude_none=True).encode(), status=status, content_type=_JSON
    )


@web.middleware
async def bounded(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    """Backpressure: each request holds one of the worker's in-flight slots (see limits)."""
    if request.path in _UNBOUNDED:
        return await handler(request)
    async with request.app[IN_FLIGHT].slot():
        return await handler(request)


@web.middleware
async def problems(
    request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
) -> web.StreamResponse:
    given = request.headers.get("X-Request-Id", "")
    request_id = given if _REQUEST_ID.fullmatch(given) else secrets.token_hex(8)
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id=request_id)
    try:
        response = await handler(request)
    except ChannelError as exc:
        response = _problem(exc, request)
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[SETTINGS].max_body_bytes
        detail = f"the request body is larger than the courier accepts ({limit} bytes at most)"
        response = _problem(PayloadTooLarge(detail, max_bytes=limit), request)
    except web.HTTPMethodNotAllowed as exc:
        response = _problem(MethodNotAllowed(f"{request.method} is not allowed here"), request)
        response.headers["Allow"] = exc.headers.get("Allow", "")
    except web.HTTPNotFound:
        response = _problem(NotFound(f"no such path: {request.path}"), request)
    except web.HTTPException as exc:
        response = _problem(BadRequest(exc.reason), request) if exc.status >= 400 else exc
    except Exception as exc:
        if isinstance(exc, ConnectionError) and _client_gone(request):
            # The client hung up mid-request, or was cut off as too slow: nothing failed here and
            # nothing can be answered. The status only labels the request in the metrics.
            log.info("client_disconnected", path=request.path)
            response = web.Response(status=metrics.CLIENT_CLOSED)
        else:
            log.exception("unhandled_error", path=request.path)
            response = _problem(
                ChannelError("the courier failed; the request id is in its logs"), request
            )
    response.headers["X-Request-Id"] = request_id
    log.debug("request", method=request.method, path=request.path, status=response.status)
    return response


def _client_gone(request: web.Request) -> bool:
    return request.transport is None or request.transport.is_closing()


def _problem(exc: ChannelError, request: web.Request) -> web.Response:
    if exc.status >= 500 and not isinstance(exc, Overloaded):
        log.warning("request_failed", code=exc.code, detail=exc.detail)
    else:
        log.info("request_refused", code=exc.code, status=exc.status, detail=exc.detail)
    problem = exc.to_problem(instance=request.path)
    response = web.json_response(
        problem, status=exc.status, content_type="application/problem+json"
    )
    if isinstance(exc, StoreUnavailable):
        response.headers["Retry-After"] = "1"
    elif isinstance(exc, RateLimited):
        response.headers["Retry-After"] = str(exc.retry_after)
    return response


async def _openapi(request: web.Request) -> web.Response:
    from channel.courier.server.openapi import openapi_document

    return web.json_response(openapi_document())


async def _ready(request: web.Request) -> web.Response:
    if not await request.app[COURIER].store.ping():
        raise StoreUnavailable("the courier cannot reach Redis")
    return web.json_response({"status": "ready"})
