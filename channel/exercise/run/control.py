"""The control cell's handle on a live run: a small HTTP API on 127.0.0.1, and its client.

The runner writes `control.json` (0600) in the run folder while it runs: the API's address and a
random bearer token. `channel exercise control` reads it and posts commands; the runner's loop
applies them between two events, so a command never lands in the middle of one (and `fire`
works while the clock is paused).

    POST /v1/commands {"command": "pause"}          -> the run's status after the command
    POST /v1/commands {"command": "fire", "argument": "INJ-04"}
    GET  /v1/status
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
from aiohttp import web

from channel.exercise.run.runner import Command, Runner
from channel.protocol.errors import ChannelError

# The commands the runner applies between two events (`Runner._apply_command`).
COMMANDS = ("status", "pause", "resume", "speed", "fire", "skip", "hold", "release")

CONTROL_FILE = "control.json"
_RUNNER = web.AppKey("runner", Runner)
_TOKEN = web.AppKey("token", str)


class NoLiveRun(ChannelError):
    """No exercise is running in that folder (or it ended)."""

    code = "no-live-run"
    exit_code = 4


class CommandRefused(ChannelError):
    """The run refused a control command (an unknown inject, one already fired, ...)."""

    code = "command-refused"
    exit_code = 1


@asynccontextmanager
async def control_api(runner: Runner, run_dir: Path) -> AsyncIterator[str]:
    """Serve the control API for `runner` while the block runs; yields its URL."""
    app = web.Application(client_max_size=4096)
    app[_RUNNER], app[_TOKEN] = runner, secrets.token_urlsafe(24)
    app.router.add_get("/v1/status", _status)
    app.router.add_post("/v1/commands", _command)
    site_runner = web.AppRunner(app, access_log=None, handle_signals=False)
    await site_runner.setup()
    path = run_dir / CONTROL_FILE
    try:
        await web.TCPSite(site_runner, "127.0.0.1", 0).start()
        url = f"http://127.0.0.1:{site_runner.addresses[0][1]}"
        _write_private(path, {"url": url, "token": app[_TOKEN], "pid": os.getpid()})
        yield url
    finally:
        path.unlink(missing_ok=True)
        await site_runner.cleanup()


async def _status(request: web.Request) -> web.Response:
    return await _submit(request, "status", None)


async def _command(request: web.Request) -> web.Response:
    try:
        body = await request.json()
    except ValueError:
        return _problem(400, "the body is not JSON")
    if not isinstance(body, dict) or body.get("command") not in COMMANDS:
        return _problem(400, f"command must be one of {', '.join(COMMANDS)}")
    argument = body.get("argument")
    if argument is not None and not isinstance(argument, str):
        return _problem(400, "argument must be a string")
    return await _submit(request, body["command"], argument)


async def _submit(request: web.Request, name: str, argument: str | None) -> web.Response:
    expected = f"Bearer {request.app[_TOKEN]}"
    if not secrets.compare_digest(request.headers.get("Authorization", ""), expected):
        return _problem(401, "a bearer token from control.json is required")
    reply: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
    await request.app[_RUNNER].queue.put(Command(name, argument, reply))
    result = await asyncio.wait_for(reply, 30)
    return web.json_response(result, status=200 if result.get("ok") else 409)


def _problem(status: int, detail: str) -> web.Response:
    body = {"type": "about:blank", "status": status, "detail": detail, "ok": False}
    return web.json_response(body, status=status, content_type="application/problem+json")


def _write_private(path: Path, document: dict[str, Any]) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle)


async def send_command(run_dir: Path, name: str, argument: str | None = None) -> dict[str, Any]:
    """Post one command to the run in `run_dir`; returns the run's answer."""
    try:
        handle = json.loads((run_dir / CONTROL_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        raise NoLiveRun(f"no exercise is running in {run_dir} (no {CONTROL_FILE})") from None
    headers = {"Authorization": f"Bearer {handle['token']}"}
    body = {"command": name} | ({"argument": argument} if argument is not None else {})
    timeout = aiohttp.ClientTimeout(total=35)
    try:
        async with (
            aiohttp.ClientSession(timeout=timeout) as session,
            session.post(f"{handle['url']}/v1/commands", json=body, headers=headers) as reply,
        ):
            result: dict[str, Any] = await reply.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise NoLiveRun(f"the run in {run_dir} does not answer ({exc or 'timed out'})") from None
    return result


def accepted(result: dict[str, Any]) -> dict[str, Any]:
    """The run's answer, or CommandRefused saying why it refused."""
    if not result.get("ok"):
        raise CommandRefused(str(result.get("error") or result.get("detail") or "refused"))
    return result
