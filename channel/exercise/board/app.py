"""The board's pages: aiohttp with the shared web layer's guard, templates and live stream.

GET  /            the control cell's board: clocks, controls, MSEL, expectations, lanes
GET  /projector   the room's view: big clocks, MSEL progress, latest events
GET  /part/NAME   one part of a page, refreshed by htmx on each live change
POST /command     pause | resume | speed | fire | hold | release | skip (fire and skip
                  ask to confirm first); a refusal is a page saying why
GET  /events      the live stream: `log` on each new record, `status` when the run's changes
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2
from aiohttp import web

from channel.exercise.author.scenario import load_scenario
from channel.exercise.board.follow import Board, LogTail, Status, control
from channel.exercise.board.lanes import swimlanes
from channel.exercise.eventlog import LOG_FILE, LogError, run_started
from channel.exercise.run.play import SCENARIO_DIR
from channel.party.web import Broadcast, Guard, page, web_app

STATIC = Path(__file__).parent / "static"
POLL = 1.0  # seconds between status polls and log reads
COMMANDS = ("pause", "resume", "speed", "fire", "hold", "release", "skip")
CONFIRM = ("fire", "skip")
PARTS = ("clocks", "msel", "expectations", "lanes", "latest", "progress")


@dataclass
class Live:
    run_dir: Path
    board: Board
    tail: LogTail
    broadcast: Broadcast
    marking: str
    title: str
    world_rate: float  # world seconds per exercise second
    problem: str | None = None  # why the board cannot follow the run (shown on every page)


LIVE = web.AppKey("live", Live)
GUARD = web.AppKey("guard", Guard)


def board_app(run_dir: Path) -> tuple[web.Application, Guard]:
    """The board for the run in `run_dir` (its log must have started)."""
    started = run_started(run_dir / LOG_FILE)
    scenario = load_scenario(run_dir / SCENARIO_DIR / started["data"]["scenario"]["file"])
    guard = Guard()
    app = web_app(guard, jinja2.PackageLoader("channel.exercise.board"))
    app[GUARD] = guard
    app[LIVE] = Live(
        run_dir,
        Board(scenario.scenario),
        LogTail(run_dir / LOG_FILE),
        Broadcast(),
        scenario.scenario.marking or "",
        scenario.scenario.title,
        scenario.scenario.clock.speed,
    )
    app.router.add_static("/board-static/", STATIC)
    app.router.add_get("/", _board)
    app.router.add_get("/projector", _projector)
    app.router.add_get("/part/{name}", _part)
    app.router.add_post("/command", _command)
    app.router.add_get("/events", app[LIVE].broadcast.stream)
    app.cleanup_ctx.append(_following)
    app.on_shutdown.append(app[LIVE].broadcast.close)
    return app, guard


async def _following(app: web.Application) -> AsyncIterator[None]:
    task = asyncio.create_task(_follow(app[LIVE]))
    yield
    task.cancel()
    with contextlib.suppress(asyncio.CancelledError):
        await task


async def _follow(live: Live) -> None:
    """Tail the log and poll the status; tell the pages what changed."""
    while True:
        records = _catch_up(live)
        answer = await control(live.run_dir, "status")
        changed = live.board.observe(answer.status)
        if records:
            live.broadcast.publish("log")
        elif changed:
            live.broadcast.publish("status")
        await asyncio.sleep(POLL)


def _catch_up(live: Live) -> int:
    """Feed the board the records written since the last look; how many there were."""
    try:
        records = live.tail.new_records()
    except (LogError, ValueError) as exc:
        live.problem = f"the event log cannot be followed: {exc}"
        return 0
    for record in records:
        live.board.feed(record)
    return len(records)


def _context(request: web.Request, **extra: Any) -> dict[str, Any]:
    live = request.app[LIVE]
    board = live.board
    status = board.status
    done, total = board.progress()
    return {
        "app_name": "Backchannel board",
        "live": live,
        "board": board,
        "status": status,
        "clock": _clock(status, live.world_rate),
        "done": done,
        "total": total,
        "letters": sorted(board.letters.values(), key=lambda letter: letter.t),
        "lanes": swimlanes(board.parties, list(board.letters.values()), board.now_ms),
    } | extra


def _clock(status: Status | None, world_rate: float) -> dict[str, Any]:
    """What board.js needs to tick the clocks between two updates."""
    if status is None:
        return {"exercise": 0, "world": "", "rate": 0, "world_rate": 0}
    rate = 0.0 if status.paused or status.speed == "max" else float(status.speed)
    return {
        "exercise": status.exercise_s,
        "world": status.world,
        "rate": json.dumps(rate),
        "world_rate": json.dumps(rate * world_rate),
    }


def _render(request: web.Request, template: str, status: int = 200, **extra: Any) -> web.Response:
    return page(request, request.app[GUARD], template, _context(request, **extra), status=status)


async def _board(request: web.Request) -> web.StreamResponse:
    return _render(request, "board.html")


async def _projector(request: web.Request) -> web.StreamResponse:
    return _render(request, "projector.html")


async def _part(request: web.Request) -> web.StreamResponse:
    name = request.match_info["name"]
    if name not in PARTS:
        raise web.HTTPNotFound(text="no such part of the board")
    return _render(request, f"part_{name}.html")


async def _command(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    name = str(form.get("command", ""))
    argument = str(form.get("argument", "")).strip() or None
    if name not in COMMANDS:
        return _render(request, "refused.html", 400, refusal=f"no command {name!r} on the board")
    if name in CONFIRM and form.get("confirmed") != "yes":
        return _render(request, "confirm.html", command=name, argument=argument)
    answer = await control(request.app[LIVE].run_dir, name, argument)
    if answer.status is None:
        return _render(request, "refused.html", 409, refusal=answer.refusal, command=name)
    # The run logged the command before it answered: the page redirected to shows it already.
    _catch_up(request.app[LIVE])
    request.app[LIVE].board.observe(answer.status)
    request.app[LIVE].broadcast.publish("log")
    raise web.HTTPSeeOther("/")
