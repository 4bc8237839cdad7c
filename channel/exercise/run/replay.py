"""`channel exercise replay`: play a run's scenario again with its seed, and compare the logs.

Only a run at speed `max` with bots in every seat replays exactly: people, and the wall clock
that paces slower runs, are not reproducible. The replay uses the copy of the scenario kept in
the run folder, and refuses it if it no longer matches the digest the log recorded.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from channel.exercise.author.scenario import load_scenario
from channel.exercise.eventlog import LOG_FILE, first_divergence, read_log
from channel.exercise.run.play import SCENARIO_DIR, RunOptions, play
from channel.protocol.errors import BadRequest, IntegrityError


@dataclass(frozen=True)
class Replayed:
    out: Path
    records: int
    divergence: tuple[int, dict[str, Any] | None, dict[str, Any] | None] | None


def replay_run(run_dir: Path, out: Path | None = None) -> Replayed:
    original = read_log(run_dir / LOG_FILE)
    started = original[0]["data"]
    if original[0]["kind"] != "run_started":
        raise BadRequest(f"{run_dir / LOG_FILE} does not start with run_started")
    if started["speed"] != "max":
        raise BadRequest(
            f"this run was played at speed {started['speed']}: only runs at speed max, "
            "with bots in every seat, replay exactly"
        )
    source = load_scenario(run_dir / SCENARIO_DIR / started["scenario"]["file"])
    if source.scenario.digest() != started["scenario"]["digest"]:
        raise IntegrityError(
            f"the scenario copy in {run_dir / SCENARIO_DIR} has changed since the run"
        )
    stamp = datetime.now(UTC).strftime("%Y%m%d-%H%M%S")
    target = out or run_dir.with_name(f"{run_dir.name}-replay-{stamp}")
    options = RunOptions(
        source=source, out=target, seed=started["seed"], rehearse=started["rehearse"]
    )
    played = asyncio.run(play(options))
    again = read_log(played.log)
    return Replayed(target, len(again), first_divergence(original, again))
