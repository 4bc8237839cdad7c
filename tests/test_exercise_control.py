"""The control cell's handle on a live run: the registry of live runs (found from any folder),
the control API's RFC 9457 problems, and the live view's clocks ticking between events."""

from __future__ import annotations

import asyncio
import io
import json
import re
import subprocess
import sys
import time
from pathlib import Path

import aiohttp
import pytest
from rich.console import Console

from channel.exercise.author.clock import Clocks
from channel.exercise.author.scenario import load_scenario
from channel.exercise.eventlog import read_log
from channel.exercise.run.command import NoLiveRun
from channel.exercise.run.control import CONTROL_FILE, send_command
from channel.exercise.run.live import LiveView
from channel.exercise.run.play import RunOptions, play
from channel.exercise.run.registry import find_live_run, live_runs, registered, registry_dir
from tests.test_exercise_cli import channel
from tests.test_exercise_run import (
    CONTROLLED,
    DIRECTOR,
    ESCROWED,
    QUDS,
    SMALL,
    scenario,
    wait_for_control,
)


def _dead_pid() -> int:
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def test_the_one_live_run_is_found_from_any_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A registered run is found without --run from another folder; its entry goes at the end."""
    run_dir = tmp_path / "runs" / "one"
    run_dir.mkdir(parents=True)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with registered(run_dir) as entry:
        monkeypatch.chdir(elsewhere)
        assert find_live_run(None) == run_dir.resolve()
        assert oct(registry_dir().stat().st_mode & 0o777) == "0o700"
        assert entry.exists()
    assert not entry.exists()
    with pytest.raises(NoLiveRun, match="no exercise is running"):
        find_live_run(None)
    assert find_live_run(run_dir) == run_dir  # --run still names it


def test_a_stale_entry_is_ignored_and_removed(tmp_path: Path) -> None:
    """An entry whose process is gone (a killed run) is not a live run, and is cleaned up."""
    folder = registry_dir()
    folder.mkdir(mode=0o700, parents=True, exist_ok=True)
    stale = folder / "killed.json"
    stale.write_text(json.dumps({"run_dir": str(tmp_path / "killed"), "pid": _dead_pid()}))
    garbage = folder / "garbage.json"
    garbage.write_text("{not json")
    assert live_runs() == []
    assert not stale.exists()
    assert not garbage.exists()
    with pytest.raises(NoLiveRun):
        find_live_run(None)


def test_two_live_runs_ask_for_run(tmp_path: Path) -> None:
    """With two live runs, the error lists both and says to pick one with --run."""
    first, second = tmp_path / "a", tmp_path / "b"
    first.mkdir()
    second.mkdir()
    with registered(first), registered(second), pytest.raises(NoLiveRun) as caught:
        find_live_run(None)
    message = str(caught.value)
    assert str(first.resolve()) in message
    assert str(second.resolve()) in message
    assert "--run" in message


async def _post(url: str, token: str | None, body: bytes) -> tuple[int, str, dict[str, object]]:
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    async with (
        aiohttp.ClientSession() as session,
        session.post(f"{url}/v1/commands", data=body, headers=headers) as reply,
    ):
        return reply.status, reply.content_type, await reply.json(content_type=None)


async def test_control_api_answers_bad_requests_with_problems(tmp_path: Path) -> None:
    """Malformed JSON, an unknown command, an unknown inject, a bad speed, no token and a second
    fire are 4xx problem+json on the shared error tree, and change nothing in the run."""
    out = tmp_path / "run"
    options = RunOptions(source=scenario(tmp_path, CONTROLLED), out=out, speed=1.0)
    running = asyncio.create_task(play(options))
    await wait_for_control(out)
    handle = json.loads((out / CONTROL_FILE).read_text())
    url, token = handle["url"], handle["token"]
    assert (await send_command(out, "pause"))["paused"]
    before = await send_command(out, "status")
    cases = [
        (token, b"{not json", 400, "bad-command"),
        (token, b'{"command": "explode"}', 400, "bad-command"),
        (token, b'{"command": "fire", "argument": 4}', 400, "bad-command"),
        (token, b'{"command": "fire", "argument": "INJ-99"}', 404, "unknown-inject"),
        (token, b'{"command": "speed", "argument": "fast"}', 400, "bad-command"),
        (None, b'{"command": "pause"}', 401, "unauthenticated"),
    ]
    for bearer, body, status, code in cases:
        got_status, content_type, problem = await _post(url, bearer, body)
        assert (got_status, content_type, problem["code"]) == (
            status,
            "application/problem+json",
            code,
        )
        assert problem["status"] == status
        assert problem["type"] == f"urn:backchannel:problem:{code}"
        assert problem["detail"]
    fired = await _post(url, token, b'{"command": "fire", "argument": "INJ-01"}')
    assert fired[0] == 200
    again = await _post(url, token, b'{"command": "fire", "argument": "INJ-01"}')
    assert (again[0], again[2]["code"]) == (409, "command-refused")
    after = await send_command(out, "status")
    assert after["fired"] == ["INJ-01"]
    assert (after["paused"], after["speed"], after["skipped"]) == (True, before["speed"], [])
    await send_command(out, "speed", "max")
    await send_command(out, "resume")
    played = await asyncio.wait_for(running, 60)
    controls = [r["data"] for r in read_log(played.log) if r["kind"] == "control"]
    # Only the accepted commands reached the log.
    assert [c["command"] for c in controls] == ["pause", "fire", "speed", "resume"]


async def test_cli_control_finds_the_run_from_another_folder(tmp_path: Path) -> None:
    """`channel exercise control status` without --run, from a folder that is not the run's
    parent, reaches the live run; an unknown inject is one line and a nonzero exit."""
    out = tmp_path / "deep" / "run"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    options = RunOptions(source=scenario(tmp_path, CONTROLLED), out=out, speed=1.0)
    running = asyncio.create_task(play(options))
    await wait_for_control(out)
    status = await asyncio.to_thread(channel, "exercise", "control", "status", cwd=elsewhere)
    assert status.returncode == 0, status.stderr
    assert "running at speed" in status.stdout
    unknown = await asyncio.to_thread(
        channel, "exercise", "control", "fire", "INJ-99", cwd=elsewhere
    )
    assert unknown.returncode != 0
    assert unknown.stderr.strip() == "error: no inject 'INJ-99' in this scenario"
    await send_command(out, "speed", "max")
    await asyncio.wait_for(running, 60)
    gone = await asyncio.to_thread(channel, "exercise", "control", "status", cwd=elsewhere)
    assert gone.returncode == 4
    assert "no exercise is running" in gone.stderr


async def test_cli_send_finds_the_live_run_too(tmp_path: Path) -> None:
    """`channel exercise send` without --run, from another folder, escrows the person's letter
    in the live run; the run logs it."""
    out = tmp_path / "deep" / "run"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    options = RunOptions(source=scenario(tmp_path, ESCROWED), out=out, speed=1.0)
    running = asyncio.create_task(play(options))
    await wait_for_control(out)
    sent = await asyncio.to_thread(
        channel,
        "exercise",
        "send",
        "--as",
        QUDS,
        "--to",
        DIRECTOR,
        "--text",
        "Hello.",
        cwd=elsewhere,
    )
    assert sent.returncode == 0, sent.stderr
    assert len(list((out / "escrow").glob("*.bin"))) == 1
    for _ in range(400):  # up to 20 s on a loaded machine
        if any(r["kind"] == "escrowed" for r in read_log(out / "events.jsonl")):
            break
        await asyncio.sleep(0.05)
    await send_command(out, "speed", "max")
    records = read_log((await asyncio.wait_for(running, 60)).log)
    (letter,) = [
        r["data"] for r in records if r["kind"] == "letter_sent" and r["data"]["from"] == QUDS
    ]
    assert letter["to"] == DIRECTOR
    escrowed = [r["data"]["letter"] for r in records if r["kind"] == "escrowed"]
    assert letter["letter"] in escrowed


def _view(tmp_path: Path, console: Console) -> LiveView:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL, encoding="utf-8")
    return LiveView(load_scenario(path).scenario, console, live=True)


def _exercise_time(text: str) -> str:
    found = re.search(r"exercise (T\+\d\d:\d\d:\d\d)", text)
    assert found is not None, text
    return found.group(1)


def test_the_header_clocks_tick_between_events(tmp_path: Path) -> None:
    """Read from the run's clocks, the header's wall, exercise and world times move with no
    record arriving; paused, they stand still and say so."""
    view = _view(tmp_path, Console(file=io.StringIO()))
    clocks = Clocks(view.scenario.clock, 60.0)
    view.follow(clocks)
    first = view._header().plain
    time.sleep(1.1)
    second = view._header().plain
    assert _exercise_time(first) != _exercise_time(second)
    assert "wall " in second
    assert re.search(r"world 2017-11-20 \d\d:\d\d:\d\dZ", second)
    clocks.pause()
    paused = view._header().plain
    time.sleep(1.1)
    still = view._header().plain
    assert still.split("exercise ", 1)[1] == paused.split("exercise ", 1)[1]  # wall time aside
    assert "[PAUSED]" in paused


def test_the_live_screen_redraws_the_clock_without_records(tmp_path: Path) -> None:
    """On a terminal, the live view redraws at least once a second: the exercise time on screen
    moves on while no record arrives."""
    buffer = io.StringIO()
    view = _view(tmp_path, Console(file=buffer, force_terminal=True, width=120))
    view.follow(Clocks(view.scenario.clock, 60.0))
    with view:
        time.sleep(1.6)
    shown = set(re.findall(r"exercise (T\+\d\d:\d\d:\d\d)", buffer.getvalue()))
    assert len(shown) >= 2, shown
