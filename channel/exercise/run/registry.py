"""The registry of live runs, so `channel exercise control` finds the run from any folder.

A run writes `<state>/backchannel/runs/<id>.json` (its folder and pid) when it starts and removes
it when it ends; `<state>` is $XDG_STATE_HOME or ~/.local/state, and the directory is 0700 (the
run folder holds the control token). An entry whose process is gone (a run killed before its
clean-up) is ignored and removed when read.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydantic import BaseModel, ValidationError

from channel.exercise.run.command import NoLiveRun


class LiveRun(BaseModel):
    """One entry: the run folder and the process playing it."""

    run_dir: Path
    pid: int


def registry_dir() -> Path:
    """Where the entries live (created 0700 on first use)."""
    base = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(base) / "backchannel" / "runs"


@contextmanager
def registered(run_dir: Path) -> Iterator[Path]:
    """Keep `run_dir` in the registry while the block runs; yields the entry's path."""
    folder = registry_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    folder.chmod(0o700)
    entry = folder / f"{run_dir.name}-{os.getpid()}-{secrets.token_hex(4)}.json"
    entry.write_text(LiveRun(run_dir=run_dir.resolve(), pid=os.getpid()).model_dump_json())
    try:
        yield entry
    finally:
        entry.unlink(missing_ok=True)


def live_runs() -> list[LiveRun]:
    """The runs whose process is alive, oldest first; stale or unreadable entries are removed."""
    found: list[tuple[float, LiveRun]] = []
    for entry in sorted(registry_dir().glob("*.json")):
        try:
            run = LiveRun.model_validate_json(entry.read_bytes())
            when = entry.stat().st_mtime
        except (OSError, ValidationError):
            entry.unlink(missing_ok=True)
            continue
        if not _alive(run.pid):
            entry.unlink(missing_ok=True)
            continue
        found.append((when, run))
    return [run for _, run in sorted(found, key=lambda pair: pair[0])]


def find_live_run(run_dir: Path | None) -> Path:
    """`run_dir` if given, else the one live run; NoLiveRun when there is none or several."""
    if run_dir is not None:
        return run_dir
    runs = live_runs()
    if not runs:
        raise NoLiveRun("no exercise is running (start one with `channel exercise run`)")
    if len(runs) > 1:
        listed = ", ".join(str(run.run_dir) for run in runs)
        raise NoLiveRun(f"{len(runs)} exercises are running ({listed}): pick one with --run DIR")
    return runs[0].run_dir


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # someone else's process: alive, though not ours to signal
    return True
