"""`channel exercise ...` and `channel demo` as a facilitator runs them: subprocesses, no stdin."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from channel.exercise.eventlog import read_log
from tests.test_exercise_run import SMALL

CHANNEL = [sys.executable, "-m", "channel"]


def channel(*args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [*CHANNEL, *args],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=cwd,
    )
    assert "Traceback" not in done.stderr, done.stderr
    return done


@pytest.fixture
def small(tmp_path: Path) -> Path:
    path = tmp_path / "small.yaml"
    path.write_text(SMALL, encoding="utf-8")
    return path


def test_list_names_the_bundled_scenarios() -> None:
    """`exercise list` shows the three bundled scenarios by the names `run` takes."""
    done = channel("exercise", "list")
    assert done.returncode == 0, done.stderr
    for name in ("letter-to-soleimani", "deconfliction-line", "protecting-power"):
        assert name in done.stdout


def test_lint_prints_every_problem_with_its_line(tmp_path: Path) -> None:
    """A broken file: each problem as file:line: message on stderr, exit 2, no traceback."""
    broken = tmp_path / "broken.yaml"
    broken.write_text(
        SMALL.replace(
            "  - {name: ir.mfa.tehran,", "  - {name: ir.mfa.tehran, colour: red,"
        ).replace("    at: T+00:35\n", "    at: soon\n"),
        encoding="utf-8",
    )
    done = channel("exercise", "lint", str(broken))
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert f"{broken}:8: unknown field 'colour' (misspelt?)" in lines[0]
    assert any(
        line.startswith(f"{broken}:") and "'soon' is not an offset" in line for line in lines
    )
    assert lines[-1].startswith("error: ")
    assert "2 problems" in lines[-1]


def test_lint_passes_a_good_scenario(small: Path) -> None:
    """A sound scenario lints clean and says what it holds."""
    done = channel("exercise", "lint", str(small))
    assert done.returncode == 0, done.stderr
    assert "ok: Small known-answer exercise: 4 parties, 4 injects, 3 expectations" in done.stdout


def test_run_report_replay_and_control_from_the_command_line(small: Path, tmp_path: Path) -> None:
    """run writes the log and three reports; report remakes one; replay matches; control says
    plainly that nothing is running."""
    out = tmp_path / "run"
    done = channel("exercise", "run", str(small), "--rehearse", "--no-live", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"report: {out / 'report.html'}" in done.stdout
    assert "L1 us.cia.director → ir.irgc.quds [routine]" in done.stdout  # the plain live view
    assert {p.name for p in out.iterdir()} >= {
        "events.jsonl",
        "scenario",
        "keyring",
        "courier",
        "report.html",
        "report.md",
        "report.json",
    }
    assert read_log(out / "events.jsonl")[-1]["kind"] == "run_ended"

    (out / "report.md").unlink()
    remade = channel("exercise", "report", str(out), "--format", "md")
    assert remade.returncode == 0, remade.stderr
    assert (out / "report.md").read_text(encoding="utf-8").strip()

    again = channel("exercise", "replay", str(out), "--out", str(tmp_path / "again"))
    assert again.returncode == 0, again.stderr
    assert again.stdout.startswith("identical: ")

    control = channel("exercise", "control", "--run", str(out), "pause")
    assert control.returncode == 4
    assert control.stderr.strip() == f"error: no exercise is running in {out} (no control.json)"


def test_run_refuses_people_at_speed_max(small: Path, tmp_path: Path) -> None:
    """A human seat at speed max is a one-line error, and no run folder is made."""
    done = channel("exercise", "run", str(small), "--speed", "max", "--out", str(tmp_path / "r"))
    assert done.returncode != 0
    assert done.stderr.startswith("error: speed max needs bots in every seat")
    assert not (tmp_path / "r").exists()


def test_msel_round_trip_through_the_command_line(small: Path, tmp_path: Path) -> None:
    """export-msel then import-msel gives back a scenario with the same injects."""
    from channel.exercise.author.scenario import load_scenario

    sheet = tmp_path / "msel.csv"
    exported = channel("exercise", "export-msel", str(small), "--output", str(sheet))
    assert exported.returncode == 0, exported.stderr
    header = sheet.read_text(encoding="utf-8").splitlines()[0]
    assert header.startswith("control_no,move,offset,world_time")
    rebuilt = tmp_path / "rebuilt.yaml"
    imported = channel(
        "exercise", "import-msel", str(sheet), "--base", str(small), "--output", str(rebuilt)
    )
    assert imported.returncode == 0, imported.stderr
    assert load_scenario(rebuilt).scenario.injects == load_scenario(small).scenario.injects


def test_schema_is_json_schema() -> None:
    """`exercise schema` prints the 2020-12 JSON Schema of scenario files."""
    done = channel("exercise", "schema")
    schema = json.loads(done.stdout)
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    assert "injects" in schema["properties"]


def test_demo_plays_the_letter_and_writes_the_report(tmp_path: Path) -> None:
    """`channel demo` plays letter-to-soleimani at max speed and prints the HTML report's path."""
    out = tmp_path / "demo"
    done = channel("demo", "--no-live", "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert f"html: {out / 'report.html'}" in done.stdout
    html = (out / "report.html").read_text(encoding="utf-8")
    assert 'id="swimlanes"' in html
    records = read_log(out / "events.jsonl")
    returned = [
        r
        for r in records
        if r["kind"] == "receipt"
        and r["data"]["event"] == "returned_unopened"
        and r["data"]["by"] == "ir.irgc.quds"
    ]
    assert returned, "the commander returns the director's letter unopened"


def test_sigterm_ends_a_live_run_gracefully(tmp_path: Path) -> None:
    """SIGTERM mid-run: the log closes with run_ended (interrupted), the report is written, and
    the embedded Redis stops with the run (no orphan keeps the data dir's socket)."""
    import signal
    import time

    from tests.test_exercise_run import CONTROLLED

    path = tmp_path / "controlled.yaml"
    path.write_text(CONTROLLED, encoding="utf-8")
    out = tmp_path / "run"
    process = subprocess.Popen(
        [*CHANNEL, "exercise", "run", str(path), "--speed", "1", "--no-live", "--out", str(out)],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        for _ in range(600):
            if (out / "control.json").exists():
                break
            time.sleep(0.05)
        assert (out / "control.json").exists()
        process.send_signal(signal.SIGTERM)
        stdout, stderr = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0, stderr
    assert "Traceback" not in stderr
    assert "exercise ended (interrupted)" in stdout
    records = read_log(out / "events.jsonl")
    assert records[-1]["kind"] == "run_ended"
    assert records[-1]["data"]["reason"] == "interrupted"
    # The person in the Quds seat was told, before the courier stopped.
    ended = [r["data"] for r in records if r["kind"] == "notice_sent"][-1]
    assert (ended["kind"], ended["party"]) == ("ended", "ir.irgc.quds")
    assert (out / "report.html").exists()
    assert not (out / "control.json").exists()
    assert not list((out / "courier").glob("*.sock"))
