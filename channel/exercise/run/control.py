"""The control cell's handle on a live run: a small HTTP API on 127.0.0.1, and its client.

The runner writes `control.json` (0600) in the run folder while it runs: the API's address and a
random bearer token, and registers the run (registry.py) so the CLI finds it from any folder.
`channel exercise control` reads it and posts commands; the runner's loop applies them between
two events, so a command never lands in the middle of one (and `fire` works while paused).

    POST /v1/commands {"command": "pause"}          -> the run's status after the command
    POST /v1/commands {"command": "fire", "argument": "INJ-04"}
    GET  /v1/status

Every refusal is RFC 9457 problem JSON (`application/problem+json`) from the shared error tree:
400 bad-command (not JSON, an unknown command, a bad speed), 401 without the token, 404
unknown-inject, 409 command-refused (an inject already fired, one not held).
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
from pydantic import ValidationError

from channel.exercise.run.command import (
    COMMANDS,
    ERRORS,
    BadCommand,
    Command,
    CommandRefused,
    CommandRequest,
    NoLiveRun,
    RunStatus,
)
from channel.exercise.run.registry import registered
from channel.exercise.run.runner import Runner
from channel.protocol.errors import ERRORS_BY_CODE, ChannelError, Unauthenticated

__all__ = ["COMMANDS", "CONTROL_FILE", "CommandRefused", "NoLiveRun", "command", "control_api"]

CONTROL_FILE = "control.json"
PROBLEM = "application/problem+json"
_RUNNER = web.AppKey("runner", Runner)
_TOKEN = web.AppKey("token", str)


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
        with registered(run_dir):
            yield url
    finally:
        path.unlink(missing_ok=True)
        await site_runner.cleanup()


async def _status(request: web.Request) -> web.Response:
    return await _answer(request, lambda: CommandRequest(command="status"))


async def _command(request: web.Request) -> web.Response:
    raw = await request.read()

    def decode() -> CommandRequest:
        try:
            return CommandRequest.model_validate_json(raw)
        except ValidationError as exc:
            if any(error["type"] == "json_invalid" for error in exc.errors()):
                raise BadCommand("the body is not JSON") from None
            raise BadCommand(
                f"send {{'command': one of {', '.join(COMMANDS)}, 'argument': a string or null}}"
            ) from None

    return await _answer(request, decode)


async def _answer(request: web.Request, decode: Any) -> web.Response:
    try:
        expected = f"Bearer {request.app[_TOKEN]}"
        if not secrets.compare_digest(request.headers.get("Authorization", ""), expected):
            raise Unauthenticated("a bearer token from control.json is required")
        wanted: CommandRequest = decode()
        reply: asyncio.Future[RunStatus] = asyncio.get_running_loop().create_future()
        await request.app[_RUNNER].queue.put(Command(wanted.command, wanted.argument, reply))
        status = await asyncio.wait_for(reply, 30)
    except ChannelError as exc:
        return web.json_response(
            exc.to_problem(request.path), status=exc.status, content_type=PROBLEM
        )
    return web.json_response(status.model_dump(mode="json", exclude_none=True))


def _write_private(path: Path, document: dict[str, Any]) -> None:
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        json.dump(document, handle)


async def command(run_dir: Path, name: str, argument: str | None = None) -> RunStatus:
    """Post one command to the run in `run_dir`: its status, or the typed error it answered."""
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
            document: dict[str, Any] = await reply.json(content_type=None)
            status = reply.status
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise NoLiveRun(f"the run in {run_dir} does not answer ({exc or 'timed out'})") from None
    if status >= 400:
        code = str(document.get("code"))
        cls = ERRORS.get(code) or ERRORS_BY_CODE.get(code, CommandRefused)
        raise cls(str(document.get("detail") or f"HTTP {status}"))
    return RunStatus.model_validate(document)


async def send_command(run_dir: Path, name: str, argument: str | None = None) -> dict[str, Any]:
    """`command` as a plain dict for scripts and tests: a refusal is `{"ok": false, "error"}`."""
    try:
        status = await command(run_dir, name, argument)
    except NoLiveRun:
        raise
    except ChannelError as exc:
        return {"ok": False, "error": exc.detail, "code": exc.code}
    return status.model_dump(mode="json")
