"""Control commands as typed values: the request, the run's answer, and the errors a command meets.

Pure (no I/O): the control API (control.py) decodes a request into a `CommandRequest` once, the
runner answers with a `RunStatus` or raises one of these errors, and the API renders the error as
RFC 9457 problem JSON through `ChannelError.to_problem`; the CLI maps the same errors to one line.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Literal

from pydantic import BaseModel, ConfigDict

from channel.protocol.errors import BadRequest, ChannelError, Conflict, NotFound

# The commands the runner applies between two events (`Runner._apply_command`).
COMMANDS = ("status", "pause", "resume", "speed", "fire", "skip", "hold", "release")
CommandName = Literal["status", "pause", "resume", "speed", "fire", "skip", "hold", "release"]


class NoLiveRun(NotFound):
    """No exercise is running in that folder (or it ended)."""

    code, title = "no-live-run", "No live run"


class BadCommand(BadRequest):
    """A control request the run cannot read: not JSON, an unknown command, a bad argument."""

    code, title = "bad-command", "Bad command"


class UnknownInject(NotFound):
    """The command names an inject the scenario does not have."""

    code, title = "unknown-inject", "Unknown inject"


class CommandRefused(Conflict):
    """The run refused a control command (an inject already fired, one not held, ...)."""

    code, title, exit_code = "command-refused", "Command refused", 1


ERRORS: dict[str, type[ChannelError]] = {
    cls.code: cls for cls in (NoLiveRun, BadCommand, UnknownInject, CommandRefused)
}


class CommandRequest(BaseModel):
    """`POST /v1/commands`: a command and its argument (an inject id, or a speed)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    command: CommandName
    argument: str | None = None


class NextInject(BaseModel):
    """An inject still to come, with its planned exercise time."""

    inject: str
    at: str


class RunStatus(BaseModel):
    """The run's state, the answer to every command."""

    model_config = ConfigDict(frozen=True)

    ok: Literal[True] = True
    changed: bool | None = None  # pause / resume: whether the clock changed
    exercise: str
    world: str
    move: int
    paused: bool
    speed: float | Literal["max"]
    fired: list[str]
    held: list[str]
    skipped: list[str]
    next: list[NextInject]
    letters: int


@dataclass(frozen=True)
class Command:
    """A control-cell command on the runner's queue, answered through `reply`."""

    name: str
    argument: str | None
    reply: asyncio.Future[RunStatus]


def parse_speed(argument: str | None) -> float | None:
    """`max` (None: as fast as the machine allows) or a number of exercise seconds per second."""
    if argument == "max":
        return None
    try:
        speed = float(argument or "")
    except ValueError:
        raise BadCommand(f"speed must be a number or max, not {argument!r}") from None
    if not 0 < speed <= 10_000:
        raise BadCommand("speed must be between 0 and 10000 (or max)")
    return speed
