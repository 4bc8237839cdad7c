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

from channel.courier import Courier
from channel.errors import (
    BadRequest,
    ChannelError,
    MethodNotAllowed,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    StoreUnavailable,
)
from channel.httpsig import RequestView
from channel.models import RegisterRequest, Wire
from channel.server import events, limits, metrics
from channel.server.routes import ROUTES, Call, Route
from channel.settings import Settings
from channel.store import Store

log = structlog.get_logger("channel.server")

SETTINGS = web.AppKey("settings", Settings)
COURIER = web.AppKey("courier", Courier)

_REQUEST_ID = re.compile(r"[A-Za-z0-9._-]{1,64}")
_JSON = "application/json"


def create_app(
    settings: Settings, redis_url: str, courier_key: Ed25519PrivateKey, *, sweeper: bool = True
) -> web.Application:
    app = web.Application(
        middlewares=[metrics.observe, problems], client_max_size=settings.max_body_bytes
    )
    app[SETTINGS] = settings
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
        store = Store.from_url(redis_url)
        store.on_failure = metrics.count_redis_error
        courier = Courier(
            store,
            key,
            open_registration=settings.open_registration,
            retention=timedelta(days=settings.retention_days),
            on_event=metrics.count_event,
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
    while True:
        await asyncio.sleep(interval)
        try:
            await courier.sweep()
        except ChannelError as exc:
            log.warning("sweep_failed", error=exc.detail)
        except Exception:
            # Deadlines must keep being enforced whatever one sweep ran into.
            log.exception("sweep_crashed")


def _endpoint(route: Route) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def handle(request: web.Request) -> web.StreamResponse:
        courier = request.app[COURIER]
        raw = await request.read() if request.body_exists else b""
        view = RequestView(
            request.method, f"http://courier{request.raw_path}", dict(request.headers)
        )
        signed = await courier.authenticate(view, raw) if route.signed else None
        if signed is not None:
            structlog.contextvars.bind_contextvars(party=signed.party)
            await limits.take_token(courier.store, request.app[SETTINGS], signed.party)
            if not route.claims_nonce:
                await courier.claim(signed)
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
    except Exception:
        log.exception("unhandled_error", path=request.path)
        response = _problem(
            ChannelError("the courier failed; the request id is in its logs"), request
        )
    response.headers["X-Request-Id"] = request_id
    log.debug("request", method=request.method, path=request.path, status=response.status)
    return response


def _problem(exc: ChannelError, request: web.Request) -> web.Response:
    if exc.status >= 500:
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
    from channel.server.openapi import openapi_document

    return web.json_response(openapi_document())


async def _ready(request: web.Request) -> web.Response:
    if not await request.app[COURIER].store.ping():
        raise StoreUnavailable("the courier cannot reach Redis")
    return web.json_response({"status": "ready"})
