"""The local web layer shared by the party's desk and the exercise board: a page server bound to
127.0.0.1 that only its owner can use.

    guard = Guard()
    app = web_app(guard, PackageLoader("channel.party.desk"))
    app.router.add_get("/inbox", inbox)     # handlers: page(request, guard, "inbox.html", {...})
    await serve(app, guard, port=0, open_browser=True)

- A one-time token in the printed URL is exchanged for an HttpOnly, SameSite=Strict session
  cookie; every other request without that cookie is refused (401).
- Every POST carries the session's CSRF token (`csrf` form field, from `csrf_field()` in the
  templates) and, when the browser sends one, an Origin of this very server; else 403.
- A Content-Security-Policy allows this origin only: no inline script, no external source.
- The Host header must name the loopback (a DNS-rebinding page cannot reach the desk).
- `Broadcast` fans live changes out to the pages' SSE streams (bounded per page).
"""

from __future__ import annotations

import asyncio
import secrets
import webbrowser
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any, NoReturn

import aiohttp_jinja2
import jinja2
from aiohttp import web
from aiohttp_sse import sse_response
from markupsafe import Markup

COOKIE = "desk_session"
STATIC = Path(__file__).parent / "static"
CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
    "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
_QUEUE = 64  # live changes buffered per page; a page that falls further behind reloads
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class Guard:
    """Who may use the pages: the holder of the one-time token, then of its session cookie."""

    def __init__(self) -> None:
        self.token: str | None = secrets.token_urlsafe(24)
        self._sessions: dict[str, str] = {}  # session id -> its CSRF token

    def exchange(self, token: str) -> str | None:
        """A new session id for the one-time token (once only), else None."""
        if self.token is None or not secrets.compare_digest(token, self.token):
            return None
        self.token = None
        session = secrets.token_urlsafe(32)
        self._sessions[session] = secrets.token_urlsafe(32)
        return session

    def csrf(self, request: web.Request) -> str | None:
        return self._sessions.get(request.cookies.get(COOKIE, ""))

    @web.middleware
    async def middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            response = await self._checked(request, handler)
        except web.HTTPException as exc:  # refusals, redirects and 404s carry the headers too
            _harden(exc.headers)
            raise
        _harden(response.headers)
        return response

    async def _checked(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        host = (request.host or "").rsplit(":", 1)[0]
        if host not in ("127.0.0.1", "localhost"):
            raise _refused(421, "this desk answers on 127.0.0.1 only")
        if request.path == "/login":
            self._login(request)
        if request.path.startswith("/static/"):
            return await handler(request)
        csrf = self.csrf(request)
        if csrf is None:
            raise _refused(401, "open the desk with the link it printed (a one-time token)")
        if request.method not in ("GET", "HEAD"):
            form = await request.post()
            given = str(form.get("csrf", ""))
            origin = request.headers.get("Origin")
            if not secrets.compare_digest(given, csrf) or (
                origin is not None and origin != f"{request.scheme}://{request.host}"
            ):
                raise _refused(403, "refused: this form did not come from your desk")
        return await handler(request)

    def _login(self, request: web.Request) -> NoReturn:
        session = self.exchange(request.query.get("token", ""))
        if session is None:
            raise _refused(401, "this link was used already or is wrong: restart the desk")
        response = web.HTTPSeeOther("/")
        response.set_cookie(COOKIE, session, httponly=True, samesite="Strict", path="/")
        raise response


def _harden(headers: Any) -> None:
    headers["Content-Security-Policy"] = CSP
    headers["X-Content-Type-Options"] = "nosniff"
    headers["Referrer-Policy"] = "same-origin"  # no-referrer makes a form post Origin: null
    headers.setdefault("Cache-Control", "no-store")


def _refused(status: int, why: str) -> web.HTTPException:
    kinds: dict[int, type[web.HTTPException]] = {
        401: web.HTTPUnauthorized,
        403: web.HTTPForbidden,
        421: web.HTTPMisdirectedRequest,
    }
    return kinds[status](text=why)


class Broadcast:
    """Live changes fanned out to every open page's SSE stream."""

    def __init__(self) -> None:
        self._queues: set[asyncio.Queue[str | None]] = set()

    async def close(self, app: web.Application | None = None) -> None:
        """End every stream (an app's on_shutdown), so the server stops without waiting."""
        for queue in self._queues:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(None)

    def publish(self, event: str) -> None:
        for queue in self._queues:
            if queue.full():  # a page that stopped reading gets a reload instead of a backlog
                queue.get_nowait()
            queue.put_nowait(event)

    async def stream(self, request: web.Request) -> web.StreamResponse:
        """GET handler: one page's stream of named events (htmx `sse:NAME` triggers)."""
        queue: asyncio.Queue[str | None] = asyncio.Queue(_QUEUE)
        self._queues.add(queue)
        try:
            async with sse_response(request) as stream:
                while (event := await queue.get()) is not None:
                    # the event is named `changed` (htmx `sse:changed`); its data says what
                    await stream.send(event, event="changed")
        except ConnectionResetError:  # the page went away: nothing to report
            pass
        finally:
            self._queues.discard(queue)
        return stream


def web_app(guard: Guard, *loaders: jinja2.BaseLoader) -> web.Application:
    """An app with the guard, the shared templates (base.html) and the vendored scripts."""
    app = web.Application(middlewares=[guard.middleware], client_max_size=256 * 1024)
    env = aiohttp_jinja2.setup(
        app,
        loader=jinja2.ChoiceLoader([*loaders, jinja2.PackageLoader("channel.party.web")]),
        autoescape=True,
    )
    env.policies["json.dumps_kwargs"] = {"sort_keys": True}
    app.router.add_static("/static/", STATIC)
    return app


def page(
    request: web.Request,
    guard: Guard,
    template: str,
    context: dict[str, Any],
    *,
    status: int = 200,
) -> web.Response:
    """A rendered page; templates get `csrf_field()` (for every form) and the request's `path`."""
    field = Markup('<input type="hidden" name="csrf" value="{}">').format(guard.csrf(request) or "")
    extra = {"csrf_field": lambda: field, "path": request.path}
    return aiohttp_jinja2.render_template(template, request, context | extra, status=status)


async def serve(
    app: web.Application, guard: Guard, *, port: int = 0, open_browser: bool = True
) -> tuple[web.AppRunner, str]:
    """Start `app` on 127.0.0.1 (`port` 0: a free one); returns the runner and the login URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", port)
    await site.start()
    server = site._server
    assert isinstance(server, asyncio.Server)
    bound = server.sockets[0].getsockname()[1]
    url = f"http://127.0.0.1:{bound}/login?token={guard.token}"
    if open_browser:
        webbrowser.open(url)
    return runner, url
